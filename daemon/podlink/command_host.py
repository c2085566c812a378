"""What tests and builds need from a session, and how their commands run in its target.

``test`` and ``build`` commands run in the target with the first sync entry's remote folder
as their working folder (or their own ``cwd:``, a remote path), and with the target's
environment plus their ``env:``. Their output is read line by line as it comes, with no
limit on a line's length.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from podlink import protocol
from podlink.agent.transport import FileTransport
from podlink.config import CommandConfig, Config
from podlink.diagnostics import Diagnostic, DiagnosticSource
from podlink.pathmap import MappedRoot, PathMap
from podlink.sync.engine import SyncEngine
from podlink.targets.base import Target, TargetUnavailable

READ_CHUNK = 1 << 16


class CommandHost(Protocol):
    """The session, as tests and builds see it."""

    @property
    def config(self) -> Config: ...

    @property
    def target(self) -> Target | None: ...

    @property
    def engines(self) -> list[SyncEngine]: ...

    @property
    def transport(self) -> FileTransport | None: ...

    async def flush(self, timeout_seconds: float | None = None) -> protocol.SyncStatus:
        """Return once every local change made before the call is in the target."""

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        """Replace ``source``'s diagnostics for the local file ``path`` (empty: clear)."""

    def log(self, source: protocol.LogSource, text: str) -> None: ...


@dataclass(frozen=True)
class Connected:
    """A session's live connection: the target, its file channel and the path mapping."""

    target: Target
    transport: FileTransport
    paths: PathMap


def connected(host: CommandHost) -> Connected:
    """The session's target as it is now; TargetUnavailable when it is not connected."""
    target, transport, engines = host.target, host.transport, list(host.engines)
    if target is None or transport is None or not transport.alive or not engines:
        raise TargetUnavailable(
            "the session is not connected to its target (it is starting, reconnecting or "
            "stopped); try again once it is ready"
        )
    roots = [
        MappedRoot(
            host.config.local_root(entry),
            target.target_path(entry.remote),
            engine.is_ignored,
        )
        for entry, engine in zip(host.config.sync, engines, strict=False)
    ]
    return Connected(target, transport, PathMap(roots))


@dataclass(frozen=True)
class CommandPlan:
    """A configured command, ready for ``Target.exec``."""

    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def display(self) -> str:
        return " ".join(self.argv)


def plan_command(section: CommandConfig, config: Config, target: Target) -> CommandPlan:
    remote = section.cwd or config.sync[0].remote
    return CommandPlan(tuple(section.command), target.target_path(remote), dict(section.env))


async def read_lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Decoded lines without their line ends, as they arrive; a last unended line too."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while chunk := await stream.read(READ_CHUNK):
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line.removesuffix("\r")
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending.removesuffix("\r")


def tail_text(lines: Sequence[str], count: int = 20) -> str:
    """The last ``count`` non-empty lines, for an error message that must say why."""
    kept = [line for line in lines if line.strip()][-count:]
    return "\n".join(kept)
