"""Who hears about a session: the language server, or the terminal for ``podlink up``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from podlink import protocol
from podlink.diagnostics import Diagnostic, DiagnosticSource

log = logging.getLogger(__name__)


class SessionListener(Protocol):
    def session_changed(self, session: protocol.Session) -> None: ...

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None: ...

    def show_error(self, message: str) -> None:
        """Something the user must see now (the editor shows a message box)."""

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        """Replace ``source``'s diagnostics for the local file ``path`` (empty: clear)."""


class GuardedListener:
    """A listener that never raises into the session: telling the user about a sync, a line of
    the app's output or a diagnostic must not end the task that was doing the work. A failure
    to report is logged (with its traceback) to the daemon's log and the work goes on."""

    def __init__(self, inner: SessionListener) -> None:
        self._inner = inner

    def session_changed(self, session: protocol.Session) -> None:
        self._call("session_changed", self._inner.session_changed, session)

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None:
        self._call("log", self._inner.log, session_id, source, text)

    def show_error(self, message: str) -> None:
        self._call("show_error", self._inner.show_error, message)

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        self._call(
            "publish_diagnostics", self._inner.publish_diagnostics, source, path, diagnostics
        )

    @staticmethod
    def _call(name: str, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:
            log.exception("the session's listener failed in %s; the session goes on", name)
