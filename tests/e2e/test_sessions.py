"""End to end through a real LSP client: sessions, sync, config errors, the app, cleanup."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Daemon
from tests.helpers import descendants, tree_listing

pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def target_app_dir(workspace: Path) -> Path:
    return workspace / ".podlink" / "target" / "app"


def expected_listing(workspace: Path) -> dict[str, Any]:
    """The workspace as the target should hold it: minus .podlink/ and ignored files."""
    listing = tree_listing(workspace)
    return {
        path: info
        for path, info in listing.items()
        if not path.startswith(".podlink")
        and "__pycache__" not in path
        and not path.endswith(".log")
        and path != "secret.txt"
    }


async def start(daemon: Daemon, workspace: Path) -> dict[str, Any]:
    session: dict[str, Any] = await daemon.request(
        "podlink/startSession", {"folder": workspace.as_uri()}
    )
    return session


async def flush(daemon: Daemon, session_id: str) -> dict[str, Any]:
    status: dict[str, Any] = await daemon.request(
        "podlink/flushSync", {"sessionId": session_id, "timeoutMs": 20000}
    )
    return status


async def test_unimplemented_and_unknown_requests_fail_at_once(daemon: Daemon) -> None:
    with pytest.raises(JsonRpcException) as raised:
        await asyncio.wait_for(daemon.request("podlink/runTests", {"sessionId": "x"}), 5)
    assert raised.value.code == -32006
    assert raised.value.data["reason"] == "notImplemented"

    with pytest.raises(JsonRpcException) as raised:
        await asyncio.wait_for(daemon.request("podlink/flushSync", {"sessionId": "nope"}), 5)
    assert raised.value.code == -32003

    with pytest.raises(JsonRpcException) as raised:
        await asyncio.wait_for(daemon.request("podlink/startSession", {"folder": 42}), 5)
    assert raised.value.code == -32602

    assert await daemon.request("podlink/listSessions") == []


async def test_target_mirrors_every_kind_of_edit(daemon: Daemon, workspace: Path) -> None:
    (workspace / "podlink.yaml").write_text(
        (workspace / "podlink.yaml").read_text().replace('"8000"', str(free_port()))
    )
    (workspace / "debug.log").write_text("ignored by the config's exclude list\n")
    session = await start(daemon, workspace)
    assert session["state"] == "ready"
    assert session["target"]["kind"] == "local"
    assert session["sync"]["filesSynced"] >= 5
    target = target_app_dir(workspace)
    assert tree_listing(target) == expected_listing(workspace)
    assert not (target / "debug.log").exists()

    # create, modify, delete, rename files and folders, change modes, add a symlink
    (workspace / "app" / "greeting.py").write_text("def greet(name):\n    return 'hi'\n")
    (workspace / "new_pkg" / "deep").mkdir(parents=True)
    (workspace / "new_pkg" / "deep" / "mod.py").write_text("VALUE = 1\n")
    (workspace / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (workspace / "run.sh").chmod(0o755)
    (workspace / "tests" / "test_greeting.py").unlink()
    (workspace / "tests").rename(workspace / "checks")
    (workspace / "README.md").rename(workspace / "README.txt")
    (workspace / "latest").symlink_to("app/greeting.py")
    (workspace / "unicode ü name.txt").write_bytes(bytes(range(256)))
    (workspace / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nsecret.txt\n")
    (workspace / "secret.txt").write_text("never leaves the machine\n")

    status = await flush(daemon, session["id"])
    assert status["problems"] == []
    assert tree_listing(target) == expected_listing(workspace)
    assert not (target / "secret.txt").exists()
    assert os.readlink(target / "latest") == "app/greeting.py"
    assert (target / "run.sh").stat().st_mode & 0o777 == 0o755

    changed = await daemon.wait_for(
        "podlink/sessionChanged",
        lambda s: s["id"] == session["id"] and s["sync"]["filesSynced"] > 5,
    )
    assert changed["state"] == "ready"

    # a folder removed with everything in it
    for child in sorted((workspace / "new_pkg").rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    (workspace / "new_pkg").rmdir()
    await flush(daemon, session["id"])
    assert not (target / "new_pkg").exists()
    assert tree_listing(target) == expected_listing(workspace)


async def test_initial_sync_reports_progress(daemon: Daemon, workspace: Path) -> None:
    await start(daemon, workspace)
    reports = list(daemon.client.progress_reports.values())
    assert len(reports) == 1
    kinds = [report.kind for report in reports[0]]
    assert kinds[0] == "begin" and kinds[-1] == "end"
    assert reports[0][0].title == "podlink: initial sync"


async def test_saves_arrive_without_a_flush(daemon: Daemon, workspace: Path) -> None:
    session = await start(daemon, workspace)
    target_file = target_app_dir(workspace) / "app" / "greeting.py"
    (workspace / "app" / "greeting.py").write_text("GREETING = 'watched'\n")
    await daemon.wait_for(
        "podlink/log",
        lambda p: (
            p["sessionId"] == session["id"]
            and p["source"] == "sync"
            and p["text"].startswith("synced")
        ),
    )
    assert target_file.read_text() == "GREETING = 'watched'\n"
    changed = await daemon.wait_for(
        "podlink/sessionChanged", lambda s: s["sync"].get("lastLatencyMs") is not None
    )
    assert changed["sync"]["lastLatencyMs"] > 0


async def test_broken_config_keeps_the_running_session(daemon: Daemon, workspace: Path) -> None:
    session = await start(daemon, workspace)
    config = workspace / "podlink.yaml"
    good = config.read_text()
    config.write_text(good.replace("mode: upload", "mode: sideways"))

    with pytest.raises(JsonRpcException) as raised:
        await daemon.request("podlink/startSession", {"folder": workspace.as_uri()})
    error = raised.value
    assert error.code == -32001
    assert error.data["reason"] == "configInvalid"
    assert "podlink.yaml" in error.message
    assert error.data["detail"]["key"] == "sync[0].mode"
    bad_line = next(
        i for i, line in enumerate(config.read_text().splitlines(), 1) if "sideways" in line
    )
    assert error.data["detail"]["line"] == bad_line

    sessions = await daemon.request("podlink/listSessions")
    assert [s["id"] for s in sessions] == [session["id"]]
    assert sessions[0]["state"] == "ready"
    (workspace / "app" / "after.py").write_text("STILL_SYNCING = True\n")
    await flush(daemon, session["id"])
    assert (target_app_dir(workspace) / "app" / "after.py").exists()


async def test_app_restarts_on_sync_and_stop_leaves_nothing(
    daemon: Daemon, workspace: Path
) -> None:
    port = free_port()
    config = workspace / "podlink.yaml"
    config.write_text(config.read_text().replace('"8000"', f'"{port}"'))
    session = await start(daemon, workspace)
    assert session["app"]["state"] == "running"
    await daemon.wait_for("podlink/log", lambda p: "listening" in p["text"])
    assert await fetch_greeting(port) == "Hello, Ada!"

    greeting = workspace / "app" / "greeting.py"
    mark = daemon.mark()
    greeting.write_text(greeting.read_text().replace("Hello", "Howdy"))
    await daemon.wait_for(
        "podlink/log", lambda p: p["source"] == "app" and "listening" in p["text"], since=mark
    )
    assert await fetch_greeting(port) == "Howdy, Ada!"

    server_pid = daemon.client._server.pid  # type: ignore[union-attr]
    assert descendants(server_pid), "the app and the agent run as children of the daemon"
    await daemon.request("podlink/stopSession", {"sessionId": session["id"]})
    assert descendants(server_pid) == []
    assert await daemon.request("podlink/listSessions") == []
    stopped = await daemon.wait_for("podlink/sessionChanged", lambda s: s["state"] == "stopped")
    assert stopped["id"] == session["id"]


async def fetch_greeting(port: int) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?name=Ada", timeout=5) as reply:
            return str(json.loads(reply.read())["message"])

    return await asyncio.to_thread(get)


async def test_config_edits_on_disk_are_picked_up_or_refused(
    daemon: Daemon, workspace: Path
) -> None:
    session = await start(daemon, workspace)
    config = workspace / "podlink.yaml"
    good = config.read_text()

    shown = asyncio.ensure_future(daemon.client.wait_for_notification("window/showMessage"))
    config.write_text(good.replace("restart: on-sync", "restart: sometimes"))
    message = await asyncio.wait_for(shown, 20)
    assert "podlink.yaml" in message.message and "run.restart" in message.message
    assert "last good configuration" in message.message
    sessions = await daemon.request("podlink/listSessions")
    assert sessions[0]["state"] == "ready"

    mark = daemon.mark()
    config.write_text(good.replace('exclude: ["*.log"]', 'exclude: ["*.log", "docs/"]'))
    restarted = await daemon.wait_for(
        "podlink/log",
        lambda p: p["source"] == "daemon" and "configuration changed" in p["text"],
        since=mark,
    )
    assert restarted["sessionId"] == session["id"]
    await daemon.wait_for("podlink/sessionChanged", lambda s: s["state"] == "ready", since=mark)
    (workspace / "docs").mkdir()
    (workspace / "docs" / "guide.md").write_text("not synced any more\n")
    await flush(daemon, session["id"])
    assert not (target_app_dir(workspace) / "docs").exists()
