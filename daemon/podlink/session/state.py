"""The session's state as one frozen value, the events that change it, and ``reduce``.

Every change to what a session reports (its state, its sync's state, its error and its
counters) is an event dispatched to the session's store; ``reduce`` is the only place that
turns an event into a new state. Parts whose own status changed (a forward, the app, the
target's description) dispatch ``PartChanged``, which changes nothing here but tells the
listeners, since the status they report is read when the session is described.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from podlink import protocol


@dataclasses.dataclass(frozen=True)
class SessionState:
    state: protocol.SessionState = "starting"
    sync_state: protocol.SyncState = "idle"
    error: str | None = None
    files_synced: int = 0
    bytes_synced: int = 0
    last_latency_ms: float | None = None


@dataclasses.dataclass(frozen=True)
class SessionEvent:
    urgent: ClassVar[bool] = False
    """Listeners hear of it at once rather than within the coalescing interval."""


@dataclasses.dataclass(frozen=True)
class Starting(SessionEvent):
    """The session (re)starts: connecting to the target, before the first sync."""


@dataclasses.dataclass(frozen=True)
class StartFailed(SessionEvent):
    message: str
    urgent: ClassVar[bool] = True


@dataclasses.dataclass(frozen=True)
class Stopped(SessionEvent):
    urgent: ClassVar[bool] = True


@dataclasses.dataclass(frozen=True)
class Connected(SessionEvent):
    """The target and its agent are up; the initial sync scans both sides."""


@dataclasses.dataclass(frozen=True)
class Ready(SessionEvent):
    """The initial sync is done, the app and the configured forwards started."""


@dataclasses.dataclass(frozen=True)
class SyncCounted(SessionEvent):
    """Files written by a whole-tree sync (the initial one, or after a reconnect)."""

    files: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class SyncSettled(SessionEvent):
    """The sync has nothing in flight: idle, or held by conflicts or a halt."""

    sync_state: protocol.SyncState


@dataclasses.dataclass(frozen=True)
class SyncBusy(SessionEvent):
    """A batch of local changes is being synced."""


@dataclasses.dataclass(frozen=True)
class BatchSynced(SessionEvent):
    """A batch is done; ``files`` and ``bytes`` are what it wrote, ``latency_ms`` how long
    its first change waited, when it changed anything."""

    sync_state: protocol.SyncState
    files: int = 0
    bytes: int = 0
    latency_ms: float | None = None


@dataclasses.dataclass(frozen=True)
class TargetLost(SessionEvent):
    reason: str


@dataclasses.dataclass(frozen=True)
class StillReconnecting(SessionEvent):
    message: str


@dataclasses.dataclass(frozen=True)
class Rescanning(SessionEvent):
    """Reconnected: both sides are scanned again before the session is ready."""


@dataclasses.dataclass(frozen=True)
class Reconnected(SessionEvent):
    sync_state: protocol.SyncState


@dataclasses.dataclass(frozen=True)
class PartChanged(SessionEvent):
    """A forward, the app or the target's description changed."""


def reduce(state: SessionState, event: SessionEvent) -> SessionState:
    """The state after ``event``; no I/O, no clock."""
    replace = dataclasses.replace
    match event:
        case Starting():
            return replace(state, state="starting", error=None)
        case StartFailed(message=message):
            return replace(state, state="stopped", error=message)
        case Stopped():
            return replace(state, state="stopped")
        case Connected():
            return replace(state, state="syncing", sync_state="scanning")
        case Ready():
            return replace(state, state="ready")
        case SyncCounted(files=files, bytes=size):
            return _counted(state, files, size)
        case SyncSettled(sync_state=sync_state):
            return replace(state, sync_state=sync_state)
        case SyncBusy():
            return replace(state, sync_state="syncing")
        case BatchSynced(sync_state=sync_state, files=files, bytes=size, latency_ms=latency):
            state = _counted(replace(state, sync_state=sync_state), files, size)
            if latency is not None:
                state = replace(state, last_latency_ms=round(latency, 1))
            return state
        case TargetLost(reason=reason):
            return replace(state, state="degraded", sync_state="error", error=reason)
        case StillReconnecting(message=message):
            return replace(state, error=message)
        case Rescanning():
            return replace(state, sync_state="scanning")
        case Reconnected(sync_state=sync_state):
            return replace(state, state="ready", error=None, sync_state=sync_state)
    return state


def _counted(state: SessionState, files: int, size: int) -> SessionState:
    return dataclasses.replace(
        state, files_synced=state.files_synced + files, bytes_synced=state.bytes_synced + size
    )
