"""Debugging tests end to end: podlink/debugTests runs pytest under debugpy in the target,
a real DAP client attaches through podlink's forward and stops at a breakpoint in a test
and one in the app code it calls; then the run's results and diagnostics arrive as those of
any run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from tests.dap import DapClient
from tests.e2e.conftest import Daemon
from tests.e2e.test_testing import diagnostics, line_of, results_of, start
from tests.targets import TargetProbe

pytestmark = pytest.mark.asyncio

FAILING_TEST = "tests/test_greeting.py::test_greets_by_name"


@pytest.fixture(autouse=True)
def pytest_in_the_local_target(workspace: Path, probe: TargetProbe) -> None:
    """The local target runs this machine's python3, which need not have pytest: use ours."""
    if probe.kind == "local":
        config = workspace / "podlink.yaml"
        command = json.dumps([sys.executable, "-m", "pytest", "-q"])
        config.write_text(config.read_text().replace('["python3", "-m", "pytest", "-q"]', command))


async def stop_at(client: DapClient, since: int) -> dict[str, Any]:
    """The top frame of the next stop at a breakpoint after ``since``, with its locals."""
    stopped = await client.wait_event("stopped", seconds=60, since=since)
    assert stopped["reason"] == "breakpoint"
    frames = (await client.request("stackTrace", {"threadId": stopped["threadId"]}))["stackFrames"]
    scopes = (await client.request("scopes", {"frameId": frames[0]["id"]}))["scopes"]
    local_scope = next(scope for scope in scopes if scope["name"] == "Locals")
    variables = await client.request(
        "variables", {"variablesReference": local_scope["variablesReference"]}
    )
    return {
        "thread": stopped["threadId"],
        "name": frames[0]["name"],
        "line": frames[0]["line"],
        "path": frames[0]["source"]["path"],
        "locals": {v["name"]: v["value"] for v in variables["variables"]},
    }


async def test_a_debugged_test_stops_in_the_test_and_in_the_app_then_reports(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    test_file = workspace / "tests" / "test_greeting.py"
    test_file.write_text(
        test_file.read_text().replace(
            'assert greet("Ada") == "Hello, Ada!"',
            'said = greet("Ada")\n    assert said == "Hello, Grace!"',
        )
    )
    app_file = workspace / "app" / "greeting.py"
    test_line = line_of(test_file, 'said = greet("Ada")')
    app_line = line_of(app_file, 'return f"Hello, {cleaned}!"')
    session_id = await start(daemon, workspace)

    mark = daemon.mark()
    answer = await daemon.request(
        "podlink/debugTests", {"sessionId": session_id, "ids": [FAILING_TEST], "runId": "dbg"}
    )
    assert answer["runId"] == "dbg"
    configuration = answer["configuration"]
    assert configuration["request"] == "attach"
    assert [m["localRoot"] for m in configuration["pathMappings"]] == [str(workspace.resolve())]

    connect = configuration["connect"]
    client = await DapClient.connect(connect["host"], connect["port"])
    try:
        await client.request(
            "initialize",
            {"clientID": "podlink-tests", "adapterID": "debugpy", "pathFormat": "path"},
        )
        attached = client.send_request("attach", configuration)
        await client.wait_event("initialized", seconds=30)
        for source, line in ((test_file, test_line), (app_file, app_line)):
            placed = await client.request(
                "setBreakpoints",
                {"source": {"path": str(source)}, "breakpoints": [{"line": line}]},
            )
            assert [b["verified"] for b in placed["breakpoints"]] == [True]
        # pytest waits for the debugger: nothing of the run has been reported yet.
        assert results_of(daemon, "dbg") == {}
        before = client.mark()
        await client.request("configurationDone")
        await asyncio.wait_for(attached, 30)

        in_test = await stop_at(client, before)
        assert (in_test["name"], in_test["line"]) == ("test_greets_by_name", test_line)
        assert in_test["path"] == str(test_file)
        assert results_of(daemon, "dbg") == {}, "the test is held at its breakpoint"

        before = client.mark()
        await client.request("continue", {"threadId": in_test["thread"]})
        in_app = await stop_at(client, before)
        assert (in_app["name"], in_app["line"]) == ("greet", app_line)
        assert in_app["path"] == str(app_file)
        assert in_app["locals"]["cleaned"] == "'Ada'"

        await client.request("continue", {"threadId": in_app["thread"]})
        finished = await daemon.wait_for(
            "podlink/testRunFinished", lambda p: p["runId"] == "dbg", seconds=60, since=mark
        )
    finally:
        await client.close()

    assert (finished["passed"], finished["failed"], finished["errored"]) == (0, 1, 0)
    failed = results_of(daemon, "dbg")[FAILING_TEST]
    assert failed["outcome"] == "failed"
    assert "Hello, Grace!" in failed["message"]
    [diagnostic] = diagnostics(daemon, test_file, "podlink-test")
    assert diagnostic.range.start.line == line_of(test_file, "Hello, Grace!") - 1
    # The run's forward goes with it.
    await daemon.wait_for(
        "podlink/sessionChanged",
        lambda s: connect["port"] not in [f["localPort"] for f in s["ports"]],
        since=mark,
    )

    server_pid = daemon.client._server.pid  # type: ignore[union-attr]
    await daemon.request("podlink/stopSession", {"sessionId": session_id})
    assert probe.leftover_processes(server_pid) == []


async def test_debugging_tests_whose_command_is_not_python_is_refused(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    config = workspace / "podlink.yaml"
    text = config.read_text()
    start_at = text.index("test:")
    config.write_text(text[:start_at] + 'test:\n  command: ["pytest", "-q"]\n')
    session_id = await start(daemon, workspace)
    with pytest.raises(JsonRpcException) as raised:
        await daemon.request("podlink/debugTests", {"sessionId": session_id})
    assert raised.value.data["reason"] == "invalidParams"
    assert "test.command starts with 'pytest'" in raised.value.message
    assert "[python3, -m, pytest]" in raised.value.message
