"""The local target: a directory on this machine, with commands run as local processes.

It is the embedded default: the quick start and most tests run on it with nothing else
installed. Remote paths map into the target root (``/app`` is ``<root>/app``), so the same
``podlink.yaml`` sync entries work here and in a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import posixpath
import signal
import stat
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podlink.sync.core.names import TEMP_PREFIX
from podlink.targets import local_processes as processes
from podlink.targets.base import (
    PortRefused,
    TargetDescription,
    TargetEvent,
    TargetEventKind,
    TargetUnavailable,
)
from podlink.targets.capabilities import Leftovers, LeftoversRemoved

log = logging.getLogger(__name__)


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the process ended, not when its pipes closed: ``Process.wait()`` waits for
    both, and a child that detached itself may hold the pipes open for ever."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class LocalExec:
    """A local process started in its own process group, and marked (``local_processes``) so
    that stopping it stops everything it started, even children that left the group."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        exited: asyncio.Future[None],
        transport: asyncio.SubprocessTransport,
        argv: Sequence[str],
        mark: str,
    ) -> None:
        self._process = process
        self._exited = exited
        self._transport = transport
        self.argv = tuple(argv)
        self.mark = mark
        self.stdin = process.stdin
        assert process.stdout is not None
        self.stdout: asyncio.StreamReader = process.stdout
        self.stderr = process.stderr
        self.left_behind: tuple[str, ...] = ()

    @property
    def pid(self) -> int:
        return self._process.pid

    async def close_stdin(self) -> None:
        if self.stdin is not None and not self.stdin.is_closing():
            self.stdin.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await self.stdin.wait_closed()

    async def wait(self) -> int:
        await asyncio.shield(self._exited)
        code = self._transport.get_returncode()
        assert code is not None
        return code

    async def terminate(self, grace_seconds: float = 3.0) -> int:
        """SIGTERM to the group and to every process with this command's mark; SIGKILL after
        the grace period; then close the pipes, whoever still holds them. What could not be
        ended is in ``left_behind``."""
        if not self._exited.done():
            self._kill_group(signal.SIGTERM)
            # Once each: a second SIGTERM can land while a process is handling the first
            # (the agent's handler ends it with code 0; the second would end it by signal).
            processes.signal_processes(self._outside_group(), signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), grace_seconds)
        self._kill_group(signal.SIGKILL)
        left = await processes.end_processes(processes.processes_marked(self.mark), 0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exited), processes.KILL_WAIT_SECONDS)
        self.left_behind = tuple(processes.process_label(pid) for pid in left)
        self._transport.close()  # our ends: readers see the end even if a pipe is still held
        code = self._transport.get_returncode()
        return code if code is not None else -signal.SIGKILL

    def _outside_group(self) -> list[int]:
        """This command's processes that left its process group (setsid and the like)."""
        outside = []
        for pid in processes.processes_marked(self.mark):
            with contextlib.suppress(OSError):
                if os.getpgid(pid) != self._process.pid:
                    outside.append(pid)
        return outside

    def _kill_group(self, sig: signal.Signals) -> None:
        # The process is its own group leader (start_new_session), so its pid is the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, sig)


STREAM_LIMIT = 1 << 16  # asyncio's default line limit for a StreamReader
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
    def __init__(self, root: Path, on_log: Callable[[str], None] | None = None) -> None:
        """``on_log``: told about set-up work the user should know of (orphans ended)."""
        self.root = root.resolve()
        self._on_log = on_log or (lambda text: log.warning("%s", text))
        self._execs: set[LocalExec] = set()
        self._events: asyncio.Queue[TargetEvent | None] = asyncio.Queue()
        self._closed = False
        self._owner = processes.Owner.this_daemon(self.root)
        self._serial = 0

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
        await self._end_orphans()
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
        self._serial += 1
        mark = self._owner.mark(self._serial)
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _ExitProtocol(STREAM_LIMIT, loop),
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=work_dir,
                env={**os.environ, **(env or {}), processes.MARK: mark},
                start_new_session=True,
            )
        except OSError as error:
            raise TargetUnavailable(
                f"cannot run {argv[0]!r} in {work_dir}: {error.strerror}"
            ) from error
        process = asyncio.subprocess.Process(transport, protocol, loop)
        if process.stdin is not None:
            _widen_pipe(process.stdin)
        running = LocalExec(process, protocol.exited, transport, argv, mark)
        self._execs.add(running)
        protocol.exited.add_done_callback(lambda _: self._execs.discard(running))
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

    def find_leftovers(self, remotes: Sequence[str]) -> Leftovers:
        """The agent's temporary files anywhere under the root (``LeavesLeftovers``)."""
        return LocalTempFiles(files=_temp_files_under(self.root))

    async def close(self) -> None:
        self._closed = True
        running = list(self._execs)
        await asyncio.gather(*(each.terminate(grace_seconds=2.0) for each in running))
        # What outlived its command (a detached child of a command that ended by itself).
        left = await processes.end_processes(processes.processes_marked(self._owner.prefix), 2.0)
        if left:
            log.warning(
                "still running after the local target closed: %s",
                ", ".join(processes.process_label(pid) for pid in left),
            )
        self._events.put_nowait(None)

    async def _end_orphans(self) -> None:
        """End what an earlier podlink for this root left running when it was killed."""
        orphans = processes.orphans_of(self._owner.root)
        if not orphans:
            return
        left = await processes.end_processes(sorted(orphans), 2.0)
        ended = len(orphans) - len(left)
        message = f"ended {ended} process(es) that an earlier podlink for {self.root} left running"
        if left:
            message += "; could not end " + ", ".join(processes.process_label(pid) for pid in left)
        self._on_log(message)


@dataclass
class LocalTempFiles(Leftovers):
    """The agent's temporary files a local target root holds."""

    files: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"file {path}" for path in self.files]

    def remove(self, say: Callable[[str], None]) -> LeftoversRemoved:
        removed = LeftoversRemoved()
        for path in self.files:
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                removed.failures.append(f"cannot remove {path}: {error.strerror}")
                continue
            say(f"removed file {path}")
            removed.files += 1
        return removed


def _temp_files_under(root: Path) -> list[Path]:
    """The agent's temporary files under ``root`` (symbolic links not followed)."""
    found: list[Path] = []
    for folder, _folders, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                if name.startswith(TEMP_PREFIX) and stat.S_ISREG(path.lstat().st_mode):
                    found.append(path)
    return sorted(found)
