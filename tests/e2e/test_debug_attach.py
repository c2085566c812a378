"""Attaching to a process that already runs in the target with debugpy listening: podlink
forwards its port and maps the paths, and restarts nothing. A real DAP client stops at a
breakpoint through that forward, on every target (the real cluster too with
PODLINK_TEST_KUBECONTEXT).

The test image has no debugpy: the workspace carries the daemon's own (pure Python) in
``vendor/``, so the sync puts it where the app's ``PYTHONPATH`` finds it, as an image with
debugpy installed would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcException

from podlink.session.debug import COPIED_DEBUGPY_ENV, debugpy_files
from tests.e2e.conftest import Daemon
from tests.e2e.test_debug import attach_and_break
from tests.e2e.test_ports import start_forwarded
from tests.e2e.test_sessions import free_port, start
from tests.targets import TargetProbe

pytestmark = pytest.mark.asyncio


def app_under_its_own_debugpy(workspace: Path) -> int:
    """Make the app start itself under debugpy, as an image might; the debugpy port."""
    for relative, source in debugpy_files():
        copy = workspace / "vendor" / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
    port = free_port()  # the local target shares this machine's loopback
    env = ", ".join(f'{key}: "{value}"' for key, value in COPIED_DEBUGPY_ENV.items())
    config = workspace / "podlink.yaml"
    config.write_text(
        config.read_text()
        .replace(
            'command: ["python3", "-m", "app"]',
            'command: ["python3", "-Xfrozen_modules=off", "-m", "debugpy", '
            f'"--listen", "127.0.0.1:{port}", "-m", "app"]',
        )
        .replace('env: {PORT: "8000"}', f'env: {{PORT: "8000", PYTHONPATH: vendor, {env}}}')
    )
    return port


def app_started(daemon: Daemon, since: int) -> list[str]:
    return [
        p["text"]
        for method, p in daemon.notifications[since:]
        if method == "podlink/log" and p["source"] == "app" and p["text"].startswith("$ ")
    ]


async def test_attach_to_a_running_debugpy_named_in_the_config(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    debug_port = app_under_its_own_debugpy(workspace)
    config = workspace / "podlink.yaml"
    config.write_text(config.read_text() + f"debug: {{attach: {{port: {debug_port}}}}}\n")
    session, _, app_forward = await start_forwarded(daemon, workspace)

    mark = daemon.mark()
    result = await daemon.request("podlink/startDebug", {"sessionId": session["id"]})
    configuration = result["configuration"]
    assert configuration["connect"]["host"] == "127.0.0.1"
    remote_root = (
        str((workspace / ".podlink" / "target" / "app").resolve())
        if probe.kind == "local"
        else "/app"
    )
    assert configuration["pathMappings"] == [
        {"localRoot": str(workspace.resolve()), "remoteRoot": remote_root}
    ]
    client, reply = await attach_and_break(
        configuration, workspace / "app" / "greeting.py", app_forward
    )
    await client.request("disconnect", {})
    await client.close()
    assert reply == '{"message": "Hello, Ada!"}'
    assert app_started(daemon, mark) == []  # attached to the process as it ran


async def test_attach_by_port_in_the_request(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    debug_port = app_under_its_own_debugpy(workspace)
    session, _, app_forward = await start_forwarded(daemon, workspace)

    mark = daemon.mark()
    result = await daemon.request(
        "podlink/startDebug", {"sessionId": session["id"], "port": debug_port}
    )
    client, reply = await attach_and_break(
        result["configuration"], workspace / "app" / "greeting.py", app_forward
    )
    await client.request("disconnect", {})
    await client.close()
    assert reply == '{"message": "Hello, Ada!"}'
    assert app_started(daemon, mark) == []


async def test_attaching_where_nothing_listens_says_what_to_start(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session = await start(daemon, workspace)
    silent_port = free_port()
    with pytest.raises(JsonRpcException) as raised:
        await daemon.request(
            "podlink/startDebug", {"sessionId": session["id"], "port": silent_port}
        )
    assert raised.value.data["reason"] == "invalidParams"
    message = raised.value.message
    assert f"nothing listens on port {silent_port} in the target" in message
    assert f"--listen 127.0.0.1:{silent_port}" in message
