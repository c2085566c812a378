"""The one seam between podlink and an outside system that runs code.

A target can run a command with byte streams (``exec``), open a TCP connection to a port as
seen from inside it (``tunnel``), report lifecycle events, and describe itself. What only
some targets can do is in ``capabilities``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from podlink.errors import PodlinkError
from podlink.protocol import ErrorCode


@dataclasses.dataclass(frozen=True)
class FileLine:
    """A line of the user's file that a target error is about, e.g. a Dockerfile's failed step."""

    path: Path
    line: int
    message: str


class TargetUnavailable(PodlinkError):
    """The target cannot be reached or used. The message says what was tried and what to do;
    ``at`` is the line of the user's file to fix, when the error comes from one."""

    def __init__(self, message: str, *, at: FileLine | None = None) -> None:
        super().__init__(ErrorCode.TARGET_UNAVAILABLE, message)
        self.at = at


class PortRefused(TargetUnavailable):
    """The target is reachable, but nothing accepts connections on the port inside it."""


class PidLine:
    """The first line a wrapped command writes on stderr: its pid, before any output of its own.

    Container targets start commands under ``sh`` that reports the pid this way, because
    neither Docker nor Kubernetes can stop an exec: the pid is how its process group is
    signalled later.
    """

    def __init__(self) -> None:
        self.known: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        """Take stderr bytes; what is left for the command's own stderr."""
        if self.known.done():
            return data
        self._buffer += data
        line, newline, rest = self._buffer.partition(b"\n")
        if not newline:
            return b""
        pid: int | None = None
        with contextlib.suppress(ValueError):
            pid = int(line)
        self.known.set_result(pid)
        return rest

    def end(self) -> None:
        """The stream ended: a pid never reported stays unknown."""
        if not self.known.done():
            self.known.set_result(None)

    @property
    def pid(self) -> int | None:
        return self.known.result() if self.known.done() else None


class ReportsPid:
    """``pid`` and ``wait_for_pid`` of an exec whose wrapped command reports its pid on
    stderr first (``PidLine``); a TTY has no separate stderr, so there it stays unknown."""

    _pid_line: PidLine
    _tty: bool

    @property
    def pid(self) -> int | None:
        """The command's pid in the target, once reported."""
        return self._pid_line.pid

    async def wait_for_pid(self) -> int | None:
        """The command's pid in the container (None with a TTY, where it is not printed)."""
        if self._tty:
            return None
        return await self._pid_line.known


class TargetEventKind(enum.Enum):
    STARTED = "started"
    RESTARTED = "restarted"
    REPLACED = "replaced"
    GONE = "gone"
    # Something the user should know that changes nothing for the session: a pod of the
    # workload that cannot pull its image, crash-loops or cannot be scheduled.
    WARNING = "warning"


class TargetEvent(msgspec.Struct, frozen=True):
    kind: TargetEventKind
    reason: str = ""


class TargetDescription(msgspec.Struct, frozen=True):
    kind: str
    name: str
    detail: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def label(self) -> str:
        """What a user calls it: "pod web-7d9c", "container web-dev"."""
        noun = {"kubernetes": "pod", "docker": "container"}.get(self.kind, "target")
        return f"{noun} {self.name}" if self.name else noun


class ExecStream(Protocol):
    """A running command in the target.

    ``stdin`` is None unless the exec was started with ``stdin=True``. ``stderr`` is None for
    TTY execs (the terminal merges both).
    """

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader | None

    async def close_stdin(self) -> None:
        """Half-close stdin: the command sees end of input."""

    async def wait(self) -> int:
        """Wait for the command to end; its exit code (negative: killed by that signal)."""

    async def terminate(self, grace_seconds: float = 3.0) -> int:
        """Stop the command and everything it started: SIGTERM, then SIGKILL after grace."""


class Target(Protocol):
    async def connect(self) -> None:
        """Reach the target (create it if configured to). Raises TargetUnavailable."""

    async def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> ExecStream:
        """Start ``argv`` in the target. ``cwd`` is a target path (see ``target_path``)."""

    async def tunnel(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to ``127.0.0.1:port`` as seen from inside the target.

        Raises PortRefused when nothing listens there. A target that can only learn that
        once the stream is open (Kubernetes port-forward reports a failed dial afterwards,
        and never reports a good one) raises it from the returned reader instead.
        """

    def events(self) -> AsyncIterator[TargetEvent]:
        """Lifecycle events, for as long as the target is open."""

    def describe(self) -> TargetDescription: ...

    @property
    def python(self) -> str:
        """The interpreter command that runs podlink's agent in the target."""

    def target_path(self, remote: str) -> str:
        """The path processes in the target use for the configured remote path ``remote``.

        Container targets return it unchanged; the local target places it under its root.
        """

    async def close(self) -> None:
        """Stop everything this target object started and release its connections."""
