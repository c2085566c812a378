"""The local target: a directory on this machine, with commands run as local processes.

It is the embedded default: the quick start and most tests run on it with nothing else
installed. Remote paths map into the target root (``/app`` is ``<root>/app``), so the same
``podlink.yaml`` sync entries work here and in a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import posixpath
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from podlink.targets.base import (
    PortRefused,
    TargetDescription,
    TargetEvent,
    TargetEventKind,
    TargetUnavailable,
)


class LocalExec:
    """A local process started in its own process group, so stopping it stops its children."""

    def __init__(self, process: asyncio.subprocess.Process, argv: Sequence[str]) -> None:
        self._process = process
        self.argv = tuple(argv)
        self.stdin = process.stdin
        assert process.stdout is not None
        self.stdout: asyncio.StreamReader = process.stdout
        self.stderr = process.stderr

    @property
    def pid(self) -> int:
        return self._process.pid

    async def close_stdin(self) -> None:
        if self.stdin is not None and not self.stdin.is_closing():
            self.stdin.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await self.stdin.wait_closed()

    async def wait(self) -> int:
        return await self._process.wait()

    async def terminate(self, grace_seconds: float = 3.0) -> int:
        if self._process.returncode is not None:
            self._kill_group(signal.SIGKILL)  # children that outlived the leader
            return self._process.returncode
        self._kill_group(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self._process.wait(), grace_seconds)
        except TimeoutError:
            self._kill_group(signal.SIGKILL)
            return await self._process.wait()
        finally:
            self._kill_group(signal.SIGKILL)

    def _kill_group(self, sig: signal.Signals) -> None:
        # The process is its own group leader (start_new_session), so its pid is the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, sig)


F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, spelled out: Python has it only from 3.10 on Linux
PIPE_SIZE = 1 << 20


def _widen_pipe(writer: asyncio.StreamWriter) -> None:
    """A 1 MiB pipe instead of 64 KiB: bulk file data then moves in far fewer wake-ups."""
    pipe = writer.transport.get_extra_info("pipe")
    if pipe is not None:
        # A process that is already gone has a closed pipe: nothing to widen.
        with contextlib.suppress(OSError, ValueError):
            fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_SIZE)


class LocalTarget:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._execs: set[LocalExec] = set()
        self._events: asyncio.Queue[TargetEvent | None] = asyncio.Queue()
        self._closed = False

    async def connect(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TargetUnavailable(
                f"cannot create the local target folder {self.root}: {error.strerror}; "
                "choose another target.local.root in podlink.yaml"
            ) from error
        if not self.root.is_dir():
            raise TargetUnavailable(f"the local target root {self.root} is not a folder")
        self._events.put_nowait(TargetEvent(TargetEventKind.STARTED))

    async def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> LocalExec:
        if self._closed:
            raise TargetUnavailable("the local target was closed")
        if tty:
            raise TargetUnavailable("the local target runs commands without a terminal")
        work_dir = cwd if cwd is not None else str(self.root)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=work_dir,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        except OSError as error:
            raise TargetUnavailable(
                f"cannot run {argv[0]!r} in {work_dir}: {error.strerror}"
            ) from error
        if process.stdin is not None:
            _widen_pipe(process.stdin)
        running = LocalExec(process, argv)
        self._execs.add(running)
        process_done = asyncio.ensure_future(process.wait())
        process_done.add_done_callback(lambda _: self._execs.discard(running))
        return running

    async def tunnel(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError as error:
            raise PortRefused(
                f"nothing accepts connections on 127.0.0.1:{port} in the local target"
            ) from error

    async def events(self) -> AsyncIterator[TargetEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    def describe(self) -> TargetDescription:
        return TargetDescription(kind="local", name=str(self.root), detail={"root": str(self.root)})

    def target_path(self, remote: str) -> str:
        normalized = posixpath.normpath(remote)
        if not remote.startswith("/") or normalized.startswith("/.."):
            raise ValueError(f"remote path must be absolute and inside the target: {remote!r}")
        relative = normalized.lstrip("/")
        return str(self.root / relative) if relative else str(self.root)

    @property
    def python(self) -> str:
        """The interpreter that runs podlink's agent here: the daemon's own."""
        return sys.executable

    async def close(self) -> None:
        self._closed = True
        running = list(self._execs)
        await asyncio.gather(*(each.terminate(grace_seconds=2.0) for each in running))
        self._events.put_nowait(None)
