"""Stopping ends in bounded time and leaves nothing running, even when the app started a
child that detached itself (``setsid``), and the next `podlink up` ends what a killed one left."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import start_podlink
from tests.integration.test_cli import LineWatcher

APP = "import os, time\nprint('app started', os.getpid(), flush=True)\ntime.sleep(600)\n"


@pytest.fixture
def token() -> str:
    return f"detached-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def workspace(tmp_path: Path, token: str) -> Path:
    folder = tmp_path / "workspace"
    folder.mkdir()
    (folder / "app.py").write_text(APP)
    # The detached child holds the app's output pipes and is in a session of its own.
    command = f"setsid sh -c 'sleep 600; echo {token}' & exec python3 app.py"
    (folder / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  local:\n    root: .podlink/target\n"
        "sync:\n  - local: .\n    remote: /app\n"
        f'run:\n  command: ["sh", "-c", "{command}"]\n  restart: on-sync\n'
    )
    return folder


@pytest.fixture
def cleanup(token: str) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
    for pid in detached_pids(token):  # whatever a failed test left behind
        os.kill(pid, signal.SIGKILL)


def detached_pids(token: str) -> list[int]:
    """The detached children still alive: ``sh -c 'sleep 600; echo TOKEN'``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = (Path("/proc") / entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            args[:2] == [b"sh", b"-c"]
            and token.encode() in args[2]
            and stat_state(int(entry)) != "Z"
        ):
            found.append(int(entry))
    return found


def up(workspace: Path, env: dict[str, str], cleanup: list[subprocess.Popen[str]]) -> LineWatcher:
    process = start_podlink("up", str(workspace), cwd=workspace, env=env)
    cleanup.append(process)
    output = LineWatcher(process)
    output.process = process  # type: ignore[attr-defined]
    return output


def test_a_detached_child_neither_blocks_restarts_nor_ctrl_c(
    workspace: Path, env: dict[str, str], token: str, cleanup: list[subprocess.Popen[str]]
) -> None:
    output = up(workspace, env, cleanup)
    process: subprocess.Popen[str] = output.process  # type: ignore[attr-defined]
    first = output.wait_for("app started", seconds=60)
    assert len(detached_pids(token)) == 1

    (workspace / "app.py").write_text(APP + "# changed\n")
    synced = output.wait_for("synced 1 file(s)", after=first)
    output.wait_for("app started", after=synced, seconds=30)  # restarted
    assert len(detached_pids(token)) == 1  # the first one ended with its app

    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert detached_pids(token) == []


def test_the_next_up_ends_what_a_killed_podlink_left(
    workspace: Path, env: dict[str, str], token: str, cleanup: list[subprocess.Popen[str]]
) -> None:
    output = up(workspace, env, cleanup)
    process: subprocess.Popen[str] = output.process  # type: ignore[attr-defined]
    line = output.lines[output.wait_for("app started", seconds=60)]
    app_pid = int(line.rsplit(" ", 1)[1])
    orphans = detached_pids(token)
    assert len(orphans) == 1

    process.kill()
    process.wait()
    assert os.path.exists(f"/proc/{orphans[0]}")  # kill -9 leaves them running

    again = up(workspace, env, cleanup)
    again.wait_for("that an earlier podlink for", seconds=60)
    again.wait_for("app started", seconds=60)
    assert not Path(f"/proc/{app_pid}").exists() or "Z" in stat_state(app_pid)
    assert orphans[0] not in detached_pids(token)
    assert len(detached_pids(token)) == 1  # the new app's own

    second: subprocess.Popen[str] = again.process  # type: ignore[attr-defined]
    second.send_signal(signal.SIGINT)
    assert second.wait(timeout=30) == 0
    assert detached_pids(token) == []


def stat_state(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
