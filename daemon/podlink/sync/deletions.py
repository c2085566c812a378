"""Deletions judged together: what the last moments' passes deleted, and a burst settling.

A deletion reaches the engine in several passes (a watcher batches what it sees), so the
delete-share halt counts the files each side lost within ``DELETION_WINDOW_SECONDS`` together,
and a pass about to delete waits until the workspace stops losing files (``settled_loss``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from podlink.sync.core.snapshot import Entry, Kind

# Deletions within this span count together against sync[].maxDeleteShare; files created
# within it and deleted again do not count (churn loses nothing the sides agreed on).
DELETION_WINDOW_SECONDS = 10.0
# Before the first deletion of a pass reaches the other side, the workspace must have stopped
# losing files for this long: a burst (rm -rf) is judged whole, not batch by batch.
SETTLE_SECONDS = 0.1
SETTLE_MAX_SECONDS = 3.0


class DeletionWindow:
    def __init__(self) -> None:
        # Per side (target, workspace): path -> (when first created or deleted within the
        # window, whether it was a file before that).
        self._sides: tuple[dict[str, tuple[float, bool]], dict[str, tuple[float, bool]]] = (
            {},
            {},
        )

    def clear(self) -> None:
        for side in self._sides:
            side.clear()

    def recent(self, agreed: Mapping[str, Entry]) -> tuple[tuple[int, int], frozenset[str]]:
        """Files that existed before the window and were deleted within it, in the target and
        in the workspace; and the files created within it (deleting those is not loss)."""
        horizon = time.monotonic() - DELETION_WINDOW_SECONDS
        counts = []
        fresh: set[str] = set()
        for side in self._sides:
            for path in [path for path, (when, _) in side.items() if when < horizon]:
                del side[path]
            counts.append(sum(1 for path, (_, was) in side.items() if was and path not in agreed))
            fresh.update(path for path, (_, was) in side.items() if not was)
        return (counts[0], counts[1]), frozenset(fresh)

    def note(
        self,
        examined: Iterable[str],
        remote: Mapping[str, Entry],
        local: Mapping[str, Entry],
        merged: Mapping[str, Entry],
        *,
        creations: bool,
    ) -> None:
        """Remember the files each side gained or lost in a pass, the first time only."""
        now = time.monotonic()
        for side, before in zip(self._sides, (remote, local), strict=True):
            for path in examined:
                was, now_file = _is_file(before.get(path)), _is_file(merged.get(path))
                if was != now_file and path not in side and (was or creations):
                    side[path] = (now, was)


async def settled_loss(root: Path, agreed: Mapping[str, Entry], deleting: list[str]) -> int:
    """How many more agreed files the workspace at ``root`` has lost than a pass deletes, once
    it stops losing them: the rest of a burst the watcher has not reported yet."""
    scopes = {path.split("/", 1)[0] for path in deleting}
    candidates = [
        path
        for path, entry in agreed.items()
        if entry.kind is not Kind.DIRECTORY and path.split("/", 1)[0] in scopes
    ]

    def missing() -> int:
        return sum(1 for path in candidates if not os.path.lexists(root / path))

    deadline = time.monotonic() + SETTLE_MAX_SECONDS
    lost = await asyncio.to_thread(missing)
    while time.monotonic() < deadline:
        await asyncio.sleep(SETTLE_SECONDS)
        again = await asyncio.to_thread(missing)
        if again <= lost:
            break
        lost = again
    return max(0, lost - len(deleting))


def _is_file(entry: Entry | None) -> bool:
    return entry is not None and entry.kind is not Kind.DIRECTORY
