"""Port forwarding: a listener on 127.0.0.1 per forward, a target tunnel per connection.

Each accepted connection opens its own ``Target.tunnel`` to the port inside the target (as
kubectl port-forward opens one stream per connection), and bytes are copied both ways with
back-pressure (every write waits for ``drain``) and half-close passed on (``write_eof``).

A forward is ``active`` while the target can be reached. When the target goes away (the
session reports it, or a tunnel fails for a reason other than a refused port) the forward
shows ``reconnecting`` and retries with capped exponential backoff; new clients are held
until it is back (up to ``HOLD_SECONDS``). A port with nothing listening in the target is the
app's business, not the forward's: that client's connection is reset, a line is logged, and
the forward stays ``active``.

Listeners bind 127.0.0.1 only, never another address.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from podlink import protocol
from podlink.targets.base import PortRefused, TargetUnavailable

LOOPBACK = "127.0.0.1"
CHUNK_SIZE = 256 * 1024
# How far past the wanted port to look for a free one before letting the OS pick.
PORT_SEARCH_SPAN = 100
# A client that arrives while the forward is reconnecting waits this long for it.
HOLD_SECONDS = 30.0
TUNNEL_TIMEOUT_SECONDS = 30.0
FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 15.0
HEALTHY_AFTER_SECONDS = 1.0

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
OpenTunnel = Callable[[int], Awaitable[Streams]]
CheckTarget = Callable[[], Awaitable[None]]


class Backoff:
    """Delays between retries: 50 ms doubling to 15 s, back to 50 ms after a second of health.

    A target that flaps (up for a moment, down again) keeps growing the delay instead of
    being hammered every 50 ms.
    """

    def __init__(
        self,
        first: float = FIRST_RETRY_DELAY,
        cap: float = MAX_RETRY_DELAY,
        healthy_after: float = HEALTHY_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first = first
        self._cap = cap
        self._healthy_after = healthy_after
        self._clock = clock
        self._next = first
        self._healthy_since: float | None = None

    def failed(self) -> float:
        """The delay before the next attempt."""
        if self._healthy_since is not None:
            if self._clock() - self._healthy_since >= self._healthy_after:
                self._next = self._first
            self._healthy_since = None
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        return delay

    def succeeded(self) -> None:
        self._healthy_since = self._clock()


class Forward:
    """One local listener and the connections it carries into the target."""

    def __init__(
        self,
        remote_port: int,
        *,
        open_tunnel: OpenTunnel,
        check_target: CheckTarget,
        on_change: Callable[[], None],
        on_log: Callable[[str], None],
    ) -> None:
        self.local_port = 0
        self.remote_port = remote_port
        self.state: protocol.PortForwardState = "active"
        self.error: str | None = None
        self.closed = False
        self._server: asyncio.Server | None = None
        self._open_tunnel = open_tunnel
        self._check_target = check_target
        self._on_change = on_change
        self._on_log = on_log
        self._connections: set[asyncio.Task[None]] = set()
        self._usable = asyncio.Event()
        self._usable.set()
        self._wake = asyncio.Event()
        self._backoff = Backoff()
        self._backoff.succeeded()
        self._reconnecting: asyncio.Task[None] | None = None

    async def listen(self, wanted: int, avoid: int | None) -> None:
        """Listen on 127.0.0.1:``wanted``, or the next free port other than ``avoid``."""
        self._server, self.local_port = await _listen(self.serve, wanted, avoid)

    @property
    def name(self) -> str:
        return f"forward 127.0.0.1:{self.local_port} -> {self.remote_port}"

    @property
    def connections(self) -> int:
        return len(self._connections)

    def to_protocol(self) -> protocol.PortForward:
        return protocol.PortForward(
            local_port=self.local_port,
            remote_port=self.remote_port,
            state=self.state,
            connections=self.connections,
            error=self.error,
        )

    # -- connections --------------------------------------------------------------------

    async def serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        """The listener's callback: carry one client connection."""
        task = asyncio.current_task()
        assert task is not None
        if self.closed:
            _reset(client)
            return
        self._connections.add(task)
        self._on_change()
        try:
            await self._carry(client_reader, client)
        except asyncio.CancelledError:
            # The forward is closing. The task ends here instead of re-raising: before
            # 3.11.9 asyncio's server calls exception() on a cancelled connection task and
            # logs "Exception in callback" with a traceback for every open connection.
            _reset(client)
            return
        finally:
            self._connections.discard(task)
            if not self.closed:
                self._on_change()

    async def _carry(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            await asyncio.wait_for(self._usable.wait(), HOLD_SECONDS)
        except TimeoutError:
            self._on_log(f"{self.name}: the target is still unreachable; closed a connection")
            _reset(client)
            return
        try:
            remote_reader, remote = await asyncio.wait_for(
                self._open_tunnel(self.remote_port), TUNNEL_TIMEOUT_SECONDS
            )
        except PortRefused as error:
            self._on_log(f"{self.name}: connection refused in the target: {error}")
            _reset(client)
            return
        except (TargetUnavailable, TimeoutError, OSError) as error:
            reason = str(error) or "opening a tunnel timed out"
            self._on_log(f"{self.name}: cannot reach the target: {reason}")
            _reset(client)
            self.target_lost(reason)
            return
        try:
            await splice(client_reader, client, remote_reader, remote)
        except PortRefused as error:  # learned only once the tunnel was open (Target.tunnel)
            self._on_log(f"{self.name}: connection refused in the target: {error}")

    # -- health -------------------------------------------------------------------------

    def target_lost(self, reason: str) -> None:
        """The target cannot be reached: show it, hold new clients, retry with backoff."""
        if self.closed:
            return
        if self.state != "reconnecting":
            self._on_log(f"{self.name}: reconnecting ({reason})")
        self.state, self.error = "reconnecting", reason
        self._usable.clear()
        self._on_change()
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(self._reconnect(reason))

    def target_back(self) -> None:
        """The session reached the target again: retry now rather than after the delay."""
        self._wake.set()

    async def _reconnect(self, reason: str) -> None:
        while not self.closed:
            delay = self._backoff.failed()
            self.error = f"{reason}; next try in {delay:.2f} s"
            self._on_change()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            try:
                await self._check_target()
            except TargetUnavailable as error:
                reason = str(error)
                if delay >= 1:
                    self._on_log(f"{self.name}: still reconnecting ({reason})")
                continue
            self._backoff.succeeded()
            self.state, self.error = "active", None
            self._usable.set()
            self._on_log(f"{self.name}: active again")
            self._on_change()
            return

    async def close(self) -> None:
        self.closed = True
        if self._server is not None:
            self._server.close()
        tasks = [*self._connections]
        if self._reconnecting is not None:
            tasks.append(self._reconnecting)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class PortForwards:
    """A session's forwards, found by local port."""

    def __init__(
        self,
        open_tunnel: OpenTunnel,
        check_target: CheckTarget,
        *,
        on_change: Callable[[], None],
        on_log: Callable[[str], None],
    ) -> None:
        self._open_tunnel = open_tunnel
        self._check_target = check_target
        self._on_change = on_change
        self._on_log = on_log
        self._forwards: dict[int, Forward] = {}

    async def add(
        self, remote_port: int, local_port: int | None = None, *, shares_loopback: bool = False
    ) -> Forward:
        """Listen on ``local_port`` (default: the remote port's number), or the next free port.

        ``shares_loopback``: the target's 127.0.0.1 is this machine's (the local target), so
        the remote port's own number is taken by the app itself and is never used locally.
        Raises OSError when no port can be bound at all.
        """
        wanted = local_port if local_port is not None else remote_port
        forward = Forward(
            remote_port,
            open_tunnel=self._open_tunnel,
            check_target=self._check_target,
            on_change=self._on_change,
            on_log=self._on_log,
        )
        await forward.listen(wanted, remote_port if shares_loopback else None)
        self._forwards[forward.local_port] = forward
        moved = f" ({wanted} was taken)" if forward.local_port != wanted else ""
        self._on_log(f"{forward.name}: listening{moved}")
        self._on_change()
        return forward

    async def remove(self, local_port: int) -> bool:
        forward = self._forwards.pop(local_port, None)
        if forward is None:
            return False
        await forward.close()
        self._on_log(f"{forward.name}: removed")
        self._on_change()
        return True

    def target_lost(self, reason: str) -> None:
        for forward in self._forwards.values():
            forward.target_lost(reason)

    def target_back(self) -> None:
        for forward in self._forwards.values():
            forward.target_back()

    async def close(self) -> None:
        forwards, self._forwards = list(self._forwards.values()), {}
        await asyncio.gather(*(forward.close() for forward in forwards))

    def to_protocol(self) -> tuple[protocol.PortForward, ...]:
        return tuple(forward.to_protocol() for forward in self._forwards.values())


async def _listen(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    wanted: int,
    avoid: int | None,
) -> tuple[asyncio.Server, int]:
    """A listener on 127.0.0.1 at ``wanted`` or the next free port (else one the OS picks)."""
    candidates = [
        port
        for port in range(wanted, min(wanted + PORT_SEARCH_SPAN, 65536))
        if port != avoid and port > 0
    ]
    for port in [*candidates, 0]:
        try:
            server = await asyncio.start_server(serve, LOOPBACK, port, limit=CHUNK_SIZE)
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES) and port != 0:
                continue
            raise
        bound = int(server.sockets[0].getsockname()[1])
        return server, bound
    raise AssertionError("port 0 always binds or raises")


