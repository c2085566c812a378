"""Attaching to a running process by its id: debugpy's ``--pid`` injects debugpy with gdb,
so podlink checks the target for gdb and for permission to ptrace first and says what is
missing and how to get it. Where everything is there (the local target, on a machine with
gdb), a real DAP client stops at a breakpoint in the injected process.

The test image has no gdb: on Docker and Kubernetes the refusal is what can be tested.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Daemon
from tests.e2e.test_debug import attach_and_break
from tests.e2e.test_ports import start_forwarded
from tests.e2e.test_sessions import start
from tests.targets import TargetProbe

pytestmark = pytest.mark.asyncio

# Above the largest pid_max Linux allows (2**22): no process ever has this id.
NEVER_A_PID = 2**22 + 1

# The example app, started by a Python that first writes its own process id to app.pid.
APP_WRITING_ITS_PID = (
    'command: ["python3", "-c", "import os, runpy; '
    "open('app.pid', 'w').write(str(os.getpid())); "
    "runpy.run_module('app', run_name='__main__')\"]"
)


def app_writing_its_pid(workspace: Path) -> None:
    config = workspace / "podlink.yaml"
    config.write_text(
        config.read_text().replace('command: ["python3", "-m", "app"]', APP_WRITING_ITS_PID)
    )


async def app_pid(probe: TargetProbe, seconds: float = 30.0) -> int:
    deadline = time.monotonic() + seconds
    while not (probe.exists("/app/app.pid") and probe.read("/app/app.pid").strip()):
        assert time.monotonic() < deadline, "the app did not write app.pid"
        await asyncio.sleep(0.05)
    return int(probe.read("/app/app.pid"))


async def test_attach_by_pid_stops_at_a_breakpoint_in_the_running_app(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    if probe.kind != "local":
        pytest.skip("the test image has no gdb: the refusal is tested there instead")
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed on this machine (`apt-get install gdb` stages it)")
    app_writing_its_pid(workspace)
    session, _, app_forward = await start_forwarded(daemon, workspace)
    pid = await app_pid(probe)

    mark = daemon.mark()
    result = await daemon.request("podlink/startDebug", {"sessionId": session["id"], "pid": pid})
    configuration = result["configuration"]
    assert configuration["pathMappings"] == [
        {
            "localRoot": str(workspace.resolve()),
            "remoteRoot": str((workspace / ".podlink" / "target" / "app").resolve()),
        }
    ]
    client, reply = await attach_and_break(
        configuration, workspace / "app" / "greeting.py", app_forward
    )
    await client.request("disconnect", {})
    await client.close()
    assert reply == '{"message": "Hello, Ada!"}'
    assert await app_pid(probe) == pid, "attached to the process as it ran, not a restart"
    started = [
        p["text"]
        for method, p in daemon.notifications[mark:]
        if method == "podlink/log" and p["source"] == "app" and p["text"].startswith("$ ")
    ]
    assert started == []


async def test_attaching_by_pid_without_gdb_says_how_to_install_it(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    if probe.kind == "local" and shutil.which("gdb") is not None:
        pytest.skip("the local target is this machine, which has gdb: the attach is tested")
    app_writing_its_pid(workspace)
    session = await start(daemon, workspace)
    pid = await app_pid(probe)
    with pytest.raises(JsonRpcException) as raised:
        await daemon.request("podlink/startDebug", {"sessionId": session["id"], "pid": pid})
    assert raised.value.data["reason"] == "invalidParams"
    message = raised.value.message
    assert message.startswith(f"cannot attach to process {pid} by pid: ")
    assert "gdb is not installed in the target" in message
    assert "apt-get install -y gdb" in message
    sessions = await daemon.request("podlink/listSessions")
    assert sessions[0]["app"]["state"] == "running"
    assert await app_pid(probe) == pid


async def test_attaching_to_a_pid_that_does_not_run_says_so(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session = await start(daemon, workspace)
    with pytest.raises(JsonRpcException) as raised:
        await daemon.request("podlink/startDebug", {"sessionId": session["id"], "pid": NEVER_A_PID})
    assert raised.value.data["reason"] == "invalidParams"
    assert f"no process {NEVER_A_PID} runs in the target" in raised.value.message


async def test_port_and_pid_together_are_refused(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    if probe.kind != "local":
        pytest.skip("checked before the target is reached: one target kind shows it")
    session = await start(daemon, workspace)
    with pytest.raises(JsonRpcException) as raised:
        await daemon.request(
            "podlink/startDebug", {"sessionId": session["id"], "port": 5678, "pid": 1}
        )
    assert raised.value.data["reason"] == "invalidParams"
    assert "not both" in raised.value.message
