"""Following the target and coming back after losing it: a lost target degrades the session,
and reconnecting (with capped backoff) starts a new agent, resyncs and restarts the app."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from podlink.agent.client import AgentError, AgentGone
from podlink.session.state import (
    PartChanged,
    Reconnected,
    Rescanning,
    StillReconnecting,
    TargetLost,
)
from podlink.targets.base import Target, TargetEventKind, TargetUnavailable

if TYPE_CHECKING:
    from podlink.session.core import Session

RECONNECT_FIRST_DELAY = 0.05
RECONNECT_MAX_DELAY = 15.0


class Recovery:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._following: asyncio.Task[None] | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def follow(self, target: Target) -> None:
        """Watch the target's events from now until ``stop``."""
        self._following = asyncio.create_task(self._follow_target(target))

    async def stop(self) -> None:
        for task in (self._recovering, self._following):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._recovering = self._following = None

    def lost_agent(self, error: AgentError) -> None:
        self.target_lost(f"lost the connection to the target: {error}")

    def target_lost(self, reason: str) -> None:
        session = self._session
        if session.state in ("stopped", "starting"):
            return
        if session.state != "degraded":
            session.log("daemon", f"{reason}; reconnecting")
        session.store.dispatch(TargetLost(reason))
        session.ports.target_lost(reason)
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.create_task(self._recover(reason))

    async def _follow_target(self, target: Target) -> None:
        session = self._session
        async for event in target.events():
            if event.kind is TargetEventKind.GONE:
                self.target_lost(event.reason)
            elif event.kind is TargetEventKind.WARNING:
                session.log("daemon", event.reason)
                session.store.dispatch(PartChanged())  # the target's description lists it
            elif event.kind is not TargetEventKind.STARTED:
                session.log("daemon", event.reason)
                self._wake.set()

    async def _recover(self, reason: str) -> None:
        """Reconnect with capped backoff: a new agent, a full resync, the app again."""
        session = self._session
        delay = RECONNECT_FIRST_DELAY
        while session.state == "degraded":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                summary = await self._reconnect()
            except (TargetUnavailable, AgentGone) as error:
                session.store.dispatch(StillReconnecting(f"{reason}; still reconnecting: {error}"))
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            session.log("daemon", f"reconnected to the target, {summary}")
            session.ports.target_back()
            return

    async def _reconnect(self) -> str:
        """Connect again and resync; says in one line what that took (a new pod holds none
        of the files, and naming each one would bury the log)."""
        session = self._session
        target = session.target
        assert target is not None
        if session.app is not None:
            await session.app.stop()
        before = target.describe().name
        started = time.monotonic()
        await target.connect()
        for engine in session.engines:
            await engine.close()  # its follower and lane belong to the target that went
        await session.sync.replace_agent(target)
        session.store.dispatch(Rescanning())
        written = await session.sync.initial_sync(target)
        seconds = time.monotonic() - started
        session.store.dispatch(Reconnected(sync_state=session.sync.settled_state()))
        if session.app is not None:
            await session.app.start()
        description = target.describe()
        where = description.label
        if description.name != before:
            where = f"new {where} (was {before})"
        return f"{where}: {written:,} file(s) synced in {seconds:.1f} s"
