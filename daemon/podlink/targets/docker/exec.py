"""Exec streams over the Docker Engine API, fully asynchronous.

The Engine's ``/exec/{id}/start`` is hijacked here (HTTP upgrade to a raw stream) on an
asyncio connection of our own: the SDK's ``socket=True`` path hands back a read-only
wrapper around a socket whose buffered reader may already hold the first bytes of output.
Without a TTY the Engine multiplexes stdout and stderr in 8-byte-header frames; they are
split into two StreamReaders here. Stdin is the connection's write half; half-closing it
ends the command's input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from podlink.targets.base import PidLine, ReportsPid

log = logging.getLogger(__name__)

FRAME_HEADER = struct.Struct(">BxxxI")
STDOUT, STDERR = 1, 2
STREAM_LIMIT = 1 << 20
KILL_WAIT_SECONDS = 5.0

# Every command starts under sh, which prints its pid (the process group of the command: each
# exec is its own session leader) on stderr and then becomes the command. Docker has no call
# that stops an exec, so this pid is how the command and its children are stopped later.
PID_WRAPPER = ("sh", "-c", 'echo "$$" >&2 && exec "$@"', "podlink-exec")


class EngineUnavailable(Exception):
    """The Docker Engine could not be reached or refused the request."""


@dataclass(frozen=True)
class EngineAddress:
    """Where the Engine listens: a unix socket path, or a TCP host and port."""

    unix_path: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> EngineAddress:
        value = (environ or os.environ).get("DOCKER_HOST", "unix:///var/run/docker.sock")
        parsed = urlparse(value)
        if parsed.scheme == "unix":
            return cls(unix_path=parsed.path)
        if parsed.scheme in ("tcp", "http") and parsed.hostname:
            return cls(host=parsed.hostname, port=parsed.port or 2375)
        raise EngineUnavailable(
            f"DOCKER_HOST={value!r} is not supported: use unix:///path or tcp://host:port"
        )

    def __str__(self) -> str:
        return f"unix://{self.unix_path}" if self.unix_path else f"tcp://{self.host}:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self.unix_path is not None:
                return await asyncio.open_unix_connection(self.unix_path, limit=STREAM_LIMIT)
            return await asyncio.open_connection(self.host, self.port, limit=STREAM_LIMIT)
        except OSError as error:
            raise EngineUnavailable(f"cannot reach the Docker Engine at {self}: {error}") from error


def engine_error_text(error: BaseException) -> str:
    """The Engine's own explanation of a failed call, without the HTTP wrapping."""
    explanation = getattr(error, "explanation", None)
    return str(explanation or error).strip()


def open_engine() -> tuple[EngineAddress, Any]:
    """The address ``DOCKER_HOST`` names and a client that has answered a ping there.

    Raises EngineUnavailable saying where it looked and what to do.
    """
    import docker
    import docker.errors
    import requests

    address = EngineAddress.from_environment()
    try:
        # The SDK's "auto" version costs a /version call before the ping; the ping's own
        # Api-Version header names the same version (the docker CLI reads it there), so a far
        # Engine is one round trip away instead of two.
        client = docker.from_env(timeout=30, version=docker.constants.MINIMUM_DOCKER_API_VERSION)
        answer = client.api._get(client.api._url("/_ping", versioned_api=False))
        client.api._raise_for_status(answer)
        client.api._version = (
            answer.headers.get("Api-Version") or client.api._retrieve_server_version()
        )
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        raise EngineUnavailable(
            f"cannot reach the Docker Engine at {address}: {engine_error_text(error)}; "
            "start Docker (or set DOCKER_HOST) and try again"
        ) from error
    return address, client


