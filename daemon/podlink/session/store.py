"""The session's store: it holds the current ``SessionState``, applies each dispatched event
with ``reduce`` and tells its subscribers once per dispatch.

``ChangeEmitter`` is the subscriber that reaches the listener: the session as the protocol
shows it, at most ten times a second (an urgent event, such as the session stopping, goes out
at once), and the status file ``podlink status`` reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from podlink import protocol
from podlink.session.listener import SessionListener
from podlink.session.state import PartChanged, SessionEvent, SessionState, reduce
from podlink.session.status_file import StatusFile

NOTIFY_INTERVAL_SECONDS = 0.1

Subscriber = Callable[[SessionState, SessionEvent], None]


class SessionStore:
    def __init__(self) -> None:
        self.state = SessionState()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def dispatch(self, event: SessionEvent) -> None:
        self.state = reduce(self.state, event)
        for subscriber in self._subscribers:
            subscriber(self.state, event)

    def part_changed(self) -> None:
        """For parts that report their own status: a forward, the app."""
        self.dispatch(PartChanged())


class ChangeEmitter:
    """Tells the listener about the session, coalesced, and keeps the status file current."""

    def __init__(
        self,
        describe: Callable[[], protocol.Session],
        listener: SessionListener,
        status_file: StatusFile,
    ) -> None:
        self._describe = describe
        self._listener = listener
        self._status_file = status_file
        self._emit_handle: asyncio.TimerHandle | None = None
        self._last_emit = 0.0

    def __call__(self, state: SessionState, event: SessionEvent) -> None:
        if event.urgent:
            self.emit_now()
        else:
            self.changed()

    def changed(self) -> None:
        if self._emit_handle is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_emit + NOTIFY_INTERVAL_SECONDS - loop.time())
        self._emit_handle = loop.call_later(delay, self.emit_now)

    def emit_now(self) -> None:
        if self._emit_handle is not None:
            self._emit_handle.cancel()
            self._emit_handle = None
        self._last_emit = asyncio.get_running_loop().time()
        snapshot = self._describe()
        self._listener.session_changed(snapshot)
        if snapshot.state != "stopped":
            self._status_file.write(snapshot)