# -- copying bytes ------------------------------------------------------------------------

PipeEnd = Literal["eof", "read failed", "write failed"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> PipeEnd:
    """Copy until end of input, then half-close the writer. Never raises a connection error."""
    while True:
        try:
            chunk = await reader.read(CHUNK_SIZE)
        except (ConnectionError, OSError):
            return "read failed"
        try:
            if not chunk:
                if writer.can_write_eof() and not writer.is_closing():
                    writer.write_eof()
                return "eof"
            writer.write(chunk)
            await writer.drain()
        except (ConnectionError, OSError, RuntimeError):
            return "write failed"


async def splice(
    client_reader: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    remote_reader: asyncio.StreamReader,
    remote: asyncio.StreamWriter,
) -> None:
    """Carry bytes both ways until both directions have ended, then close both sides.

    A broken direction ends the whole connection at once, except a failed write towards
    the target: the target is then closing its side too, and what it already sent is still
    delivered to the client.
    """
    upstream = asyncio.create_task(_pipe(client_reader, remote))
    downstream = asyncio.create_task(_pipe(remote_reader, client))
    broken = False
    try:
        pending: set[asyncio.Task[PipeEnd]] = {upstream, downstream}
        while pending and not broken:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                end = task.result()
                if end != "eof" and not (task is upstream and end == "write failed"):
                    broken = True
    except (asyncio.CancelledError, PortRefused):
        broken = True
        raise
    finally:
        for task in (upstream, downstream):
            task.cancel()
        await asyncio.gather(upstream, downstream, return_exceptions=True)
        if broken:
            _reset(client)
            remote.transport.abort()
        else:
            client.close()
            remote.close()
        for writer in (client, remote):
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, so the client sees a connection error, not an empty reply."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
