"""The app loop end to end: a crashing app, and restarts that see the whole synced batch."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Daemon
from tests.e2e.test_sessions import start
from tests.targets import TargetProbe

pytestmark = pytest.mark.asyncio

CRASHING = '''"""Fails at start-up, the way a bad setting does in a real app."""


def load_settings():
    return {"port": int("eighty")}


load_settings()
'''

FIXED = '''"""Starts and stays up."""
import time

print("settings loaded", flush=True)
while True:
    time.sleep(60)
'''

# Prints the digest of data.bin as the app finds it when it starts.
DIGEST = """import hashlib, pathlib, time

data = pathlib.Path("data.bin")
found = hashlib.sha256(data.read_bytes()).hexdigest() if data.exists() else "none"
print("digest", found, flush=True)
while True:
    time.sleep(60)
"""


def run_module(workspace: Path, module: str) -> None:
    config = workspace / "podlink.yaml"
    config.write_text(
        config.read_text().replace('["python3", "-m", "app"]', f'["python3", "-m", "{module}"]')
    )


def app_lines(daemon: Daemon, since: int = 0) -> list[str]:
    return [p["text"] for p in daemon.received("podlink/log", since) if p["source"] == "app"]


async def test_an_app_that_crashes_shows_exited_with_its_code_and_traceback(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    (workspace / "app" / "crash.py").write_text(CRASHING)
    run_module(workspace, "app.crash")
    session = await start(daemon, workspace)

    exited = await daemon.wait_for(
        "podlink/sessionChanged", lambda s: s.get("app", {}).get("state") == "exited"
    )
    assert exited["app"]["exitCode"] == 1
    assert exited["app"]["command"] == ["python3", "-m", "app.crash"]
    ended = await daemon.wait_for(
        "podlink/log", lambda p: p["source"] == "app" and "exited with code 1" in p["text"]
    )
    assert "ValueError: invalid literal for int()" in ended["text"]
    lines = app_lines(daemon)
    traceback = lines[lines.index("Traceback (most recent call last):") :]
    assert any('crash.py", line 5, in load_settings' in line for line in traceback)
    assert any(line.startswith("ValueError: invalid literal for int()") for line in traceback)
    # The daemon gives each message its level, so no client guesses it from the text.
    levels = {p["text"]: p["level"] for p in daemon.received("podlink/log") if p["source"] == "app"}
    assert levels["Traceback (most recent call last):"] == "error"
    assert levels["$ python3 -m app.crash"] == "info"

    # Fixed and saved: the sync starts it again.
    mark = daemon.mark()
    (workspace / "app" / "crash.py").write_text(FIXED)
    await daemon.wait_for(
        "podlink/log", lambda p: p["text"] == "settings loaded", since=mark, seconds=30
    )
    sessions: list[dict[str, Any]] = await daemon.request("podlink/listSessions")
    assert sessions[0]["id"] == session["id"]
    assert sessions[0]["app"]["state"] == "running"
    assert "exitCode" not in sessions[0]["app"]


async def test_a_restart_after_sync_sees_the_whole_batch(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    (workspace / "app" / "digest.py").write_text(DIGEST)
    run_module(workspace, "app.digest")
    await start(daemon, workspace)
    await daemon.wait_for("podlink/log", lambda p: p["text"] == "digest none")

    content = os.urandom(8 << 20)
    mark = daemon.mark()
    # Saved the way editors save: a temporary file renamed over the name.
    scratch = workspace / "data.bin.saving"
    scratch.write_bytes(content)
    scratch.rename(workspace / "data.bin")
    first = await daemon.wait_for(
        "podlink/log",
        lambda p: p["source"] == "app" and p["text"].startswith("digest "),
        since=mark,
        seconds=40,
    )
    assert first["text"] == f"digest {hashlib.sha256(content).hexdigest()}"
