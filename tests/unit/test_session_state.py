"""The session's state changes only through reduce(); the store tells subscribers once per event."""

from __future__ import annotations

import dataclasses

import pytest

from podlink.session.state import (
    BatchSynced,
    Connected,
    PartChanged,
    Ready,
    Reconnected,
    Rescanning,
    SessionEvent,
    SessionState,
    StartFailed,
    Starting,
    StillReconnecting,
    Stopped,
    SyncBusy,
    SyncCounted,
    SyncSettled,
    TargetLost,
    reduce,
)
from podlink.session.store import SessionStore

READY = SessionState(state="ready", sync_state="idle", files_synced=3, bytes_synced=300)
DEGRADED = SessionState(state="degraded", sync_state="error", error="pod gone", files_synced=3)

CASES: list[tuple[str, SessionState, SessionEvent, SessionState]] = [
    (
        "a restart forgets the last error",
        SessionState(state="stopped", error="no Docker"),
        Starting(),
        SessionState(state="starting"),
    ),
    (
        "a failed start stops with its reason",
        SessionState(),
        StartFailed("no Docker"),
        SessionState(state="stopped", error="no Docker"),
    ),
    (
        "stopping keeps the error",
        DEGRADED,
        Stopped(),
        dataclasses.replace(DEGRADED, state="stopped"),
    ),
    (
        "connected: the initial sync scans",
        SessionState(),
        Connected(),
        SessionState(state="syncing", sync_state="scanning"),
    ),
    (
        "the initial sync counts what it wrote",
        SessionState(state="syncing", sync_state="scanning", files_synced=1, bytes_synced=10),
        SyncCounted(files=2, bytes=20),
        SessionState(state="syncing", sync_state="scanning", files_synced=3, bytes_synced=30),
    ),
    (
        "the sync settles on conflicts",
        SessionState(state="syncing", sync_state="scanning"),
        SyncSettled("conflict"),
        SessionState(state="syncing", sync_state="conflict"),
    ),
    ("ready", SessionState(state="syncing"), Ready(), SessionState(state="ready")),
    ("a batch starts", READY, SyncBusy(), dataclasses.replace(READY, sync_state="syncing")),
    (
        "a batch counts and measures its latency, rounded",
        dataclasses.replace(READY, sync_state="syncing"),
        BatchSynced(sync_state="idle", files=1, bytes=5, latency_ms=12.345),
        dataclasses.replace(READY, files_synced=4, bytes_synced=305, last_latency_ms=12.3),
    ),
    (
        "a batch that changed nothing keeps the last latency",
        dataclasses.replace(READY, sync_state="syncing", last_latency_ms=9.0),
        BatchSynced(sync_state="paused"),
        dataclasses.replace(READY, sync_state="paused", last_latency_ms=9.0),
    ),
    (
        "a lost target degrades the session and the sync",
        READY,
        TargetLost("pod gone"),
        dataclasses.replace(READY, state="degraded", sync_state="error", error="pod gone"),
    ),
    (
        "reconnecting says why it still fails",
        DEGRADED,
        StillReconnecting("pod gone; still reconnecting: no pod"),
        dataclasses.replace(DEGRADED, error="pod gone; still reconnecting: no pod"),
    ),
    (
        "a reconnect rescans",
        DEGRADED,
        Rescanning(),
        dataclasses.replace(DEGRADED, sync_state="scanning"),
    ),
    (
        "reconnected: ready, no error",
        DEGRADED,
        Reconnected(sync_state="idle"),
        dataclasses.replace(DEGRADED, state="ready", sync_state="idle", error=None),
    ),
    ("a part's change changes no state", READY, PartChanged(), READY),
]


@pytest.mark.parametrize(
    ("before", "event", "after"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_reduce(before: SessionState, event: SessionEvent, after: SessionState) -> None:
    assert reduce(before, event) == after


def test_only_stopping_reaches_the_listener_at_once() -> None:
    urgent = {type(event).__name__ for _, _, event, _ in CASES if event.urgent}
    assert urgent == {"StartFailed", "Stopped"}


def test_the_store_tells_each_subscriber_once_per_dispatch_with_the_new_state() -> None:
    store = SessionStore()
    heard: list[tuple[str, SessionState, SessionEvent]] = []
    store.subscribe(lambda state, event: heard.append(("first", state, event)))
    store.subscribe(lambda state, event: heard.append(("second", state, event)))
    store.dispatch(Connected())
    store.part_changed()
    connected = SessionState(state="syncing", sync_state="scanning")
    assert heard == [
        ("first", connected, Connected()),
        ("second", connected, Connected()),
        ("first", connected, PartChanged()),
        ("second", connected, PartChanged()),
    ]
    assert store.state == connected
