"""Back-pressure through a forward: a client that stops reading stops the sender in the target.

Without it the daemon would read everything the target sends into memory. A server in the
target floods the forwarded connection and reports each mebibyte it got rid of; while the
client reads nothing the sender must stall well short of the end; once the client reads,
every byte must arrive in order.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from podlink.session.ports import PortForwards
from podlink.targets.base import Target
from podlink.targets.local import LocalTarget
from tests.targets import LOCAL_AND_DOCKER, container_for, target_in

pytestmark = pytest.mark.asyncio

MEBIBYTE = 1 << 20
TOTAL_MEBIBYTES = 128
PATTERN = bytes(range(256)) * (MEBIBYTE // 256)

FLOOD_SERVER = """
import socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
print("port", listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
chunk = bytes(range(256)) * 4096
for sent in range(1, int(sys.argv[1]) + 1):
    conn.sendall(chunk)
    print("sent", sent, flush=True)
conn.close()
"""


@pytest.fixture(params=LOCAL_AND_DOCKER)
def container(request: pytest.FixtureRequest) -> Iterator[Any]:
    created = container_for(str(request.param))
    yield created
    if created is not None:
        created.remove(force=True)


@pytest_asyncio.fixture
async def target(container: Any, tmp_path: Path) -> AsyncIterator[Target]:
    made: Target = target_in(container, tmp_path)
    await made.connect()
    yield made
    await made.close()


async def always_reachable() -> None:
    return None


async def test_a_client_that_stops_reading_holds_back_the_sender(target: Target) -> None:
    python = sys.executable if isinstance(target, LocalTarget) else target.python
    server = await target.exec([python, "-c", FLOOD_SERVER, str(TOTAL_MEBIBYTES)])
    port = int((await asyncio.wait_for(server.stdout.readline(), 10)).split()[1])
    logs: list[str] = []
    forwards = PortForwards(
        target.tunnel, always_reachable, on_change=lambda: None, on_log=logs.append
    )
    forward = await forwards.add(port, shares_loopback=isinstance(target, LocalTarget))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", forward.local_port)
        sent = 0
        while sent < TOTAL_MEBIBYTES:
            try:
                line = await asyncio.wait_for(server.stdout.readline(), 1.0)
            except TimeoutError:
                break  # no progress for a second: the sender is held back
            sent = int(line.split()[1])
        assert sent < TOTAL_MEBIBYTES // 2, f"the sender got rid of {sent} MiB unread"

        for _ in range(TOTAL_MEBIBYTES):
            assert await asyncio.wait_for(reader.readexactly(MEBIBYTE), 30) == PATTERN
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        assert await asyncio.wait_for(server.wait(), 30) == 0
    finally:
        await forwards.close()
    assert forward.closed


async def test_closing_a_forward_with_open_connections_reports_no_error(target: Target) -> None:
    """Closing a forward cancels its connections; asyncio must have nothing to report (its
    server once logged "Exception in callback" with a traceback for each one)."""
    python = sys.executable if isinstance(target, LocalTarget) else target.python
    server = await target.exec([python, "-c", FLOOD_SERVER, str(TOTAL_MEBIBYTES)])
    port = int((await asyncio.wait_for(server.stdout.readline(), 10)).split()[1])
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    forwards = PortForwards(
        target.tunnel, always_reachable, on_change=lambda: None, on_log=lambda _: None
    )
    forward = await forwards.add(port, shares_loopback=isinstance(target, LocalTarget))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", forward.local_port)
        assert await asyncio.wait_for(reader.readexactly(MEBIBYTE), 30) == PATTERN
        await forwards.close()
        # The client sees its connection reset; by then every callback of the close has run.
        with pytest.raises(ConnectionResetError):
            while await asyncio.wait_for(reader.read(MEBIBYTE), 30):
                pass
        writer.close()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
        await server.terminate()
    assert forward.closed
    assert reported == []
