"""Debugging end to end: podlink/startDebug, then a real DAP client against debugpy in the
target, through the forward podlink opened, in the order debugpy expects (RECIPES.md).

The test image has no debugpy, so on Docker and Kubernetes podlink copies its own in; the
local target's ``python3`` has none either.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from tests.dap import DapClient
from tests.e2e.conftest import Daemon
from tests.e2e.test_ports import app_listening, greeting, start_forwarded
from tests.e2e.test_sessions import start
from tests.helpers import processes_mentioning
from tests.targets import DockerProbe, TargetProbe

pytestmark = pytest.mark.asyncio

# The line of greet() that returns, where its local `cleaned` holds the cleaned-up name.
BREAKPOINT_LINE = 6


def remote_root(probe: TargetProbe, workspace: Path) -> str:
    if probe.kind == "local":
        return str((workspace / ".podlink" / "target" / "app").resolve())
    return "/app"


async def start_debug(daemon: Daemon, session_id: str) -> dict[str, Any]:
    result = await daemon.request("podlink/startDebug", {"sessionId": session_id})
    configuration: dict[str, Any] = result["configuration"]
    return configuration


async def break_in_greet(configuration: dict[str, Any], source: Path, app_port: int) -> str:
    """Attach, stop at the breakpoint in greet() hit by a request, check what the stack and
    the variables say, continue, disconnect; the reply the request got."""
    client, reply = await attach_and_break(configuration, source, app_port)
    try:
        await client.request("disconnect", {})
        return reply
    finally:
        await client.close()


async def attach_and_break(
    configuration: dict[str, Any], source: Path, app_port: int
) -> tuple[DapClient, str]:
    """As ``break_in_greet``, but the client stays attached: (the client, the reply)."""
    connect = configuration["connect"]
    client = await DapClient.connect(connect["host"], connect["port"])
    try:
        await client.request(
            "initialize",
            {"clientID": "podlink-tests", "adapterID": "debugpy", "pathFormat": "path"},
        )
        attached = client.send_request("attach", configuration)
        await client.wait_event("initialized")
        placed = await client.request(
            "setBreakpoints",
            {"source": {"path": str(source)}, "breakpoints": [{"line": BREAKPOINT_LINE}]},
        )
        assert [b["verified"] for b in placed["breakpoints"]] == [True]
        await client.request("configurationDone")
        await asyncio.wait_for(attached, 20)

        reply = asyncio.ensure_future(greeting(app_port, "  Ada "))
        stopped = await client.wait_event("stopped", seconds=30)
        assert stopped["reason"] == "breakpoint"
        thread = stopped["threadId"]
        frames = (await client.request("stackTrace", {"threadId": thread}))["stackFrames"]
        assert frames[0]["name"] == "greet"
        assert frames[0]["line"] == BREAKPOINT_LINE
        assert frames[0]["source"]["path"] == str(source)
        scopes = (await client.request("scopes", {"frameId": frames[0]["id"]}))["scopes"]
        local_scope = next(scope for scope in scopes if scope["name"] == "Locals")
        variables = await client.request(
            "variables", {"variablesReference": local_scope["variablesReference"]}
        )
        values = {v["name"]: v["value"] for v in variables["variables"]}
        assert values["cleaned"] == "'Ada'"
        assert values["name"] == "'  Ada '"

        await client.request("continue", {"threadId": thread})
        answer = await asyncio.wait_for(reply, 20)
    except BaseException:
        await client.close()
        raise
    return client, answer.decode()


async def test_a_breakpoint_hits_in_the_target_and_again_after_a_sync_restart(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session, _, app_forward = await start_forwarded(daemon, workspace)
    mark = daemon.mark()
    configuration = await start_debug(daemon, session["id"])

    port = configuration["connect"]["port"]
    assert configuration == {
        "type": "debugpy",
        "request": "attach",
        "name": f"podlink: {workspace.name}",
        "connect": {"host": "127.0.0.1", "port": port},
        "pathMappings": [
            {"localRoot": str(workspace.resolve()), "remoteRoot": remote_root(probe, workspace)}
        ],
        "justMyCode": True,
        "subProcess": True,
    }
    ready = await daemon.wait_for(
        "podlink/log",
        lambda p: p["source"] == "daemon" and p["text"].startswith("debug server ready"),
        since=mark,
    )
    assert f"127.0.0.1:{port}" in ready["text"]
    forwards = await daemon.wait_for(
        "podlink/sessionChanged", lambda s: len(s["ports"]) == 2, since=mark
    )
    assert port in [f["localPort"] for f in forwards["ports"]]
    await app_listening(daemon, since=mark)

    greeting_file = workspace / "app" / "greeting.py"
    client, reply = await attach_and_break(configuration, greeting_file, app_forward)
    assert reply == '{"message": "Hello, Ada!"}'

    # A save while the editor is still attached: the sync restarts the app, under debugpy
    # again, on the same local port; the old debug session ends.
    mark = daemon.mark()
    greeting_file.write_text(greeting_file.read_text().replace("Hello", "Howdy"))
    try:
        await client.wait_closed()
    finally:
        await client.close()
    await daemon.wait_for(
        "podlink/log",
        lambda p: p["source"] == "daemon" and p["text"].startswith("debug server ready"),
        since=mark,
    )
    await app_listening(daemon, since=mark)
    reply = await break_in_greet(configuration, greeting_file, app_forward)
    assert reply == '{"message": "Howdy, Ada!"}'

    server_pid = daemon.client._server.pid  # type: ignore[union-attr]
    await daemon.request("podlink/stopSession", {"sessionId": session["id"]})
    assert probe.leftover_processes(server_pid) == []
    assert processes_mentioning(str(workspace)) == []  # the debug adapter daemonizes


async def test_debugging_a_command_that_is_not_python_is_refused(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    config = workspace / "podlink.yaml"
    config.write_text(
        config.read_text().replace(
            'command: ["python3", "-m", "app"]', 'command: ["sh", "-c", "exec sleep 600"]'
        )
    )
    session = await start(daemon, workspace)
    assert session["app"]["state"] == "running"
    with pytest.raises(JsonRpcException) as raised:
        await start_debug(daemon, session["id"])
    assert raised.value.data["reason"] == "invalidParams"
    assert "'sh'" in raised.value.message and "python" in raised.value.message
    sessions = await daemon.request("podlink/listSessions")
    assert sessions[0]["app"]["state"] == "running"


async def test_debugging_survives_a_configuration_change(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session, _, app_forward = await start_forwarded(daemon, workspace)
    configuration = await start_debug(daemon, session["id"])

    mark = daemon.mark()
    config = workspace / "podlink.yaml"
    config.write_text(config.read_text().replace('exclude: ["*.log"]', 'exclude: ["*.log", "x/"]'))
    await daemon.wait_for("podlink/log", lambda p: "configuration changed" in p["text"], since=mark)
    ready = await daemon.wait_for(
        "podlink/log",
        lambda p: p["source"] == "daemon" and p["text"].startswith("debug server ready"),
        since=mark,
    )
    assert f"attach to 127.0.0.1:{configuration['connect']['port']} " in ready["text"]
    # The new session starts the app, then restarts it under debugpy: wait for the second.
    after_ready = next(i for i, (_, p) in enumerate(daemon.notifications) if p is ready)
    await app_listening(daemon, since=after_ready)
    reply = await break_in_greet(configuration, workspace / "app" / "greeting.py", app_forward)
    assert reply == '{"message": "Hello, Ada!"}'


async def test_debugging_again_while_the_app_runs_under_debugpy_does_not_restart_it(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session, _, app_forward = await start_forwarded(daemon, workspace)
    mark = daemon.mark()
    first = await start_debug(daemon, session["id"])
    await app_listening(daemon, since=mark)

    # What an editor does when it attaches again, after its debug session ended.
    mark = daemon.mark()
    again = await start_debug(daemon, session["id"])
    assert again == first
    started = [
        p["text"]
        for method, p in daemon.notifications[mark:]
        if method == "podlink/log" and p["source"] == "app" and p["text"].startswith("$ ")
    ]
    assert started == []
    states = [
        p["app"]["state"]
        for method, p in daemon.notifications[mark:]
        if method == "podlink/sessionChanged" and p.get("app")
    ]
    assert all(state == "running" for state in states), states
    reply = await break_in_greet(again, workspace / "app" / "greeting.py", app_forward)
    assert reply == '{"message": "Hello, Ada!"}'


async def test_a_breakpoint_hits_again_after_the_container_restarts(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    if not isinstance(probe, DockerProbe):
        pytest.skip("restarting the container is Docker's; a save restart is tested everywhere")
    session, _, app_forward = await start_forwarded(daemon, workspace)
    mark = daemon.mark()
    configuration = await start_debug(daemon, session["id"])
    await app_listening(daemon, since=mark)
    greeting_file = workspace / "app" / "greeting.py"
    assert await break_in_greet(configuration, greeting_file, app_forward) == (
        '{"message": "Hello, Ada!"}'
    )

    # Everything in the container ends, the debugpy copy in /tmp stays: podlink reconnects,
    # starts the app under debugpy again and says when the editor can attach.
    mark = daemon.mark()
    await asyncio.to_thread(probe.container.restart, timeout=1)
    await daemon.wait_for(
        "podlink/log",
        lambda p: p["source"] == "daemon" and p["text"].startswith("debug server ready"),
        seconds=90,
        since=mark,
    )
    await app_listening(daemon, since=mark)
    # What the editor does on its own when its debug session ended: ask again, attach again.
    again = await start_debug(daemon, session["id"])
    assert again == configuration
    assert await break_in_greet(again, greeting_file, app_forward) == ('{"message": "Hello, Ada!"}')
