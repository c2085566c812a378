"""The agreed state one engine keeps: what both sides last agreed on, and what it leaves alone.

``AgreedState`` holds the ancestor entries, the paths the target held before the first sync
that podlink never deletes (``left``, upload mode), and whether the sides ever agreed; it
writes them to its ``AncestorStore`` a moment after they change, and at once when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

from podlink.sync.ancestor import AncestorStore
from podlink.sync.core.plan import folders_above, is_within
from podlink.sync.core.snapshot import Entry, Kind

log = logging.getLogger(__name__)

# The agreed state is written this long after the last pass that changed it.
SAVE_DELAY_SECONDS = 1.0

KeptFilter = Callable[[dict[str, Entry]], dict[str, Entry]]


class AgreedState:
    def __init__(self, store: AncestorStore | None) -> None:
        """The entries are as stored until the first ``refilter``: the store may predate
        the ignore rules, and the engine filters them once a walk of the local tree has
        answered most of the rules' questions."""
        self._store = store
        stored = store.load() if store is not None else None
        self.entries: dict[str, Entry] = stored.entries if stored else {}
        self.filtered = False
        # Whether the sides ever agreed: without that a first sync lets the workspace win.
        self.ever_agreed = stored is not None
        # What the target held before the first sync and podlink never wrote (upload mode):
        # passes see the target without it, so nothing of it is ever deleted.
        self.left: set[str] = set(stored.left) if stored else set()
        self.guarded = folders_above(self.left)
        self.left_decided = stored is not None
        self._file_count: int | None = None
        self._save_handle: asyncio.TimerHandle | None = None
        self._saving: asyncio.Task[None] | None = None

    def file_count(self) -> int:
        if self._file_count is None:
            self._file_count = sum(
                1 for entry in self.entries.values() if entry.kind is not Kind.DIRECTORY
            )
        return self._file_count

    def refilter(self, kept: KeptFilter) -> None:
        """Keep only what the ignore rules sync (they are new, or the entries were loaded)."""
        self.entries = kept(self.entries)
        self._file_count = None
        self.filtered = True

    async def forget(self) -> None:
        """Sync as for the first time (a reset): no agreed entries, none stored."""
        self.entries = {}
        self._file_count = None
        self.ever_agreed = False
        if self._store is not None:
            await asyncio.to_thread(self._store.discard)

    async def first_agreement(self) -> None:
        """A first pass went through; saved at once: a crash now must not make the next start
        a first sync."""
        if not self.ever_agreed:
            self.ever_agreed = True
            await self.save()

    def record(
        self,
        scope: Iterable[str],
        merged: Mapping[str, Entry],
        written: Mapping[str, Entry],
        failed: Iterable[str],
    ) -> None:
        """Record a pass's outcome as agreed, except where an operation failed."""
        blocked = sorted(failed)
        changed = False
        for path in scope:
            if blocked and any(is_within(path, folder) for folder in blocked):
                continue
            agreed = written.get(path) or merged.get(path)
            before = self.entries.get(path)
            if agreed is None:
                if before is not None:
                    del self.entries[path]
                    changed = True
            elif before != agreed:
                self.entries[path] = agreed
                changed = True
        if changed:
            self._file_count = None
            self.schedule_save()

    def leave(self, paths: Iterable[str]) -> None:
        """The first sync found these in the target only: never delete them."""
        self.left.update(paths)
        self.guarded = folders_above(self.left)

    def forget_left(self, paths: Iterable[str]) -> None:
        """These paths are no longer left: the workspace wrote them, or they are gone."""
        gone = self.left.intersection(paths)
        if gone:
            self.left -= gone
            self.guarded = folders_above(self.left)
            self.schedule_save()

    def schedule_save(self) -> None:
        if self._store is None or self._save_handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._save_handle = loop.call_later(SAVE_DELAY_SECONDS, self._start_save)

    def _start_save(self) -> None:
        self._save_handle = None
        if self._saving is not None and not self._saving.done():
            self.schedule_save()
            return
        self._saving = asyncio.get_running_loop().create_task(self.save())

    async def save(self) -> None:
        if self._store is None:
            return
        snapshot, left = dict(self.entries), sorted(self.left)
        try:
            await asyncio.to_thread(self._store.save, snapshot, left)
        except OSError as error:
            log.warning("cannot save the sync state %s: %s", self._store.path, error)

    async def close(self) -> None:
        """Write the agreed state now, after any save under way."""
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self._saving is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._saving
        await self.save()
