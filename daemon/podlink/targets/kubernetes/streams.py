"""Exec and port-forward streams over the Kubernetes API server's WebSocket subresources.

The official client's ``WSClient`` is blocking: one reader thread per exec pumps its stdout
and stderr channels into asyncio StreamReaders, and stdin is one end of a socket pair (a real
``asyncio.StreamWriter`` for the caller) whose other end a writer thread forwards to channel
0. On ``v5.channel.k8s.io`` the end of stdin becomes the close frame ``[255, 0]``; ``v4`` has
no way to say it, which is why the agent's framing never relies on stdin EOF. The exit code
is the Status object on channel 3.

A port-forward is one WebSocket per connection, relayed by the client's own thread to a
socket pair; the kubelet reports a failed dial on the port's error channel, which
``ForwardedReader`` turns into PortRefused. The protocol has no half-close: the client ends
the whole stream when the local side ends its input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes.stream import stream

from podlink.targets.base import PidLine, PortRefused, ReportsPid

log = logging.getLogger(__name__)

STDOUT_CHANNEL, STDERR_CHANNEL, STATUS_CHANNEL = 1, 2, 3
STREAM_LIMIT = 1 << 20
KILL_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.5

# Kubernetes exec has no working directory or environment, and no call that stops a
# command: sh changes directory, prints its pid (the command's process group when the
# runtime starts each exec in its own session) on stderr and becomes the command.
PID_WRAPPER = 'cd "$1" || exit 126; shift; echo "$$" >&2; exec "$@"'
TTY_WRAPPER = 'cd "$1" || exit 126; shift; exec "$@"'


def wrapped_argv(
    argv: Sequence[str], *, tty: bool, env: Mapping[str, str] | None, cwd: str | None
) -> list[str]:
    environment = ["env", *(f"{key}={value}" for key, value in env.items())] if env else []
    script = TTY_WRAPPER if tty else PID_WRAPPER
    return ["sh", "-c", script, "podlink-exec", cwd or ".", *environment, *argv]


def exit_code_from_status(raw: bytes) -> int:
    """The exit code in the Status object the kubelet sends on channel 3 (-1 when absent)."""
    try:
        status = json.loads(raw) if raw.strip() else None
    except ValueError:
        return -1
    if not isinstance(status, dict):
        return -1
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(TypeError, ValueError):
                return int(cause.get("message"))
    return -1


class KubeExec(ReportsPid):
    """One command in a pod's container: stdin, split stdout/stderr, exit code, group stop."""

    def __init__(
        self,
        websocket: Any,
        *,
        tty: bool,
        wants_stdin: bool,
        signal_group: Callable[[int, str], None],
    ) -> None:
        self._ws = websocket
        self._tty = tty
        self._signal_group = signal_group
        self._loop = asyncio.get_running_loop()
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout = asyncio.StreamReader(limit=STREAM_LIMIT)
        self.stderr: asyncio.StreamReader | None = (
            None if tty else asyncio.StreamReader(limit=STREAM_LIMIT)
        )
        self._pid_line = PidLine()
        self._done: asyncio.Future[int] = self._loop.create_future()
        self._stdin_peer: socket.socket | None = None
        self._wants_stdin = wants_stdin
        self._send_lock = threading.Lock()

    @property
    def subprotocol(self) -> str:
        return str(self._ws.subprotocol or "")

    async def start(self) -> None:
        if self._wants_stdin:
            ours, peer = socket.socketpair()
            self._stdin_peer = peer
            _, self.stdin = await asyncio.open_connection(sock=ours)
            threading.Thread(
                target=self._forward_stdin, name="podlink-kube-stdin", daemon=True
            ).start()
        elif self.subprotocol.startswith("v5"):
            self._send(lambda: self._ws.close_channel(0))
        threading.Thread(target=self._read_output, name="podlink-kube-exec", daemon=True).start()

    def _send(self, action: Callable[[], None]) -> bool:
        with self._send_lock:
            try:
                action()
                return True
            except Exception as error:  # the connection is gone: the reader reports the end
                log.debug("cannot write to the exec stream: %s", error)
                return False

    def _forward_stdin(self) -> None:
        peer = self._stdin_peer
        assert peer is not None
        try:
            while data := peer.recv(1 << 16):
                if not self._send(lambda data=data: self._ws.write_stdin(data)):  # type: ignore[misc]
                    return
            self._send(lambda: self._ws.close_channel(0))
        except OSError:
            pass
        finally:
            peer.close()

    def _read_output(self) -> None:
        status = b""
        try:
            while self._ws.is_open():
                self._ws.update(timeout=POLL_SECONDS)
                for channel in (STDOUT_CHANNEL, STDERR_CHANNEL):
                    data = self._ws.read_channel(channel)
                    if data:
                        self._deliver(channel, data)
                status += self._ws.read_channel(STATUS_CHANNEL) or b""
        except Exception as error:  # a dropped connection ends the command for us
            log.debug("exec stream ended: %s", error)
        with contextlib.suppress(Exception):  # what the last update buffered
            for channel in (STDOUT_CHANNEL, STDERR_CHANNEL):
                if data := self._ws.read_channel(channel):
                    self._deliver(channel, data)
            status += self._ws.read_channel(STATUS_CHANNEL) or b""
        code = exit_code_from_status(status)
        with contextlib.suppress(RuntimeError):  # the loop may be closed by now
            self._loop.call_soon_threadsafe(self._finish, code)

    def _deliver(self, channel: int, data: bytes) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._feed, channel, data)

    def _feed(self, channel: int, data: bytes) -> None:
        if channel == STDOUT_CHANNEL or self.stderr is None:
            self.stdout.feed_data(data)
            return
        if self._tty:
            self.stderr.feed_data(data)
            return
        if rest := self._pid_line.feed(data):
            self.stderr.feed_data(rest)

    def _finish(self, code: int) -> None:
        self.stdout.feed_eof()
        if self.stderr is not None:
            self.stderr.feed_eof()
        self._pid_line.end()
        if not self._done.done():
            self._done.set_result(code)
        if self.stdin is not None:
            self.stdin.close()

    async def close_stdin(self) -> None:
        if self.stdin is not None and not self.stdin.is_closing():
            with contextlib.suppress(OSError):
                self.stdin.write_eof()

    async def wait(self) -> int:
        return await asyncio.shield(self._done)

    def hang_up(self) -> None:
        """Close the WebSocket: the reader thread then ends the streams."""
        self._send(self._ws.close)

    async def terminate(self, grace_seconds: float = 3.0) -> int:
        if self._done.done():
            return self._done.result()
        pid = self.pid
        if pid is None:
            await asyncio.to_thread(self.hang_up)
            return await self.wait()
        await asyncio.to_thread(self._signal_group, pid, "TERM")
        try:
            return await asyncio.wait_for(self.wait(), grace_seconds)
        except TimeoutError:
            await asyncio.to_thread(self._signal_group, pid, "KILL")
        try:
            return await asyncio.wait_for(self.wait(), KILL_WAIT_SECONDS)
        except TimeoutError:
            log.warning("command (pid %s) in the pod did not stop; leaving it", pid)
            await asyncio.to_thread(self.hang_up)
            return await self.wait()


