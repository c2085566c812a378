"""The daemon's sessions: one per workspace folder, found by id or folder.

Starting a session for a folder that already has one re-reads its configuration: a broken
file leaves the running session on its last good configuration.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from podlink.config import Config, load_config
from podlink.errors import PodlinkError
from podlink.protocol import ErrorCode
from podlink.session.core import Session, SessionListener
from podlink.sync.outcome import ProgressCallback

log = logging.getLogger(__name__)


class SessionNotFound(PodlinkError):
    def __init__(self, session_id: str) -> None:
        super().__init__(
            ErrorCode.SESSION_NOT_FOUND,
            f"no session with id {session_id!r}; listSessions shows the running ones",
            {"sessionId": session_id},
        )
        self.session_id = session_id


class SessionRegistry:
    def __init__(self, listener: SessionListener) -> None:
        self._listener = listener
        self._sessions: dict[str, Session] = {}
        self._starting: dict[Path, asyncio.Lock] = {}

    def list(self) -> list[Session]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def for_folder(self, folder: Path) -> Session | None:
        resolved = folder.resolve()
        return next((s for s in self._sessions.values() if s.folder == resolved), None)

    async def start(
        self,
        folder: Path,
        config_file: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Session:
        """Start (or reconfigure) the folder's session. Raises ConfigError, TargetUnavailable."""
        resolved = folder.resolve()
        lock = self._starting.setdefault(resolved, asyncio.Lock())
        async with lock:
            config: Config = await asyncio.to_thread(load_config, resolved, config_file)
            existing = self.for_folder(resolved)
            if existing is not None:
                if existing.config != config or existing.state == "stopped":
                    await existing.apply_config(config)
                return existing
            session = Session(config, self._listener)
            self._sessions[session.id] = session
            try:
                await session.start(progress)
            except BaseException:
                del self._sessions[session.id]
                raise
            return session

    async def stop(self, session_id: str) -> None:
        session = self.get(session_id)
        del self._sessions[session_id]
        await session.stop()

    async def stop_all(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(session.stop() for session in sessions), return_exceptions=True)
