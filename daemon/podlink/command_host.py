"""What tests and builds need from a session: its target, file channel and path mapping.

How their commands are put together and read is in ``command_run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from podlink import protocol
from podlink.agent.transport import FileTransport
from podlink.config import Config
from podlink.diagnostics import Diagnostic, DiagnosticSource
from podlink.pathmap import MappedRoot, PathMap
from podlink.sync.engine import SyncEngine
from podlink.targets.base import Target, TargetUnavailable


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
