"""Port forwarding end to end: a real LSP client, the example app, real sockets.

Each scenario runs against every target kind (`probe`). On the local target the app's own
port number is taken by the app, so its forward listens on the next free port; the tests
always connect to the port the daemon reports.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Daemon
from tests.e2e.test_sessions import free_port, start, use_port
from tests.targets import DockerProbe, TargetProbe

pytestmark = pytest.mark.asyncio

MEGABYTE = 1 << 20


def forward_app_port(workspace: Path) -> int:
    """Give the app a free port and forward it from podlink.yaml; the app's port."""
    port = free_port()
    use_port(workspace, port)
    config = workspace / "podlink.yaml"
    config.write_text(config.read_text() + f'ports: ["{port}"]\n')
    return port


async def start_forwarded(daemon: Daemon, workspace: Path) -> tuple[dict[str, Any], int, int]:
    """Start the session and wait for the app; (session, app port, local forward port)."""
    app_port = forward_app_port(workspace)
    session = await start(daemon, workspace)
    await app_listening(daemon)
    (forward,) = session["ports"]
    assert forward["remotePort"] == app_port
    assert forward["state"] == "active"
    return session, app_port, forward["localPort"]


async def app_listening(daemon: Daemon, since: int = 0) -> None:
    await daemon.wait_for(
        "podlink/log", lambda p: p["source"] == "app" and "listening on" in p["text"], since=since
    )


async def http_exchange(
    port: int, request: bytes, *, half_close: bool = False, seconds: float = 60.0
) -> tuple[bytes, bytes]:
    """Send ``request`` to 127.0.0.1:``port`` and read until the server closes: (head, body)."""
    async with asyncio.timeout(seconds):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            if half_close:
                writer.write_eof()
            reply = await reader.read()
        finally:
            writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    return head, body


async def echo(port: int, body: bytes, *, seconds: float = 60.0) -> bytes:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    head, answer = await http_exchange(port, request, seconds=seconds)
    assert head.startswith(b"HTTP/1.0 200"), head
    return answer


async def greeting(port: int, name: str = "Ada") -> bytes:
    query = urllib.parse.quote(name)
    request = f"GET /?name={query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    head, body = await http_exchange(port, request.encode())
    assert head.startswith(b"HTTP/1.0 200"), head
    return body


async def greeting_when_served(port: int, seconds: float = 30.0) -> bytes:
    """The greeting, asked again while the forward resets connections because nothing
    listens in the target yet."""
    async with asyncio.timeout(seconds):
        while True:
            try:
                return await greeting(port)
            except (ConnectionResetError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.2)


async def listed_forwards(daemon: Daemon, session_id: str) -> list[dict[str, Any]]:
    sessions = await daemon.request("podlink/listSessions")
    (session,) = [s for s in sessions if s["id"] == session_id]
    forwards: list[dict[str, Any]] = session["ports"]
    return forwards


