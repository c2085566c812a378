"""A session listener for in-process tests: records everything and lets tests wait on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podlink import protocol
from podlink.diagnostics import Diagnostic, DiagnosticSource


class RecordingListener:
    def __init__(self) -> None:
        self.sessions: list[protocol.Session] = []
        self.logs: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.diagnostics: dict[tuple[str, Path], list[Diagnostic]] = {}
        self._changed = asyncio.Condition()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(wake())

    def session_changed(self, session: protocol.Session) -> None:
        self.sessions.append(session)
        self._notify()

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None:
        self.logs.append((source, text))
        self._notify()

    def show_error(self, message: str) -> None:
        self.errors.append(message)
        self._notify()

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        self.diagnostics[(source, path)] = diagnostics
        self._notify()

    def mark(self) -> tuple[int, int]:
        return len(self.sessions), len(self.logs)

    def after(self, session: protocol.Session) -> tuple[int, int]:
        """A mark just past a recorded session state, for waiting on what came next."""
        index = next(i for i, s in enumerate(self.sessions) if s is session)
        return index + 1, 0

    async def wait_until(self, condition: Callable[[], Any], seconds: float = 30.0) -> Any:
        async with asyncio.timeout(seconds), self._changed:
            while not (found := condition()):
                await self._changed.wait()
            return found

    async def wait_for_state(
        self, state: str, since: tuple[int, int] = (0, 0), seconds: float = 30.0
    ) -> protocol.Session:
        def find() -> protocol.Session | None:
            return next((s for s in self.sessions[since[0] :] if s.state == state), None)

        session: protocol.Session = await self.wait_until(find, seconds)
        return session

    async def wait_for_log(
        self, text: str, since: tuple[int, int] = (0, 0), seconds: float = 30.0
    ) -> str:
        def find() -> str | None:
            return next((line for _, line in self.logs[since[1] :] if text in line), None)

        line: str = await self.wait_until(find, seconds)
        return line
