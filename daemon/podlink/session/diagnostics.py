"""The diagnostics a session publishes (build errors, test failures, sync conflicts), and
which local files hold them, so a source's can be cleared when they are fixed."""

from __future__ import annotations

from pathlib import Path

from podlink.diagnostics import Diagnostic, DiagnosticSource
from podlink.session.listener import SessionListener
from podlink.sync.core.reconcile import Conflict
from podlink.sync.engine import SyncEngine


class SessionDiagnostics:
    def __init__(self, listener: SessionListener) -> None:
        self._listener = listener
        self._published: dict[DiagnosticSource, set[Path]] = {}
        self._conflicts_published: list[tuple[Path, Conflict]] = []

    def publish(self, source: DiagnosticSource, path: Path, items: list[Diagnostic]) -> None:
        """Replace ``source``'s diagnostics of the local file ``path`` (empty: clear)."""
        published = self._published.setdefault(source, set())
        if items:
            published.add(path)
        else:
            published.discard(path)
        self._listener.publish_diagnostics(source, path, items)

    def clear(self, source: DiagnosticSource) -> None:
        for path in list(self._published.get(source, ())):
            self.publish(source, path, [])

    def publish_conflicts(self, engines: list[SyncEngine]) -> None:
        # Every sync result comes here, a saved file's too: only a changed list is sent.
        listed = [(engine.local_root, c) for engine in engines for c in engine.conflicts.values()]
        if listed == self._conflicts_published:
            return
        self._conflicts_published = listed
        current: dict[Path, list[Diagnostic]] = {}
        for local_root, conflict in listed:
            local = local_root / conflict.path
            if not local.is_dir():
                current.setdefault(local, []).append(
                    Diagnostic(line=1, message=f"sync conflict: {conflict.message}")
                )
        for stale in self._published.get("podlink-sync", set()) - current.keys():
            self.publish("podlink-sync", stale, [])
        for local, diagnostics in current.items():
            self.publish("podlink-sync", local, diagnostics)