async def test_fifty_concurrent_megabyte_bodies_arrive_intact(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session, app_port, local_port = await start_forwarded(daemon, workspace)
    if probe.kind == "local":
        assert local_port != app_port, "the app itself holds its port on this machine"
    else:
        assert local_port == app_port
    assert await greeting(local_port) == b'{"message": "Hello, Ada!"}'

    bodies = [os.urandom(MEGABYTE) for _ in range(50)]
    mark = daemon.mark()
    answers = await asyncio.gather(*(echo(local_port, body, seconds=120) for body in bodies))
    assert [hashlib.sha256(a).digest() for a in answers] == [
        hashlib.sha256(b).digest() for b in bodies
    ]

    busy = await daemon.wait_for(
        "podlink/sessionChanged", lambda s: s["ports"][0]["connections"] > 0, since=mark
    )
    after_busy = next(i for i, (_, p) in enumerate(daemon.notifications) if p is busy) + 1
    idle = await daemon.wait_for(
        "podlink/sessionChanged", lambda s: s["ports"][0]["connections"] == 0, since=after_busy
    )
    assert idle["id"] == session["id"]
    assert idle["ports"][0]["state"] == "active"


# Not on Kubernetes: its port-forward protocol (portforward.k8s.io over WebSocket, as the API
# server and the official client speak it) cannot say "end of input" and keep the stream open,
# so a client's half-close can only end the whole connection.
@pytest.mark.parametrize("target_kind", ["local", "docker"])
async def test_a_client_that_half_closes_gets_its_response(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    _, _, local_port = await start_forwarded(daemon, workspace)
    body = os.urandom(MEGABYTE)
    # No Content-Length: the app reads until the client's end of input, so the reply can
    # only come once the half-close has travelled through the forward into the target.
    head, answer = await http_exchange(
        local_port, b"POST /echo HTTP/1.0\r\nHost: localhost\r\n\r\n" + body, half_close=True
    )
    assert head.startswith(b"HTTP/1.0 200"), head
    assert answer == body


async def test_the_forward_survives_an_app_restart_mid_transfer(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session, _, local_port = await start_forwarded(daemon, workspace)
    # A request in flight: headers promise a body that is only partly sent.
    reader, writer = await asyncio.open_connection("127.0.0.1", local_port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % MEGABYTE)
    writer.write(os.urandom(MEGABYTE // 2))
    await writer.drain()
    await daemon.wait_for(
        "podlink/sessionChanged", lambda s: s["ports"] and s["ports"][0]["connections"] == 1
    )

    mark = daemon.mark()
    await daemon.request("podlink/restartApp", {"sessionId": session["id"]})
    try:
        async with asyncio.timeout(20):
            cut_off = await reader.read()  # the old app is gone: the connection ends
    except ConnectionResetError:
        cut_off = b""
    assert b"200" not in cut_off
    writer.close()

    await app_listening(daemon, since=mark)
    assert await greeting(local_port) == b'{"message": "Hello, Ada!"}'
    (forward,) = await listed_forwards(daemon, session["id"])
    assert forward["state"] == "active" and forward["localPort"] == local_port


@pytest.mark.parametrize("target_kind", ["docker"])
async def test_the_forward_reconnects_after_the_container_restarts(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    _, _, local_port = await start_forwarded(daemon, workspace)
    mark = daemon.mark()
    assert isinstance(probe, DockerProbe)
    await asyncio.to_thread(probe.container.restart, timeout=1)

    reconnecting = await daemon.wait_for(
        "podlink/sessionChanged",
        lambda s: s["ports"] and s["ports"][0]["state"] == "reconnecting",
        since=mark,
    )
    assert reconnecting["ports"][0]["localPort"] == local_port
    assert reconnecting["ports"][0]["error"]
    await daemon.wait_for(
        "podlink/log",
        lambda p: (
            p["source"] == "daemon"
            and f"127.0.0.1:{local_port}" in p["text"]
            and "reconnecting" in p["text"]
        ),
        since=mark,
    )
    await daemon.wait_for(
        "podlink/sessionChanged",
        lambda s: s["state"] == "ready" and s["ports"][0]["state"] == "active",
        since=mark,
        seconds=40,
    )
    await daemon.wait_for(
        "podlink/log",
        lambda p: p["source"] == "daemon" and "active again" in p["text"],
        since=mark,
    )
    await app_listening(daemon, since=mark)
    # The Engine's events of a restart can arrive after the session reconnected, and the
    # app is then started once more: the same local port serves it again once it listens.
    assert await greeting_when_served(local_port) == b'{"message": "Hello, Ada!"}'


async def test_a_taken_local_port_moves_to_the_next_free_one(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session, app_port, _ = await start_forwarded(daemon, workspace)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        forward = await daemon.request(
            "podlink/addPort",
            {"sessionId": session["id"], "remotePort": app_port, "localPort": taken},
        )
        assert forward["remotePort"] == app_port
        assert forward["localPort"] > taken
        assert forward["state"] == "active"
        moved = forward["localPort"]
        assert await greeting(moved) == b'{"message": "Hello, Ada!"}'
        assert moved in [f["localPort"] for f in await listed_forwards(daemon, session["id"])]

    mark = daemon.mark()
    await daemon.request("podlink/removePort", {"sessionId": session["id"], "localPort": moved})
    await daemon.wait_for(
        "podlink/sessionChanged",
        lambda s: moved not in [f["localPort"] for f in s["ports"]],
        since=mark,
    )
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", moved)


async def test_a_remote_port_with_nothing_listening_fails_that_client_only(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session, _, app_forward = await start_forwarded(daemon, workspace)
    silent = free_port()
    forward = await daemon.request(
        "podlink/addPort", {"sessionId": session["id"], "remotePort": silent}
    )
    mark = daemon.mark()
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        async with asyncio.timeout(20):
            # The reset can come so fast that it lands in the connect itself (local target).
            reader, writer = await asyncio.open_connection("127.0.0.1", forward["localPort"])
            try:
                writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                await writer.drain()
                if not await reader.read():
                    raise AssertionError("the connection was closed, not reset")
            finally:
                writer.close()

    logged = await daemon.wait_for(
        "podlink/log",
        lambda p: p["source"] == "daemon" and "connection refused" in p["text"],
        since=mark,
    )
    assert f"127.0.0.1:{forward['localPort']} -> {silent}" in logged["text"]
    forwards = {f["localPort"]: f for f in await listed_forwards(daemon, session["id"])}
    assert forwards[forward["localPort"]]["state"] == "active"
    assert await greeting(app_forward) == b'{"message": "Hello, Ada!"}'


async def test_port_requests_check_their_params(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session = await start(daemon, workspace)
    with pytest.raises(JsonRpcException) as raised:
        await daemon.request("podlink/removePort", {"sessionId": session["id"], "localPort": 1})
    assert raised.value.data["reason"] == "invalidParams"
    with pytest.raises(JsonRpcException) as raised:
        await daemon.request("podlink/addPort", {"sessionId": session["id"], "remotePort": 0})
    assert raised.value.data["reason"] == "invalidParams"
    with pytest.raises(JsonRpcException) as raised:
        await daemon.request("podlink/addPort", {"sessionId": "nope", "remotePort": 80})
    assert raised.value.data["reason"] == "sessionNotFound"