async def start_hijacked(
    address: EngineAddress,
    api_version: str,
    exec_id: str,
    *,
    tty: bool,
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """POST /exec/{id}/start with an upgrade; returns the raw stream after the headers.

    ``connection``: one already opened to ``address`` (while the exec was being created)."""
    reader, writer = connection or await address.connect()
    body = json.dumps({"Detach": False, "Tty": tty}).encode()
    request = (
        f"POST /v{api_version}/exec/{exec_id}/start HTTP/1.1\r\n"
        "Host: docker\r\n"
        "Content-Type: application/json\r\n"
        "Connection: Upgrade\r\n"
        "Upgrade: tcp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[1] not in ("101", "200"):
        detail = await _error_body(reader, head)
        writer.close()
        raise EngineUnavailable(f"the Engine refused to start the exec: {status_line} {detail}")
    return reader, writer


async def _error_body(reader: asyncio.StreamReader, head: bytes) -> str:
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if not length:
        return ""
    with contextlib.suppress(Exception):
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        message = json.loads(body).get("message")
        return str(message or body.decode(errors="replace"))
    return ""


class _ReadGate(asyncio.ReadTransport):
    """Stands in for a transport under ``stdout``, so that a reader falling behind pauses the
    demultiplexer (and with it the Engine's stream) instead of letting output pile up."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.open.set()

    def pause_reading(self) -> None:
        self.open.clear()

    def resume_reading(self) -> None:
        self.open.set()


class DockerExec(ReportsPid):
    """One command in a container: stdin, split stdout/stderr, exit code, group stop."""

    # The Engine call that sizes a TTY exec's terminal (the SDK's ``api.exec_resize``), set by
    # the target that started the exec; without it ``resize`` does nothing.
    engine_resize: Callable[..., Any] | None = None

    def __init__(
        self,
        exec_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tty: bool,
        wants_stdin: bool,
        inspect: Callable[[str], dict[str, Any]],
        signal_group: Callable[[int, str], None],
    ) -> None:
        self.exec_id = exec_id
        self._raw = reader
        self._writer = writer
        self._tty = tty
        self._inspect = inspect
        self._signal_group = signal_group
        self.stdin: asyncio.StreamWriter | None = writer if wants_stdin else None
        self.stdout = asyncio.StreamReader(limit=STREAM_LIMIT)
        self.stderr: asyncio.StreamReader | None = (
            None if tty else asyncio.StreamReader(limit=STREAM_LIMIT)
        )
        self._gate: _ReadGate | None = None
        self._pid_line = PidLine()
        self._exit_code: int | None = None
        self._pump = asyncio.create_task(self._demultiplex())
        if not wants_stdin:
            with contextlib.suppress(OSError):
                writer.write_eof()

    def limit_buffering(self) -> None:
        """Hold at most about twice the stream limit of unread stdout: back-pressure for
        streams whose reader may be slow (a tunnel to a slow client). Only for execs whose
        stdout is always read, since stderr and ``wait`` then wait for that reader too."""
        if self._gate is None:
            self._gate = _ReadGate()
            self.stdout.set_transport(self._gate)

    async def _demultiplex(self) -> None:
        try:
            if self._tty:
                while chunk := await self._raw.read(1 << 16):
                    self.stdout.feed_data(chunk)
                    if self._gate is not None:
                        await self._gate.open.wait()
            else:
                await self._read_frames()
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as error:
            log.debug("exec %s stream ended: %s", self.exec_id[:12], error)
        finally:
            self.stdout.feed_eof()
            if self.stderr is not None:
                self.stderr.feed_eof()
            self._pid_line.end()

    async def _read_frames(self) -> None:
        assert self.stderr is not None
        while True:
            try:
                header = await self._raw.readexactly(FRAME_HEADER.size)
            except asyncio.IncompleteReadError:
                return
            stream, size = FRAME_HEADER.unpack(header)
            payload = await self._raw.readexactly(size)
            if stream == STDOUT:
                self.stdout.feed_data(payload)
                if self._gate is not None:
                    await self._gate.open.wait()
            elif stream == STDERR:
                self._feed_stderr(payload)

    def _feed_stderr(self, payload: bytes) -> None:
        assert self.stderr is not None
        if rest := self._pid_line.feed(payload):
            self.stderr.feed_data(rest)

    async def close_stdin(self) -> None:
        if self.stdin is not None and not self._writer.is_closing():
            with contextlib.suppress(OSError):
                self._writer.write_eof()

    async def wait(self) -> int:
        if self._exit_code is not None:
            return self._exit_code
        await asyncio.shield(self._pump)
        self._writer.close()
        # The stream can end a moment before the Engine has reaped the process.
        for _ in range(100):
            try:
                state = await asyncio.to_thread(self._inspect, self.exec_id)
            except Exception as error:  # the container (and its execs) may be gone
                log.debug("cannot inspect exec %s: %s", self.exec_id[:12], error)
                break
            if not state.get("Running") and state.get("ExitCode") is not None:
                self._exit_code = int(state["ExitCode"])
                return self._exit_code
            await asyncio.sleep(0.02)
        self._exit_code = -1
        return self._exit_code

    async def resize(self, rows: int, columns: int) -> None:
        """Give a TTY exec's terminal a new size; the command sees SIGWINCH.

        The Engine holds a resize that arrives before the exec runs until it does, so this may
        be called right after the exec started. Raises EngineUnavailable when refused.
        """
        resize_call = self.engine_resize
        if not self._tty or resize_call is None:
            return
        try:
            await asyncio.to_thread(resize_call, self.exec_id, height=rows, width=columns)
        except Exception as error:  # the SDK's errors: the exec or its container may be gone
            raise EngineUnavailable(
                f"cannot resize the terminal of exec {self.exec_id[:12]}: {error}"
            ) from error

    async def terminate(self, grace_seconds: float = 3.0) -> int:
        if self._exit_code is not None:
            return self._exit_code
        pid = self.pid
        if pid is None:
            # A TTY exec (or one that never started): closing the stream hangs it up.
            self._writer.close()
            return await self.wait()
        await asyncio.to_thread(self._signal_group, pid, "TERM")
        try:
            return await asyncio.wait_for(asyncio.shield(self.wait()), grace_seconds)
        except TimeoutError:
            await asyncio.to_thread(self._signal_group, pid, "KILL")
        try:
            return await asyncio.wait_for(asyncio.shield(self.wait()), KILL_WAIT_SECONDS)
        except TimeoutError:
            # Nothing more can be done from here: let go of the stream rather than hang.
            log.warning("exec %s (pid %s) did not stop; leaving it", self.exec_id[:12], pid)
            self._writer.close()
            self._exit_code = -1
            return self._exit_code


def exec_environment(env: Mapping[str, str] | None) -> list[str] | None:
    return [f"{key}={value}" for key, value in env.items()] if env else None


def wrapped_argv(argv: Sequence[str], *, tty: bool) -> list[str]:
    return list(argv) if tty else [*PID_WRAPPER, *argv]