class ForwardedReader(asyncio.StreamReader):
    """The pod's side of one port-forward: ends with what the kubelet reported, if anything.

    Kubernetes says nothing when its dial into the pod works, and only writes on the port's
    error channel when it fails, after the stream is open; the client then closes its end of
    the socket pair. So that end is where a refused port shows: instead of a plain end of
    input, reading raises PortRefused (or ConnectionResetError for any other failure).
    """

    def __init__(self, forward: Any, port: int, where: str) -> None:
        super().__init__(limit=STREAM_LIMIT)
        self._forward = forward
        self._port = port
        self._where = where

    def _reported(self) -> Exception | None:
        # The client's proxy thread stores the message before it closes the socket, so it is
        # there by the time the end of the socket is seen here.
        message = (self._forward.error(self._port) or "").strip()
        if not message:
            return None
        if "connection refused" in message.lower():
            return PortRefused(
                f"nothing accepts connections on 127.0.0.1:{self._port} in {self._where}: {message}"
            )
        return ConnectionResetError(f"port-forward to {self._where} failed: {message}")

    def feed_eof(self) -> None:
        reported = self._reported()
        if reported is not None:
            self.set_exception(reported)
        else:
            super().feed_eof()

    def set_exception(self, exc: Exception) -> None:
        super().set_exception(self._reported() or exc)


async def open_forwarded_socket(
    forward: Any, port: int, where: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Asyncio streams on the client's end of one port-forward WebSocket (``where``: the pod,
    for messages).

    ``PortForward.socket`` is one end of a socket pair whose other end the client's proxy
    thread relays; it is a real socket, so asyncio can own it directly.
    """
    raw = forward.socket(port)
    sock: socket.socket = getattr(raw, "_socket", raw)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    reader = ForwardedReader(forward, port, where)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def stop_capturing(websocket: Any) -> None:
    """The client copies every byte of output into an in-memory log for ``read_all``, which
    a long-lived stream never calls; swap it for the client's own discarding sink."""
    from kubernetes.stream import ws_client

    websocket._all = ws_client._IgnoredIO()


def open_exec_stream(
    core: Any,
    pod: str,
    namespace: str,
    container: str,
    command: Sequence[str],
    *,
    stdin: bool,
    tty: bool,
) -> Any:
    """The WebSocket of an exec of ``command`` (see ``wrapped_argv``). Blocking."""
    return stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=list(command),
        container=container,
        stdin=stdin or tty,
        stdout=True,
        stderr=True,
        tty=tty,
        _preload_content=False,
        binary=True,
    )


def signal_group(
    core: Any, pod: str, namespace: str, container: str, pid: int, signal_name: str
) -> None:
    """Send ``signal_name`` to the process group of ``pid`` (an exec's), through an exec of
    its own: the exec subresource cannot signal. Blocking; raises what the client raises."""
    # The group first (the exec's own session); a runtime that does not start execs in a
    # session of their own leaves only the pid itself to signal.
    script = f"kill -{signal_name} -{pid} 2>/dev/null || kill -{signal_name} {pid}; true"
    stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=["sh", "-c", script],
        container=container,
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _request_timeout=30,
    )
