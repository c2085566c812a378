"""The sync engine of one sync entry: each pass reads scan, plan, apply.

The engine keeps what the target holds (``remote_view``: from a scan, then from its own
writes and, in two-way mode, from the agent's change reports), so a saved file costs a local
stat plus one agent round trip, not a scan of the target. It keeps the last state both sides
agreed on (``AgreedState``, persisted through ``AncestorStore``). The engine scans (the whole
tree, or the paths that changed) and hands each scope to its ``PassRunner``, which plans the
pass against the agreed state (``core.pass_plan``: merge, safety, plan) and applies it.
Failures on single paths become problems (data); the rest of the pass goes on. A halted pass
applies nothing until the user resumes or resets.

Passes run one at a time, with one exception, the lane: while a bulk pass (an initial sync,
a branch switch) is sending, a save of a few files it leaves alone runs beside it, through
a second transport of its own, so it is in the target in milliseconds instead of waiting
for megabytes queued ahead of it. Any other pass waits until the lane is idle again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from podlink.agent.client import AgentError, AgentGone, RemoteChanges, ScanResult
from podlink.agent.transport import FileTransport
from podlink.sync.agreed import AgreedState
from podlink.sync.ancestor import AncestorStore
from podlink.sync.core.pass_plan import PassPlan
from podlink.sync.core.plan import folders_above, is_within, restrict
from podlink.sync.core.reconcile import Conflict, Mode
from podlink.sync.core.safety import Halt, RootState
from podlink.sync.core.snapshot import Entry, Kind
from podlink.sync.follow import RemoteResultCallback, TargetFollower, absorb_changes
from podlink.sync.ignore import IgnoreRules, is_ignore_file
from podlink.sync.outcome import BatchResult, ProgressCallback
from podlink.sync.passes import PassRunner
from podlink.sync.scan import (
    SPECIAL_FILE,
    FolderFound,
    IgnoredCount,
    LocalScan,
    scan_paths,
    scan_tree,
)
from podlink.sync.watch import PRIORITY_MAX_PATHS

log = logging.getLogger(__name__)

RemoteScan = tuple["asyncio.Future[None]", "asyncio.Future[ScanResult]"]


def _read_outcome(request: asyncio.Future[Any]) -> None:
    if not request.cancelled():
        request.exception()


INLINE_SCAN_LIMIT = 8
# A pass with at least this many operations is bulk: small changes need not wait for it.
BULK_OPERATIONS = 32

# Starts another transport into the same target: the lane's own, so its requests never
# queue behind the bulk pass's in the first transport's stream.
LaneOpener = Callable[[], Awaitable[FileTransport]]

__all__ = ["RemoteResultCallback", "SyncEngine", "SyncRootRefused"]


class SyncRootRefused(Exception):
    """The target refused a sync entry's remote folder or its owner: a setting of
    podlink.yaml to change. ``field`` is ``remote`` or ``owner``."""

    def __init__(self, remote_root: str, field: str, message: str) -> None:
        super().__init__(message)
        self.remote_root = remote_root
        self.field = field
        self.message = message


class SyncEngine:
    """Keeps ``local_root`` and ``remote_root`` (a path as the target sees it) in sync."""

    def __init__(
        self,
        agent: FileTransport,
        local_root: Path,
        remote_root: str,
        make_rules: Callable[[], IgnoreRules],
        rules: IgnoreRules | None = None,
        *,
        mode: Mode = Mode.UPLOAD,
        store: AncestorStore | None = None,
        max_delete_share: float = 0.5,
        owner: str | None = None,
        delete_unknown: bool = False,
        report: Callable[[str], None] | None = None,
        open_lane: LaneOpener | None = None,
    ) -> None:
        """``rules``: the rules a first local scan was already made with, if any.

        ``delete_unknown``: in upload mode, a first sync may delete what the target held
        that the workspace does not have; otherwise those paths are left alone for good.
        ``report``: told about target-side changes upload mode replaces, before they go.
        ``open_lane``: how to start the lane's transport (without it the lane shares
        ``agent``, so a lane pass still runs beside the bulk one but queues in its stream).
        """
        self._agent = agent
        self.local_root = local_root
        self.remote_root = remote_root
        self.mode = mode
        self.owner = owner
        self._make_rules = make_rules
        self.rules = rules if rules is not None else make_rules()
        self.remote_view: dict[str, Entry] = {}
        self.problems: dict[str, str] = {}
        # What the ignore rules kept out, as of the last walk of the whole local tree.
        self.ignored: IgnoredCount | None = None
        # Keyed by the copy's path: one file can be in conflict again before its copy is gone.
        self.conflicts: dict[str, Conflict] = {}
        self.halt: Halt | None = None
        # Kept to what the rules sync, like everything else here: filtered by the first pass
        # (see _exclusive), and again when the rules change.
        self.agreed = AgreedState(store)
        report = report or (lambda text: log.warning("%s", text))
        self._passes = PassRunner(
            agent,
            local_root,
            remote_root,
            mode=mode,
            agreed=self.agreed,
            remote_view=self.remote_view,
            problems=self.problems,
            conflicts=self.conflicts,
            max_delete_share=max_delete_share,
            delete_unknown=delete_unknown,
            report=report,
        )
        self._lock = asyncio.Lock()
        self._failed_since_rescan = False
        self._follower = TargetFollower(report)
        # The lane: the bulk pass being applied (with the folders above what it examined),
        # the lock lane passes take, and the lane's own transport once started.
        self._bulk: PassPlan | None = None
        self._bulk_folders: frozenset[str] = frozenset()
        self._lane_lock = asyncio.Lock()
        self._open_lane = open_lane
        self._lane: asyncio.Task[FileTransport] | None = None
        self._closing_lanes: set[asyncio.Future[None]] = set()
        # Told when a bulk pass starts applying: changes held back may take the lane now.
        self.on_bulk_applying: Callable[[], None] | None = None
        # The target's root made and scanned ahead of the initial sync, which takes them.
        self._remote_scan: RemoteScan | None = None

    @property
    def agent(self) -> FileTransport:
        return self._agent

    @agent.setter
    def agent(self, transport: FileTransport) -> None:
        """A new transport, after the old one was lost (its agent stopped)."""
        self._agent = transport
        self._passes.agent = transport
        self._drop_lane()
        self._drop_remote_scan()

    def is_ignored(self, path: str) -> bool:
        return self.rules.is_ignored(path)

    @property
    def needs_rescan(self) -> bool:
        """Whether only a look at the whole tree can tell that everything went through:
        a path failed (it is retried then) or the sync is paused."""
        return bool(self.problems) or self.halt is not None or self._failed_since_rescan

    def _kept(
        self, entries: dict[str, Entry], walked: Mapping[str, Entry] | None = None
    ) -> dict[str, Entry]:
        """What of ``entries`` the rules sync. ``walked``: a walk of the local tree made with
        the same rules; a path it holds (a folder there if a folder here) is synced without
        asking the rules again, which is most paths of a tree that did not change."""
        walked_get = (walked or {}).get
        is_ignored = self.rules.is_ignored
        folder = Kind.DIRECTORY
        # One comprehension: this runs over every entry of both sides at each fresh start.
        return {
            path: entry
            for path, entry in entries.items()
            if (
                (seen := walked_get(path)) is not None
                and (seen.kind is folder) is (entry.kind is folder)
            )
            or not is_ignored(path, is_dir=entry.kind is folder)
        }

    def _noted(self, result: BatchResult) -> BatchResult:
        """Take in what a pass means for the engine: a halt, or paths to retry."""
        if result.halted is not None:
            self.halt = result.halted
        if result.failed:
            self._failed_since_rescan = True
        return result

    def _set_view(self, entries: dict[str, Entry]) -> None:
        # Changed in place: the uploader keeps the same view up to date.
        self.remote_view.clear()
        self.remote_view.update(entries)

    # -- passes ------------------------------------------------------------------------

    async def initial_sync(
        self,
        progress: ProgressCallback | None = None,
        local_scan: Awaitable[LocalScan] | None = None,
        *,
        allow_deletions: bool = False,
    ) -> BatchResult:
        """Scan both sides and reconcile them against the agreed state.

        ``local_scan``: a scan of the local tree already under way (made with ``rules``),
        so it could overlap with reaching the target.
        """
        async with self._exclusive(filter_agreed=False):
            started = time.monotonic()
            ensuring, scanning = self._remote_scan or self._ask_for_root_and_scan()
            self._remote_scan = None
            try:
                await ensuring
            except BaseException:
                scanning.cancel()
                await asyncio.gather(scanning, return_exceptions=True)
                raise
            local = await (local_scan or asyncio.to_thread(scan_tree, self.local_root, self.rules))
            # While the target's scan is still on its way (the filter needs the walk's rules).
            self.agreed.refilter(functools.partial(self._kept, walked=local.entries))
            remote = await scanning
            self.ignored = local.ignored
            self._forget_special_files(local)
            for path, message in remote.problems:
                self.problems[path] = f"in the target: {message}"
            self._set_view(self._kept(remote.entries, local.entries))
            self.agreed.forget_left(self.agreed.left - self.remote_view.keys())
            result = await self._pass(
                local,
                dict(self.remote_view),
                self.agreed.entries,
                local_root=self._local_root_state(),
                remote_root=RootState.MISSING if remote.missing else RootState.PRESENT,
                progress=progress,
                allow_deletions=allow_deletions,
                as_seen=False,
            )
            result.seconds = time.monotonic() - started
            return result

    def begin_remote_scan(self) -> None:
        """Make the target's root and scan it now, for the initial sync to take: the target
        scans while the daemon is still getting its own side ready. After ``watch_target``
        (two-way): a change in the target made after the scan must be followed."""
        if self._remote_scan is None:
            self._remote_scan = self._ask_for_root_and_scan()

    def _ask_for_root_and_scan(self) -> RemoteScan:
        # The agent answers requests in order, so the scan can be sent right behind the
        # request that makes the root: one round trip to a far target instead of two.
        return (
            asyncio.ensure_future(self._ensure_root()),
            asyncio.ensure_future(self.agent.scan(self.remote_root)),
        )

    def _drop_remote_scan(self) -> None:
        """Cancel a scan begun and not taken (its answer, or its failure, would go unread)."""
        begun, self._remote_scan = self._remote_scan, None
        for request in begun or ():
            request.cancel()
            # A request already answered keeps its answer or error: read it here.
            request.add_done_callback(_read_outcome)

    async def sync_paths(self, paths: Iterable[str]) -> BatchResult:
        """Reconcile the given workspace paths (and what lies below them)."""
        changed = set(paths)
        if any(is_ignore_file(path) for path in changed) or "" in changed:
            return await self.rescan(reload_rules=True)
        if self._apart_from_bulk(changed):
            passed = await self._lane_pass(changed)
            if passed is not None:
                return passed
        async with self._exclusive():
            if self.halt is not None:
                return BatchResult(halted=self.halt)
            relevant = {path for path in changed if not self.rules.is_ignored(path)}
            local = await self._scan_changed(changed)
            self._forget_special_files(local, changed)
            return await self._pass_over(relevant, local)

    async def _pass_over(self, relevant: set[str], local: LocalScan) -> BatchResult:
        """A pass over some paths: the local scan of them against the view and the ancestor."""
        started = time.monotonic()
        result = await self._pass(
            local, restrict(self.remote_view, relevant), restrict(self.agreed.entries, relevant)
        )
        result.seconds = time.monotonic() - started
        return result

    async def _pass(
        self,
        local: LocalScan,
        remote: dict[str, Entry],
        ancestor: dict[str, Entry],
        **options: Any,
    ) -> BatchResult:
        """A pass under the engine's lock; small changes may pass it while it applies."""
        try:
            return self._noted(
                await self._passes.run(local, remote, ancestor, on_planned=self._planned, **options)
            )
        finally:
            self._bulk, self._bulk_folders = None, frozenset()

    # -- the lane ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _exclusive(self, *, filter_agreed: bool = True) -> AsyncIterator[None]:
        """The engine's lock, once no lane pass is running any more, with the agreed state
        kept to what the rules sync (``filter_agreed=False``: the holder filters it)."""
        async with self._lock:
            # A lane pass only starts while a bulk pass applies, which needs this lock: once
            # the running one is done, none follows until this holder plans a bulk pass.
            async with self._lane_lock:
                pass
            if filter_agreed and not self.agreed.filtered:
                self.agreed.refilter(self._kept)
            yield

    def _planned(self, plan: PassPlan) -> None:
        if len(plan.upload.operations) + len(plan.download.operations) < BULK_OPERATIONS:
            return
        self._bulk, self._bulk_folders = plan, folders_above(plan.examined)
        if self._lane is None and self._open_lane is not None:
            self._lane = asyncio.ensure_future(self._open_lane())
        if self.on_bulk_applying is not None:
            self.on_bulk_applying()

    def may_pass_bulk(self, changed: set[str]) -> bool:
        """Whether a pass over ``changed`` may run beside the bulk pass now (the watcher's
        question): apart from it, and no deletion among them. Deletions never pass: the
        safety halt judges a burst of them whole, and the bulk pass's own deletions are
        counted only once it is done."""
        return self._apart_from_bulk(changed) and all(
            os.path.lexists(self.local_root / path) for path in changed
        )

    def _apart_from_bulk(self, changed: set[str]) -> bool:
        """Whether a pass over ``changed`` cannot touch what the bulk pass is applying: no
        path it examined, none below a path of ``changed``, and every folder above
        ``changed`` already in the target and left alone by the bulk pass."""
        bulk = self._bulk
        if bulk is None or self.halt is not None or len(changed) > PRIORITY_MAX_PATHS:
            return False
        for path in changed:
            if path in bulk.examined or path in self._bulk_folders:
                return False
            for folder in folders_above((path,)):
                known = self.remote_view.get(folder)
                if known is None or known.kind is not Kind.DIRECTORY or folder in bulk.examined:
                    return False
        return True

    async def _lane_pass(self, changed: set[str]) -> BatchResult | None:
        """A pass over ``changed`` beside the bulk pass; None when it must wait its turn."""
        async with self._lane_lock:
            if not self._apart_from_bulk(changed):
                return None  # the bulk pass ended while this one waited for the lane
            try:
                local = scan_paths(self.local_root, changed, self.rules, walk_folders=False)
            except FolderFound:
                return None  # a folder's subtree could reach into the bulk pass's paths
            relevant = {path for path in changed if not self.rules.is_ignored(path)}
            if not relevant <= local.entries.keys():
                return None  # a deletion: it waits for the bulk pass (see may_pass_bulk)
            self._forget_special_files(local, changed)
            started = time.monotonic()
            transport = await self._lane_transport()
            try:
                result = await self._passes.run(
                    local,
                    restrict(self.remote_view, relevant),
                    restrict(self.agreed.entries, relevant),
                    via=transport,
                )
            except AgentGone as error:
                if transport is self.agent:
                    raise
                log.info("the sync lane's transport stopped (%s): back to the main one", error)
                self._drop_lane()
                return None
            result = self._noted(result)
            result.seconds = time.monotonic() - started
            return result

    async def _lane_transport(self) -> FileTransport:
        if self._lane is None:
            return self.agent
        try:
            return await asyncio.shield(self._lane)
        except Exception as error:  # whatever stopped it, the main transport works
            log.warning("no second transport for the sync lane (%s): sharing the main one", error)
            self._open_lane = None  # not tried again: the main transport works
            self._lane = None
            return self.agent

    def _drop_lane(self) -> None:
        """Close the lane's transport once it has started (if it does): nobody uses it now."""
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.add_done_callback(self._close_started_lane)

    def _close_started_lane(self, started: asyncio.Task[FileTransport]) -> None:
        if started.cancelled() or started.exception() is not None:
            return
        closing = asyncio.ensure_future(started.result().close())
        self._closing_lanes.add(closing)
        closing.add_done_callback(self._closing_lanes.discard)

    async def _scan_changed(self, changed: set[str]) -> LocalScan:
        if len(changed) <= INLINE_SCAN_LIMIT:
            # A few lstat calls cost less than the hop to a worker thread, and a saved file's
            # latency is made of such hops; a folder among them is walked in a thread.
            with contextlib.suppress(FolderFound):
                return scan_paths(self.local_root, changed, self.rules, walk_folders=False)
        return await asyncio.to_thread(scan_paths, self.local_root, changed, self.rules)

    def _forget_special_files(self, local: LocalScan, scope: Iterable[str] | None = None) -> None:
        """A pipe or socket listed before that this scan (of ``scope``, or of everything) no
        longer finds is gone or ignored now: nothing else would take its problem away."""
        found = {path for path, _ in local.problems}
        for path, message in list(self.problems.items()):
            if not message.startswith(SPECIAL_FILE) or path in found:
                continue
            if scope is None or any(is_within(path, folder) for folder in scope):
                del self.problems[path]

    async def rescan(self, *, reload_rules: bool = False) -> BatchResult:
        """Compare the whole local tree with the target view; the barrier behind a flush."""
        async with self._exclusive():
            started = time.monotonic()
            if reload_rules:
                self.rules = self._make_rules()
                self._set_view(self._kept(self.remote_view))
                self.agreed.refilter(self._kept)
            if self.halt is not None:
                return BatchResult(halted=self.halt)
            local = await asyncio.to_thread(scan_tree, self.local_root, self.rules)
            self.ignored = local.ignored
            self._forget_special_files(local)
            self._failed_since_rescan = False
            result = await self._pass(
                local,
                dict(self.remote_view),
                self.agreed.entries,
                local_root=self._local_root_state(),
            )
            result.seconds = time.monotonic() - started
            return result

    async def resume(self) -> BatchResult:
        """After a halt: look at both sides again and apply what was held back."""
        self.halt = None
        result = await self.initial_sync(allow_deletions=True)
        # The user approved what the halt held back: it must not count against the next pass.
        self._passes.deletions.clear()
        return result

    async def reset(self) -> BatchResult:
        """Forget the agreed state and sync as for the first time: the workspace wins.

        What the very first sync left in the target stays left: a reset deletes only what
        the target gained since.
        """
        self.halt = None
        self.conflicts.clear()
        await self.agreed.forget()
        return await self.initial_sync()

    async def _ensure_root(self) -> None:
        try:
            await self.agent.ensure_root(self.remote_root, owner=self.owner)
        except AgentGone:
            raise
        except AgentError as error:
            about_owner = self.owner is not None and error.code in (
                "badRequest",
                "permissionDenied",
            )
            field = "owner" if about_owner else "remote"
            raise SyncRootRefused(self.remote_root, field, error.message) from error

    def _local_root_state(self) -> RootState:
        if self.local_root.is_dir():
            return RootState.PRESENT
        if self.local_root.exists():
            return RootState.NOT_A_FOLDER
        return RootState.MISSING

    # -- the target's changes (two-way) ------------------------------------------------------

    async def watch_target(self, on_result: RemoteResultCallback) -> str | None:
        """Follow changes made in the target; a warning to show when it falls back to polling.

        Called before the first scan: what changes while it runs is queued and reconciled
        once it is done (the engine's lock orders the two).
        """
        await self._follower.stop()
        await self._ensure_root()
        return await self._follower.start(
            self._passes.two_way(), self.remote_root, self._remote_pass, on_result
        )

    async def _remote_pass(self, batch: list[RemoteChanges]) -> BatchResult:
        if any(changes.overflow for changes in batch):
            log.info("the target's change queue overflowed: rescanning it")
            return await self.initial_sync()
        async with self._exclusive():
            # Most reports are the echo of this engine's own writes: the view already holds
            # them, and a pass for each would only slow down the next upload.
            changed = absorb_changes(self.remote_view, batch, self.rules)
            relevant = {path for path in changed if not self.rules.is_ignored(path)}
            if self.halt is not None or not relevant:
                return BatchResult(halted=self.halt)
            return await self._pass_over(relevant, await self._scan_changed(relevant))

    async def close(self) -> None:
        """Stop following the target, close the lane and write the agreed state now."""
        self._drop_remote_scan()
        await self._follower.stop()
        lane, self._lane = self._lane, None
        if lane is not None:
            with contextlib.suppress(Exception):
                await (await lane).close()
        await asyncio.gather(*self._closing_lanes, return_exceptions=True)
        await self.agreed.close()
