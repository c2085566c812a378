"""The sync engine of one sync entry: scans, three-way reconcile, halts, both directions.

The engine keeps what the target holds (``remote_view``: from a scan, then from its own
writes and, in two-way mode, from the agent's change reports), so a saved file costs a local
stat plus one agent round trip, not a scan of the target. It keeps the last state both sides
agreed on (``ancestor``, persisted through ``AncestorStore``) and reconciles every pass
against it (``core.reconcile``). Failures on single paths become problems (data); the rest
of the pass goes on. A halted pass applies nothing until the user resumes or resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from podlink.agent.client import Agent, AgentError, AgentGone, RemoteChanges
from podlink.agent.transport import FileTransport
from podlink.sync.ancestor import AncestorStore
from podlink.sync.core.plan import (
    detect_renames,
    is_within,
    paths_needing_digests,
    plan_mirror,
    restrict,
)
from podlink.sync.core.reconcile import (
    MIN_FILES_FOR_DELETE_SHARE,
    Conflict,
    Halt,
    Mode,
    Reconciliation,
    RootState,
    paths_needing_digests_both_changed,
    reconcile,
    touched_big_files,
)
from podlink.sync.core.snapshot import Entry, Kind
from podlink.sync.core.unknown import describe_left, folders_above, unknown_paths, without_left
from podlink.sync.ignore import IgnoreRules, is_ignore_file
from podlink.sync.local_apply import LocalApplier, conflict_copy_exists
from podlink.sync.outcome import BatchResult
from podlink.sync.remote_apply import ProgressCallback, RemoteApplier
from podlink.sync.scan import (
    SPECIAL_FILE,
    DigestCache,
    FolderFound,
    IgnoredCount,
    LocalScan,
    scan_paths,
    scan_tree,
)

log = logging.getLogger(__name__)

INLINE_SCAN_LIMIT = 8
INLINE_HASH_LIMIT = 1 << 20
# The agreed state is written this long after the last pass that changed it.
SAVE_DELAY_SECONDS = 1.0
# Deletions within this span count together against sync[].maxDeleteShare; files created
# within it and deleted again do not count (churn loses nothing the sides agreed on).
DELETION_WINDOW_SECONDS = 10.0
# Target-side edits named one by one; past this they are counted.
REPORTED_OVERWRITES = 20
# Before the first deletion of a pass reaches the other side, the workspace must have stopped
# losing files for this long: a burst (rm -rf) is judged whole, not batch by batch.
SETTLE_SECONDS = 0.1
SETTLE_MAX_SECONDS = 3.0

RemoteResultCallback = Callable[[BatchResult, float], Awaitable[None]]


class SyncRootRefused(Exception):
    """The target refused a sync entry's remote folder or its owner: a setting of
    podlink.yaml to change. ``field`` is ``remote`` or ``owner``."""

    def __init__(self, remote_root: str, field: str, message: str) -> None:
        super().__init__(message)
        self.remote_root = remote_root
        self.field = field
        self.message = message


class SyncEngine(RemoteApplier, LocalApplier):
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
    ) -> None:
        """``rules``: the rules a first local scan was already made with, if any.

        ``delete_unknown``: in upload mode, a first sync may delete what the target held
        that the workspace does not have; otherwise those paths are left alone for good.
        ``report``: told about target-side changes upload mode replaces, before they go.
        """
        self.agent = agent
        self.local_root = local_root
        self.remote_root = remote_root
        self.mode = mode
        self.owner = owner
        self.max_delete_share = max_delete_share
        self.delete_unknown = delete_unknown
        self._make_rules = make_rules
        self.rules = rules if rules is not None else make_rules()
        self.remote_view: dict[str, Entry] = {}
        self.problems: dict[str, str] = {}
        # What the ignore rules kept out, as of the last walk of the whole local tree.
        self.ignored: IgnoredCount | None = None
        # Keyed by the copy's path: one file can be in conflict again before its copy is gone.
        self.conflicts: dict[str, Conflict] = {}
        self.halt: Halt | None = None
        self._store = store
        stored = store.load() if store is not None else None
        # Kept to what the rules sync, like everything else here (refiltered when they change).
        self.ancestor: dict[str, Entry] = self._kept(stored.entries if stored else {})
        # Whether the sides ever agreed: without that a first sync lets the workspace win.
        self._agreed = stored is not None
        # What the target held before the first sync and podlink never wrote (upload mode):
        # passes see the target without it, so nothing of it is ever deleted.
        self.left: set[str] = set(stored.left) if stored else set()
        self._guarded = folders_above(self.left)
        self._left_decided = stored is not None
        self._report = report or (lambda text: log.warning("%s", text))
        self._digests = DigestCache()
        self._lock = asyncio.Lock()
        self._failed_since_rescan = False
        self._ancestor_file_count: int | None = None
        # Per side (target, workspace): path -> (when first created or deleted within the
        # window, whether it was a file before that).
        self._window: tuple[dict[str, tuple[float, bool]], dict[str, tuple[float, bool]]] = (
            {},
            {},
        )
        self._last_stamp = ""
        self._stamp_count = 0
        self._save_handle: asyncio.TimerHandle | None = None
        self._saving: asyncio.Task[None] | None = None
        self._remote_queue: list[RemoteChanges] = []
        self._remote_wake = asyncio.Event()
        self._remote_consumer: asyncio.Task[None] | None = None

    def is_ignored(self, path: str) -> bool:
        return self.rules.is_ignored(path)

    @property
    def needs_rescan(self) -> bool:
        """Whether only a look at the whole tree can tell that everything went through:
        a path failed (it is retried then) or the sync is paused."""
        return bool(self.problems) or self.halt is not None or self._failed_since_rescan

    def _kept(self, entries: dict[str, Entry]) -> dict[str, Entry]:
        return {
            path: entry
            for path, entry in entries.items()
            if not self.rules.is_ignored(path, is_dir=entry.kind is Kind.DIRECTORY)
        }

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
        async with self._lock:
            started = time.monotonic()
            # The agent answers requests in order, so the scan can be sent right behind the
            # request that makes the root: one round trip to a far target instead of two.
            ensuring = asyncio.ensure_future(self._ensure_root())
            scanning = asyncio.ensure_future(self.agent.scan(self.remote_root))
            try:
                await ensuring
            except BaseException:
                scanning.cancel()
                await asyncio.gather(scanning, return_exceptions=True)
                raise
            local, remote = await asyncio.gather(
                local_scan or asyncio.to_thread(scan_tree, self.local_root, self.rules),
                scanning,
            )
            self.ignored = local.ignored
            self._forget_special_files(local)
            for path, message in remote.problems:
                self.problems[path] = f"in the target: {message}"
            self.remote_view = self._kept(remote.entries)
            self._forget_left(self.left - self.remote_view.keys())
            result = await self._pass(
                local,
                dict(self.remote_view),
                self.ancestor,
                local_root=self._local_root_state(),
                remote_root=RootState.MISSING if remote.missing else RootState.PRESENT,
                progress=progress,
                allow_deletions=allow_deletions,
                as_seen=False,
            )
            result.seconds = time.monotonic() - started
            return result

    async def sync_paths(self, paths: Iterable[str]) -> BatchResult:
        """Reconcile the given workspace paths (and what lies below them)."""
        changed = set(paths)
        if any(is_ignore_file(path) for path in changed) or "" in changed:
            return await self.rescan(reload_rules=True)
        async with self._lock:
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
            local, restrict(self.remote_view, relevant), restrict(self.ancestor, relevant)
        )
        result.seconds = time.monotonic() - started
        return result

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
        async with self._lock:
            started = time.monotonic()
            if reload_rules:
                self.rules = self._make_rules()
                self.remote_view = self._kept(self.remote_view)
                self.ancestor = self._kept(self.ancestor)
                self._ancestor_file_count = None
            if self.halt is not None:
                return BatchResult(halted=self.halt)
            local = await asyncio.to_thread(scan_tree, self.local_root, self.rules)
            self.ignored = local.ignored
            self._forget_special_files(local)
            self._failed_since_rescan = False
            result = await self._pass(
                local,
                dict(self.remote_view),
                self.ancestor,
                local_root=self._local_root_state(),
            )
            result.seconds = time.monotonic() - started
            return result

    async def resume(self) -> BatchResult:
        """After a halt: look at both sides again and apply what was held back."""
        self.halt = None
        result = await self.initial_sync(allow_deletions=True)
        # The user approved what the halt held back: it must not count against the next pass.
        for side in self._window:
            side.clear()
        return result

    async def reset(self) -> BatchResult:
        """Forget the agreed state and sync as for the first time: the workspace wins.

        What the very first sync left in the target stays left: a reset deletes only what
        the target gained since.
        """
        self.halt = None
        self.ancestor = {}
        self._ancestor_file_count = None
        self._agreed = False
        self.conflicts.clear()
        if self._store is not None:
            await asyncio.to_thread(self._store.discard)
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

    async def _pass(
        self,
        local: LocalScan,
        remote: dict[str, Entry],
        ancestor: dict[str, Entry],
        *,
        local_root: RootState = RootState.NOT_SCANNED,
        remote_root: RootState = RootState.NOT_SCANNED,
        progress: ProgressCallback | None = None,
        allow_deletions: bool = False,
        as_seen: bool = True,
    ) -> BatchResult:
        """Reconcile one scope (the same on all three snapshots) and apply the outcome.

        ``as_seen``: the pass follows changes as they were made (not a start, a resume or a
        reset, which also carry over what changed long ago): files it creates are fresh.
        """
        result = BatchResult()
        for path, message in local.problems:
            self.problems[path] = message
        self._forget_resolved_conflicts()
        if self.mode is Mode.UPLOAD:
            if not self._left_decided:
                self._leave_unknown(local.entries, remote)
            remote = without_left(remote, local.entries.keys(), self.left, self._guarded)
        needed = set(paths_needing_digests(local.entries, remote))
        needed.update(
            paths_needing_digests_both_changed(ancestor, local.entries, remote, mode=self.mode)
        )
        needed.update(touched_big_files(ancestor, local.entries))
        needed.update(touched_big_files(ancestor, remote))
        source = await self._with_digests(sorted(needed), local.entries, remote)
        recent, fresh = self._recent_deletions()
        stamp = self._conflict_stamp()

        def merge(recently_deleted: tuple[int, int]) -> Reconciliation:
            return reconcile(
                ancestor,
                source,
                remote,
                mode=self.mode,
                conflict_stamp=stamp,
                first_sync=not self._agreed,
                local_root=local_root,
                remote_root=remote_root,
                ancestor_files=self._ancestor_files(),
                max_delete_share=self.max_delete_share,
                recently_deleted=recently_deleted,
                fresh=fresh,
                allow_deletions=allow_deletions,
            )

        outcome = merge(recent)
        if outcome.halt is None and not allow_deletions:
            # A burst of deletions arrives batch by batch: judge it whole before any of it goes.
            here = [
                path
                for path in remote.keys() - outcome.merged.keys() - fresh
                if remote[path].kind is not Kind.DIRECTORY
            ]
            halt_possible = self._ancestor_files() >= MIN_FILES_FOR_DELETE_SHARE
            unseen = await self._settled_loss(here) if here and halt_possible else 0
            if unseen:
                outcome = merge((recent[0] + unseen, recent[1]))
        if outcome.halt is not None:
            self.halt = result.halted = outcome.halt
            return result
        self._report_overwritten(outcome.overwritten, remote)
        result.overwritten = list(outcome.overwritten)
        for copy in outcome.copies:
            try:
                await self._copy_conflict(copy)
            except (OSError, AgentError) as error:
                # Without the copy the target's version would be lost: apply nothing.
                message = getattr(error, "message", None) or str(error)
                self.problems[copy.remote_path] = f"cannot save the target's version: {message}"
                return result
        for conflict in outcome.conflicts:
            self.conflicts[conflict.copy_path or conflict.path] = conflict
            self._report(f"conflict on {conflict.path}: {conflict.message}")
        result.conflicts = list(outcome.conflicts)
        merged = outcome.merged
        written: dict[str, Entry] = {}
        # Paths unchanged everywhere need nothing: plan and record only the others.
        examined = outcome.examined
        merged_part = {path: merged[path] for path in examined if path in merged}
        remote_part = {path: remote[path] for path in examined if path in remote}
        source_part = {path: source[path] for path in examined if path in source}
        upload = plan_mirror(merged_part, remote_part)
        if isinstance(self.agent, Agent):
            upload = detect_renames(upload, merged, remote, ancestor)
        if self.mode is Mode.TWO_WAY:
            download = plan_mirror(merged_part, source_part)
            await asyncio.gather(
                self._apply_upload(upload, merged, progress, result, guard=remote),
                self._apply_download(download, merged, source, result, written),
            )
        else:
            await self._apply_upload(upload, merged, progress, result)
        self._agree(examined, merged, written, result)
        self._forget_left(path for path in examined if path in merged)
        if result.failed:
            self._failed_since_rescan = True
        self._note_window(examined, remote, source, merged, creations=as_seen)
        if not self._agreed:
            self._agreed = True
            await self._save()  # at once: a crash now must not make the next start a first sync
        return result

    def _report_overwritten(self, paths: Sequence[str], remote: Mapping[str, Entry]) -> None:
        """Name the target-side edits upload mode replaces. Paths merely missing there (a new
        pod, a fresh container, files removed by hand) are not edits: a new target would
        otherwise log every file of the project; they are counted in ``restored``."""
        edited = [path for path in paths if path in remote]
        for path in edited[:REPORTED_OVERWRITES]:
            self._report(
                f"{path} was changed in the target; upload mode replaces it with the "
                "workspace's version (use mode: two-way to keep target-side edits)"
            )
        if len(edited) > REPORTED_OVERWRITES:
            self._report(
                f"{len(edited) - REPORTED_OVERWRITES:,} more path(s) changed in the target "
                "are replaced with the workspace's version"
            )

    def _leave_unknown(self, local: Mapping[str, Entry], remote: Mapping[str, Entry]) -> None:
        """The first sync: decide what the target holds that podlink is not to delete."""
        self._left_decided = True
        if self.delete_unknown:
            return
        unknown = unknown_paths(local, remote)
        if not unknown:
            return
        self.left.update(unknown)
        self._guarded = folders_above(self.left)
        files = sum(1 for path in unknown if remote[path].kind is not Kind.DIRECTORY)
        self._report(
            f"{self.remote_root} held {files} file(s) before the first sync that the workspace "
            "does not have; "
            "podlink leaves them in place and never deletes them (set "
            "sync[].deleteUnknown: true to let a first sync delete them): "
            f"{describe_left(unknown, remote)}"
        )

    def _forget_left(self, paths: Iterable[str]) -> None:
        """These paths are no longer left: the workspace wrote them, or they are gone."""
        gone = self.left.intersection(paths)
        if gone:
            self.left -= gone
            self._guarded = folders_above(self.left)
            self._schedule_save()

    def _ancestor_files(self) -> int:
        if self._ancestor_file_count is None:
            self._ancestor_file_count = sum(
                1 for entry in self.ancestor.values() if entry.kind is not Kind.DIRECTORY
            )
        return self._ancestor_file_count

    def _recent_deletions(self) -> tuple[tuple[int, int], frozenset[str]]:
        """Files that existed before the window and were deleted within it, in the target and
        in the workspace; and the files created within it (deleting those is not loss)."""
        horizon = time.monotonic() - DELETION_WINDOW_SECONDS
        counts = []
        fresh: set[str] = set()
        for side in self._window:
            for path in [path for path, (when, _) in side.items() if when < horizon]:
                del side[path]
            counts.append(
                sum(1 for path, (_, was) in side.items() if was and path not in self.ancestor)
            )
            fresh.update(path for path, (_, was) in side.items() if not was)
        return (counts[0], counts[1]), frozenset(fresh)

    def _note_window(
        self,
        examined: Iterable[str],
        remote: Mapping[str, Entry],
        source: Mapping[str, Entry],
        merged: Mapping[str, Entry],
        *,
        creations: bool,
    ) -> None:
        """Remember the files each side gained or lost in this pass, the first time only."""
        now = time.monotonic()
        for side, before in zip(self._window, (remote, source), strict=True):
            for path in examined:
                was, now_file = _is_file(before.get(path)), _is_file(merged.get(path))
                if was != now_file and path not in side and (was or creations):
                    side[path] = (now, was)

    async def _settled_loss(self, deleting: list[str]) -> int:
        """How many more agreed files the workspace has lost than this pass deletes, once it
        stops losing them: the rest of a burst the watcher has not reported yet."""
        scopes = {path.split("/", 1)[0] for path in deleting}
        candidates = [
            path
            for path, entry in self.ancestor.items()
            if entry.kind is not Kind.DIRECTORY and path.split("/", 1)[0] in scopes
        ]
        root = self.local_root

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

    def _conflict_stamp(self) -> str:
        """The time, unique per pass: two conflicts on one file never share a copy's name."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        if stamp.startswith(self._last_stamp[:15]) and self._last_stamp:
            self._stamp_count += 1
            stamp = f"{stamp}-{self._stamp_count}"
        else:
            self._stamp_count = 0
        self._last_stamp = stamp
        return stamp

    def _agree(
        self,
        scope: Iterable[str],
        merged: dict[str, Entry],
        written: dict[str, Entry],
        result: BatchResult,
    ) -> None:
        """Record the pass's outcome as agreed, except where an operation failed."""
        failed = sorted(result.failed)
        changed = False
        for path in scope:
            if failed and any(is_within(path, blocked) for blocked in failed):
                continue
            agreed = written.get(path) or merged.get(path)
            before = self.ancestor.get(path)
            if agreed is None:
                if before is not None:
                    del self.ancestor[path]
                    changed = True
            elif before != agreed:
                self.ancestor[path] = agreed
                changed = True
        if changed:
            self._ancestor_file_count = None
            self._schedule_save()

    def _forget_resolved_conflicts(self) -> None:
        for key, conflict in list(self.conflicts.items()):
            if conflict.copy_path is None or not conflict_copy_exists(
                self.local_root, conflict.copy_path
            ):
                del self.conflicts[key]

    # -- the target's changes (two-way) ------------------------------------------------------

    async def watch_target(self, on_result: RemoteResultCallback) -> str | None:
        """Follow changes made in the target; a warning to show when it falls back to polling.

        Called before the first scan: what changes while it runs is queued and reconciled
        once it is done (the engine's lock orders the two).
        """
        await self._stop_following()
        await self._ensure_root()
        self._remote_queue.clear()
        started = await self._reader().watch(self.remote_root, self._queue_remote)
        self._remote_consumer = asyncio.create_task(self._consume_remote(on_result))
        return started.warning

    async def _stop_following(self) -> None:
        consumer, self._remote_consumer = self._remote_consumer, None
        if consumer is not None:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    def _queue_remote(self, changes: RemoteChanges) -> None:
        self._remote_queue.append(changes)
        self._remote_wake.set()

    async def _consume_remote(self, on_result: RemoteResultCallback) -> None:
        while True:
            await self._remote_wake.wait()
            self._remote_wake.clear()
            first_seen = asyncio.get_running_loop().time()
            batch, self._remote_queue = self._remote_queue, []
            for changes in batch:
                if changes.warning:
                    self._report(changes.warning)
            result = await self._remote_pass(batch)
            await on_result(result, (asyncio.get_running_loop().time() - first_seen) * 1000)

    async def _remote_pass(self, batch: list[RemoteChanges]) -> BatchResult:
        if any(changes.overflow for changes in batch):
            log.info("the target's change queue overflowed: rescanning it")
            return await self.initial_sync()
        async with self._lock:
            changed: set[str] = set()
            # Most reports are the echo of this engine's own writes: the view already holds
            # them, and a pass for each would only slow down the next upload.
            for changes in batch:
                for gone in changes.gone:
                    known_below = restrict(self.remote_view, [gone])
                    for path in known_below:
                        del self.remote_view[path]
                    if known_below:
                        changed.add(gone)
                for path, entry in changes.entries.items():
                    if self.rules.is_ignored(path, is_dir=entry.kind is Kind.DIRECTORY):
                        continue
                    known = self.remote_view.get(path)
                    if known is not None and _as_known(known, entry):
                        self.remote_view[path] = msgspec.structs.replace(entry, digest=known.digest)
                        continue
                    self.remote_view[path] = entry
                    changed.add(path)
            relevant = {path for path in changed if not self.rules.is_ignored(path)}
            if self.halt is not None or not relevant:
                return BatchResult(halted=self.halt)
            return await self._pass_over(relevant, await self._scan_changed(relevant))

    # -- the agreed state on disk -------------------------------------------------------------

    def _schedule_save(self) -> None:
        if self._store is None or self._save_handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._save_handle = loop.call_later(SAVE_DELAY_SECONDS, self._start_save)

    def _start_save(self) -> None:
        self._save_handle = None
        if self._saving is not None and not self._saving.done():
            self._schedule_save()
            return
        self._saving = asyncio.get_running_loop().create_task(self._save())

    async def _save(self) -> None:
        if self._store is None:
            return
        snapshot, left = dict(self.ancestor), sorted(self.left)
        try:
            await asyncio.to_thread(self._store.save, snapshot, left)
        except OSError as error:
            log.warning("cannot save the sync state %s: %s", self._store.path, error)

    async def close(self) -> None:
        """Stop following the target and write the agreed state now."""
        await self._stop_following()
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self._saving is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._saving
        await self._save()

    async def _with_digests(
        self, needed: list[str], source: dict[str, Entry], remote: dict[str, Entry]
    ) -> dict[str, Entry]:
        """``source`` with digests for ``needed``; ``remote`` and the view get theirs."""
        if not needed:
            return source
        filled = dict(source)

        def hash_local() -> None:
            for path in needed:
                if (wanted := source.get(path)) is None or wanted.digest is not None:
                    continue
                entry = self._digests.with_digest(self.local_root, path, wanted)
                if entry is None:
                    filled.pop(path, None)
                else:
                    filled[path] = entry

        unknown_remote = [
            path
            for path in needed
            if (there := remote.get(path)) is not None and there.digest is None
        ]
        remote_digests: dict[str, str | None] = {}
        if unknown_remote:
            _, remote_digests = await asyncio.gather(
                asyncio.to_thread(hash_local),
                self.agent.hash(self.remote_root, unknown_remote),
            )
        elif sum(source[path].size for path in needed if path in source) <= INLINE_HASH_LIMIT:
            hash_local()  # a saved file's own digest: cheaper here than a thread hop
        else:
            await asyncio.to_thread(hash_local)
        for path, digest in remote_digests.items():
            if digest is None:
                remote.pop(path, None)
                self.remote_view.pop(path, None)
            else:
                updated = msgspec.structs.replace(remote[path], digest=digest)
                remote[path] = updated
                self.remote_view[path] = updated
        return filled


def _as_known(known: Entry, seen: Entry) -> bool:
    """Whether a reported entry says nothing new about a path (a folder's mtime is noise)."""
    if known.kind is not seen.kind or known.mode != seen.mode:
        return False
    if seen.kind is Kind.DIRECTORY:
        return True
    if seen.kind is Kind.SYMLINK:
        return known.link_target == seen.link_target
    return known.size == seen.size and known.mtime_ns == seen.mtime_ns


def _same_version(first: Entry, second: Entry) -> bool:
    return (
        first.kind is second.kind
        and first.size == second.size
        and first.mtime_ns == second.mtime_ns
        and first.inode == second.inode
    )


def _is_file(entry: Entry | None) -> bool:
    return entry is not None and entry.kind is not Kind.DIRECTORY
