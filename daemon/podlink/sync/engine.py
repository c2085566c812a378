"""The sync engine of one sync entry: each pass reads scan, plan, apply.

The engine keeps what the target holds (``remote_view``: from a scan, then from its own
writes and, in two-way mode, from the agent's change reports), so a saved file costs a local
stat plus one agent round trip, not a scan of the target. It keeps the last state both sides
agreed on (``AgreedState``, persisted through ``AncestorStore``) and plans every pass against
it (``core.pass_plan``: merge, safety, plan); ``RemoteApplier`` and ``LocalApplier`` carry the
plan out. Failures on single paths become problems (data); the rest of the pass goes on. A
halted pass applies nothing until the user resumes or resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from podlink.agent.client import AgentError, AgentGone, RemoteChanges
from podlink.agent.transport import FileTransport, TwoWayTransport
from podlink.sync.agreed import AgreedState
from podlink.sync.ancestor import AncestorStore
from podlink.sync.core.pass_plan import PassPlan, hashes_needed, plan_pass
from podlink.sync.core.plan import is_within, restrict
from podlink.sync.core.reconcile import Conflict, MergeInput, Mode
from podlink.sync.core.safety import MIN_FILES_FOR_DELETE_SHARE, Halt, RootState, SafetyCheck
from podlink.sync.core.snapshot import Entry, Kind
from podlink.sync.core.unknown import describe_left, unknown_paths, without_left
from podlink.sync.deletions import DeletionWindow, settled_loss
from podlink.sync.digests import fill_digests
from podlink.sync.follow import RemoteResultCallback, TargetFollower, absorb_changes
from podlink.sync.ignore import IgnoreRules, is_ignore_file
from podlink.sync.local_apply import LocalApplier, conflict_copy_exists
from podlink.sync.outcome import BatchResult, ProgressCallback
from podlink.sync.remote_apply import RemoteApplier
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
# Target-side edits named one by one; past this they are counted.
REPORTED_OVERWRITES = 20

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
    ) -> None:
        """``rules``: the rules a first local scan was already made with, if any.

        ``delete_unknown``: in upload mode, a first sync may delete what the target held
        that the workspace does not have; otherwise those paths are left alone for good.
        ``report``: told about target-side changes upload mode replaces, before they go.
        """
        self._agent = agent
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
        # Kept to what the rules sync, like everything else here (refiltered when they change).
        self.agreed = AgreedState(store, self._kept)
        self._report = report or (lambda text: log.warning("%s", text))
        self._digests = DigestCache()
        self._uploader = RemoteApplier(
            agent, local_root, remote_root, self.remote_view, self._digests
        )
        self._lock = asyncio.Lock()
        self._failed_since_rescan = False
        self._deletions = DeletionWindow()
        self._last_stamp = ""
        self._stamp_count = 0
        self._follower = TargetFollower(self._report)

    @property
    def agent(self) -> FileTransport:
        return self._agent

    @agent.setter
    def agent(self, transport: FileTransport) -> None:
        """A new transport, after the old one was lost (its agent stopped)."""
        self._agent = transport
        self._uploader.agent = transport

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

    def _two_way(self) -> TwoWayTransport:
        reader = self.agent.two_way
        if reader is None:
            raise AgentError("unsupported", "two-way sync needs python3 in the target")
        return reader

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
        async with self._lock:
            started = time.monotonic()
            await self._ensure_root()
            local, remote = await asyncio.gather(
                local_scan or asyncio.to_thread(scan_tree, self.local_root, self.rules),
                self.agent.scan(self.remote_root),
            )
            self.ignored = local.ignored
            self._forget_special_files(local)
            for path, message in remote.problems:
                self.problems[path] = f"in the target: {message}"
            self._set_view(self._kept(remote.entries))
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
            local, restrict(self.remote_view, relevant), restrict(self.agreed.entries, relevant)
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
        self._deletions.clear()
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
        """Scan, plan, apply: one scope (the same on all three snapshots).

        ``as_seen``: the pass follows changes as they were made (not a start, a resume or a
        reset, which also carry over what changed long ago): files it creates are fresh.
        """
        result = BatchResult()
        for path, message in local.problems:
            self.problems[path] = message
        self._forget_resolved_conflicts()
        if self.mode is Mode.UPLOAD:
            if not self.agreed.left_decided:
                self._leave_unknown(local.entries, remote)
            remote = without_left(
                remote, local.entries.keys(), self.agreed.left, self.agreed.guarded
            )
        needed = hashes_needed(ancestor, local.entries, remote, self.mode)
        source = await self._with_digests(needed, local.entries, remote)
        sides = MergeInput(
            ancestor,
            source,
            remote,
            mode=self.mode,
            conflict_stamp=self._conflict_stamp(),
            first_sync=not self.agreed.ever_agreed,
        )
        plan = await self._plan(sides, local_root, remote_root, allow_deletions)
        if plan.halt is not None:
            self.halt = result.halted = plan.halt
            return result
        self._report_overwritten(plan.overwritten, remote)
        result.overwritten = list(plan.overwritten)
        if not await self._save_conflict_copies(plan):
            return result  # without a copy the target's version would be lost: apply nothing
        for conflict in plan.conflicts:
            self.conflicts[conflict.copy_path or conflict.path] = conflict
            self._report(f"conflict on {conflict.path}: {conflict.message}")
        result.conflicts = list(plan.conflicts)
        written = await self._apply(plan, source, remote, progress, result)
        examined = plan.examined
        self.agreed.record(examined, plan.merged, written, result.failed)
        self.agreed.forget_left(path for path in examined if path in plan.merged)
        if result.failed:
            self._failed_since_rescan = True
        self._deletions.note(examined, remote, source, plan.merged, creations=as_seen)
        await self.agreed.first_agreement()
        return result

    async def _plan(
        self,
        sides: MergeInput,
        local_root: RootState,
        remote_root: RootState,
        allow_deletions: bool,
    ) -> PassPlan:
        """The pass's plan; a burst of deletions is judged whole before any of it goes."""
        renames = self.agent.two_way is not None
        if allow_deletions:
            return plan_pass(sides, None, renames=renames)
        recent, fresh = self._deletions.recent(self.agreed.entries)
        check = SafetyCheck(
            local_root=local_root,
            remote_root=remote_root,
            ancestor_files=self.agreed.file_count(),
            max_delete_share=self.max_delete_share,
            recently_deleted=recent,
            fresh=fresh,
        )
        plan = plan_pass(sides, check, renames=renames)
        if plan.halt is not None or self.agreed.file_count() < MIN_FILES_FOR_DELETE_SHARE:
            return plan
        leaving = plan.files_leaving(sides.remote, fresh)
        unseen = await settled_loss(self.local_root, self.agreed.entries, leaving) if leaving else 0
        if not unseen:
            return plan
        check = msgspec.structs.replace(check, recently_deleted=(recent[0] + unseen, recent[1]))
        return plan_pass(sides, check, renames=renames)

    async def _save_conflict_copies(self, plan: PassPlan) -> bool:
        """Save the target's versions of the pass's conflicts; whether all of them were."""
        if not plan.copies:
            return True
        for copy in plan.copies:
            try:
                saver = LocalApplier(self._two_way(), self.local_root, self.remote_root)
                await saver.copy_conflict(copy, self.remote_view)
            except (OSError, AgentError) as error:
                message = getattr(error, "message", None) or str(error)
                self.problems[copy.remote_path] = f"cannot save the target's version: {message}"
                return False
        return True

    async def _apply(
        self,
        plan: PassPlan,
        source: dict[str, Entry],
        remote: dict[str, Entry],
        progress: ProgressCallback | None,
        result: BatchResult,
    ) -> dict[str, Entry]:
        """Carry ``plan`` out on both sides; the workspace entries downloads wrote."""
        written: dict[str, Entry] = {}
        if self.mode is Mode.TWO_WAY:
            downloader = LocalApplier(self._two_way(), self.local_root, self.remote_root)
            uploaded, downloaded = await asyncio.gather(
                self._uploader.apply(plan.upload, plan.merged, progress, result, guard=remote),
                downloader.apply(plan.download, plan.merged, source, result, written),
            )
            uploaded.fold_into(self.problems)
            downloaded.fold_into(self.problems)
        else:
            uploaded = await self._uploader.apply(plan.upload, plan.merged, progress, result)
            uploaded.fold_into(self.problems)
        return written

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
        self.agreed.left_decided = True
        if self.delete_unknown:
            return
        unknown = unknown_paths(local, remote)
        if not unknown:
            return
        self.agreed.leave(unknown)
        files = sum(1 for path in unknown if remote[path].kind is not Kind.DIRECTORY)
        self._report(
            f"{self.remote_root} held {files} file(s) before the first sync that the workspace "
            "does not have; "
            "podlink leaves them in place and never deletes them (set "
            "sync[].deleteUnknown: true to let a first sync delete them): "
            f"{describe_left(unknown, remote)}"
        )

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

    def _forget_resolved_conflicts(self) -> None:
        for key, conflict in list(self.conflicts.items()):
            if conflict.copy_path is None or not conflict_copy_exists(
                self.local_root, conflict.copy_path
            ):
                del self.conflicts[key]

    async def _with_digests(
        self, needed: list[str], source: dict[str, Entry], remote: dict[str, Entry]
    ) -> dict[str, Entry]:
        """``source`` with digests for ``needed``; ``remote`` and the view get theirs."""
        filled, remote_digests = await fill_digests(
            needed,
            source,
            remote,
            cache=self._digests,
            local_root=self.local_root,
            transport=self.agent,
            remote_root=self.remote_root,
        )
        for path, digest in remote_digests.items():
            if digest is None:
                remote.pop(path, None)
                self.remote_view.pop(path, None)
            else:
                updated = msgspec.structs.replace(remote[path], digest=digest)
                remote[path] = updated
                self.remote_view[path] = updated
        return filled

    # -- the target's changes (two-way) ------------------------------------------------------

    async def watch_target(self, on_result: RemoteResultCallback) -> str | None:
        """Follow changes made in the target; a warning to show when it falls back to polling.

        Called before the first scan: what changes while it runs is queued and reconciled
        once it is done (the engine's lock orders the two).
        """
        await self._follower.stop()
        await self._ensure_root()
        return await self._follower.start(
            self._two_way(), self.remote_root, self._remote_pass, on_result
        )

    async def _remote_pass(self, batch: list[RemoteChanges]) -> BatchResult:
        if any(changes.overflow for changes in batch):
            log.info("the target's change queue overflowed: rescanning it")
            return await self.initial_sync()
        async with self._lock:
            # Most reports are the echo of this engine's own writes: the view already holds
            # them, and a pass for each would only slow down the next upload.
            changed = absorb_changes(self.remote_view, batch, self.rules)
            relevant = {path for path in changed if not self.rules.is_ignored(path)}
            if self.halt is not None or not relevant:
                return BatchResult(halted=self.halt)
            return await self._pass_over(relevant, await self._scan_changed(relevant))

    async def close(self) -> None:
        """Stop following the target and write the agreed state now."""
        await self._follower.stop()
        await self.agreed.close()
