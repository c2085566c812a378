"""End to end through a real LSP client: sessions, sync, config errors, the app, cleanup.

Each scenario runs against every target kind (`probe`): the local target and a real
container on a real Docker Engine.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Daemon
from tests.helpers import tree_listing
from tests.targets import TargetProbe

pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


def expected_listing(workspace: Path, also_ignored: tuple[str, ...] = ()) -> dict[str, Any]:
    """The workspace as the target should hold it: minus .podlink/ and ignored files."""
    return {
        path: info
        for path, info in without_caches(tree_listing(workspace)).items()
        if not path.startswith(".podlink")
        and not path.endswith(".log")
        and path not in also_ignored
    }


def without_caches(listing: dict[str, Any]) -> dict[str, Any]:
    """Python writes __pycache__ on both sides as it likes; it is ignored, so left out here."""
    return {path: info for path, info in listing.items() if "__pycache__" not in path}


def synced(probe: TargetProbe) -> dict[str, Any]:
    return without_caches(probe.listing())


def use_port(workspace: Path, port: int) -> None:
    config = workspace / "podlink.yaml"
    config.write_text(config.read_text().replace('PORT: "8000"', f'PORT: "{port}"'))


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


async def test_bad_requests_fail_at_once(daemon: Daemon) -> None:
    for method in ("podlink/resumeSync", "podlink/resetSync"):
        with pytest.raises(JsonRpcException) as raised:
            await asyncio.wait_for(daemon.request(method, {"sessionId": "x"}), 5)
        assert raised.value.code == -32003

    with pytest.raises(JsonRpcException) as raised:
        await asyncio.wait_for(daemon.request("podlink/flushSync", {"sessionId": "nope"}), 5)
    assert raised.value.code == -32003

    with pytest.raises(JsonRpcException) as raised:
        await asyncio.wait_for(daemon.request("podlink/startSession", {"folder": 42}), 5)
    assert raised.value.code == -32602

    assert await daemon.request("podlink/listSessions") == []


async def test_target_mirrors_every_kind_of_edit(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    use_port(workspace, free_port())
    (workspace / "debug.log").write_text("ignored by the config's exclude list\n")
    session = await start(daemon, workspace)
    assert session["state"] == "ready"
    assert session["target"]["kind"] == probe.kind
    assert session["sync"]["filesSynced"] >= 5
    assert synced(probe) == expected_listing(workspace)
    assert not probe.exists("/app/debug.log")

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
    await flush(daemon, session["id"])
    (workspace / "secret.txt").write_text("never leaves the machine\n")

    status = await flush(daemon, session["id"])
    assert status["problems"] == []
    assert synced(probe) == expected_listing(workspace, also_ignored=("secret.txt",))
    assert not probe.exists("/app/secret.txt")
    assert probe.listing()["latest"] == ("link", "app/greeting.py")
    assert probe.listing()["run.sh"][1] == 0o755

    initially = session["sync"]["filesSynced"]
    changed = await daemon.wait_for(
        "podlink/sessionChanged",
        lambda s: s["state"] == "ready" and s["sync"]["filesSynced"] > initially,
    )
    assert changed["id"] == session["id"]
    assert changed["sync"]["problems"] == []

    # a folder removed with everything in it
    for child in sorted((workspace / "new_pkg").rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    (workspace / "new_pkg").rmdir()
    await flush(daemon, session["id"])
    assert not probe.exists("/app/new_pkg")
    assert synced(probe) == expected_listing(workspace, also_ignored=("secret.txt",))


async def test_initial_sync_reports_progress(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    await start(daemon, workspace)
    reports = list(daemon.client.progress_reports.values())
    assert len(reports) == 1
    kinds = [report.kind for report in reports[0]]
    assert kinds[0] == "begin" and kinds[-1] == "end"
    assert reports[0][0].title == "podlink: initial sync"


async def test_saves_arrive_without_a_flush(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session = await start(daemon, workspace)
    (workspace / "app" / "greeting.py").write_text("GREETING = 'watched'\n")
    await daemon.wait_for(
        "podlink/log",
        lambda p: (
            p["sessionId"] == session["id"]
            and p["source"] == "sync"
            and p["text"].startswith("synced")
        ),
    )
    assert probe.read("/app/app/greeting.py") == b"GREETING = 'watched'\n"
    changed = await daemon.wait_for(
        "podlink/sessionChanged", lambda s: s["sync"].get("lastLatencyMs") is not None
    )
    assert changed["sync"]["lastLatencyMs"] > 0


async def test_broken_config_keeps_the_running_session(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
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
    assert probe.exists("/app/app/after.py")


async def test_app_restarts_on_sync_and_stop_leaves_nothing(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    port = free_port()
    use_port(workspace, port)
    session = await start(daemon, workspace)
    assert session["app"]["state"] == "running"
    await daemon.wait_for("podlink/log", lambda p: "listening" in p["text"])
    reply = await asyncio.to_thread(probe.http_get, port, "/?name=Ada")
    assert reply == {"message": "Hello, Ada!"}

    greeting = workspace / "app" / "greeting.py"
    mark = daemon.mark()
    greeting.write_text(greeting.read_text().replace("Hello", "Howdy"))
    await daemon.wait_for(
        "podlink/log", lambda p: p["source"] == "app" and "listening" in p["text"], since=mark
    )
    reply = await asyncio.to_thread(probe.http_get, port, "/?name=Ada")
    assert reply == {"message": "Howdy, Ada!"}

    server_pid = daemon.client._server.pid  # type: ignore[union-attr]
    assert probe.leftover_processes(server_pid), "the app and the agent are running"
    await daemon.request("podlink/stopSession", {"sessionId": session["id"]})
    assert probe.leftover_processes(server_pid) == []
    assert await daemon.request("podlink/listSessions") == []
    stopped = await daemon.wait_for("podlink/sessionChanged", lambda s: s["state"] == "stopped")
    assert stopped["id"] == session["id"]


async def test_config_edits_on_disk_are_picked_up_or_refused(
    daemon: Daemon, workspace: Path, probe: TargetProbe
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
    # The restarted session has synced under the new rules once its initial sync is logged.
    await daemon.wait_for("podlink/log", lambda p: "initial sync" in p["text"], since=mark)
    (workspace / "docs").mkdir()
    (workspace / "docs" / "guide.md").write_text("not synced any more\n")
    await flush(daemon, session["id"])
    assert not probe.exists("/app/docs")


@pytest.mark.parametrize("target_kind", ["local"])
async def test_a_terminated_daemon_stops_what_its_sessions_started(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    """An editor that quits sends SIGTERM: the app must not outlive the daemon."""
    use_port(workspace, free_port())
    await start(daemon, workspace)
    await daemon.wait_for("podlink/log", lambda p: "listening" in p["text"])
    server = daemon.client._server  # type: ignore[union-attr]
    started = [int(pid) for pid in probe.leftover_processes(server.pid)]
    assert started, "the app and the agent are running"

    server.send_signal(signal.SIGTERM)

    def alive() -> list[int]:
        watched = [server.pid, *started]
        return [pid for pid in watched if Path(f"/proc/{pid}").exists() and not _zombie(pid)]

    # The client reports the daemon's end as an error of its own, and nothing signals the
    # end of a process to a non-parent: poll /proc until a deadline.
    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert alive() == []


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
