"""Following the target's own changes (two-way mode): reports queued, batched, absorbed.

``TargetFollower`` keeps the watch's reports in a queue and hands them, a batch at a time, to
the engine's pass; ``absorb_changes`` folds a batch into the engine's view of the target and
says which paths changed for real (most reports echo the engine's own writes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import msgspec

from podlink.agent.client import RemoteChanges
from podlink.agent.transport import TwoWayTransport
from podlink.sync.core.plan import restrict
from podlink.sync.core.snapshot import Entry, Kind
from podlink.sync.ignore import IgnoreRules
from podlink.sync.outcome import BatchResult

RemoteResultCallback = Callable[[BatchResult, float], Awaitable[None]]
RemotePass = Callable[[list[RemoteChanges]], Awaitable[BatchResult]]


class TargetFollower:
    def __init__(self, report: Callable[[str], None]) -> None:
        self._report = report
        self._queue: list[RemoteChanges] = []
        self._wake = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None

    async def start(
        self,
        reader: TwoWayTransport,
        root: str,
        run_pass: RemotePass,
        on_result: RemoteResultCallback,
    ) -> str | None:
        """Watch ``root``; each batch goes to ``run_pass``, its result to ``on_result`` with
        the milliseconds since the batch's first report. A warning to show, if any."""
        await self.stop()
        self._queue.clear()
        started = await reader.watch(root, self._enqueue)
        self._consumer = asyncio.create_task(self._consume(run_pass, on_result))
        return started.warning

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    def _enqueue(self, changes: RemoteChanges) -> None:
        self._queue.append(changes)
        self._wake.set()

    async def _consume(self, run_pass: RemotePass, on_result: RemoteResultCallback) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            first_seen = asyncio.get_running_loop().time()
            batch, self._queue = self._queue, []
            for changes in batch:
                if changes.warning:
                    self._report(changes.warning)
            result = await run_pass(batch)
            await on_result(result, (asyncio.get_running_loop().time() - first_seen) * 1000)


def absorb_changes(
    view: dict[str, Entry],
    batch: list[RemoteChanges],
    rules: IgnoreRules,
) -> set[str]:
    """Fold ``batch`` into ``view``, leaving out what ``rules`` do not sync; the paths it
    changed."""
    changed: set[str] = set()
    for changes in batch:
        for gone in changes.gone:
            known_below = restrict(view, [gone])
            for path in known_below:
                del view[path]
            if known_below:
                changed.add(gone)
        for path, entry in changes.entries.items():
            if rules.is_ignored(path, is_dir=entry.kind is Kind.DIRECTORY):
                continue
            known = view.get(path)
            if known is not None and _as_known(known, entry):
                view[path] = msgspec.structs.replace(entry, digest=known.digest)
                continue
            view[path] = entry
            changed.add(path)
    return changed


def _as_known(known: Entry, seen: Entry) -> bool:
    """Whether a reported entry says nothing new about a path (a folder's mtime is noise)."""
    if known.kind is not seen.kind or known.mode != seen.mode:
        return False
    if seen.kind is Kind.DIRECTORY:
        return True
    if seen.kind is Kind.SYMLINK:
        return known.link_target == seen.link_target
    return known.size == seen.size and known.mtime_ns == seen.mtime_ns
