"""One pass of one sync entry, after its scan: plan it, apply it, record what went through.

``PassRunner`` fills in the digests the merge needs, plans the pass (``core.pass_plan``:
merge, safety, plan), saves conflict copies, has ``RemoteApplier`` and ``LocalApplier`` carry
the plan out, and records the outcome in the ``AgreedState``. The engine decides what each
pass looks at and holds the lock that keeps passes apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import msgspec

from podlink.agent.client import AgentError
from podlink.agent.transport import FileTransport, TwoWayTransport
from podlink.sync.agreed import AgreedState
from podlink.sync.core.pass_plan import PassPlan, hashes_needed, plan_pass
from podlink.sync.core.reconcile import Conflict, MergeInput, Mode
from podlink.sync.core.safety import MIN_FILES_FOR_DELETE_SHARE, RootState, SafetyCheck
from podlink.sync.core.snapshot import Entry, Kind
from podlink.sync.core.unknown import describe_left, unknown_paths, without_left
from podlink.sync.deletions import DeletionWindow, settled_loss
from podlink.sync.digests import fill_digests
from podlink.sync.local_apply import LocalApplier, conflict_copy_exists
from podlink.sync.outcome import BatchResult, ProgressCallback
from podlink.sync.remote_apply import RemoteApplier
from podlink.sync.scan import DigestCache, LocalScan

log = logging.getLogger(__name__)

# Target-side edits named one by one; past this they are counted.
REPORTED_OVERWRITES = 20


class PassRunner:
    """Runs the passes of one engine: one at a time under the engine's lock, except a small
    change's pass the engine lets run beside a bulk one on paths that bulk pass leaves alone.

    ``remote_view``, ``problems`` and ``conflicts`` are the engine's own, kept current here.
    """

    def __init__(
        self,
        agent: FileTransport,
        local_root: Path,
        remote_root: str,
        *,
        mode: Mode,
        agreed: AgreedState,
        remote_view: dict[str, Entry],
        problems: dict[str, str],
        conflicts: dict[str, Conflict],
        max_delete_share: float,
        delete_unknown: bool,
        report: Callable[[str], None],
    ) -> None:
        # Replaced by the engine when the session starts a new agent after losing one.
        self.agent = agent
        self.local_root = local_root
        self.remote_root = remote_root
        self.mode = mode
        self.agreed = agreed
        self.remote_view = remote_view
        self.problems = problems
        self.conflicts = conflicts
        self.max_delete_share = max_delete_share
        self.delete_unknown = delete_unknown
        self._report = report
        self._digests = DigestCache()
        self.deletions = DeletionWindow()
        self._last_stamp = ""
        self._stamp_count = 0

    def two_way(self, agent: FileTransport | None = None) -> TwoWayTransport:
        reader = (agent or self.agent).two_way
        if reader is None:
            raise AgentError("unsupported", "two-way sync needs python3 in the target")
        return reader

    async def run(
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
        via: FileTransport | None = None,
        on_planned: Callable[[PassPlan], None] | None = None,
    ) -> BatchResult:
        """Plan and apply one scanned scope (the same on all three snapshots).

        ``as_seen``: the pass follows changes as they were made (not a start, a resume or a
        reset, which also carry over what changed long ago): files it creates are fresh.
        ``via``: the transport for this pass instead of ``agent`` (the engine's lane for
        small changes). ``on_planned``: told the plan right before it is applied.
        """
        agent = via or self.agent
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
        source = await self._with_digests(agent, needed, local.entries, remote)
        sides = MergeInput(
            ancestor,
            source,
            remote,
            mode=self.mode,
            conflict_stamp=self._conflict_stamp(),
            first_sync=not self.agreed.ever_agreed,
        )
        plan = await self._plan(agent, sides, local_root, remote_root, allow_deletions)
        if plan.halt is not None:
            result.halted = plan.halt
            return result
        self._report_overwritten(plan.overwritten, remote)
        result.overwritten = list(plan.overwritten)
        if not await self._save_conflict_copies(agent, plan):
            return result  # without a copy the target's version would be lost: apply nothing
        for conflict in plan.conflicts:
            self.conflicts[conflict.copy_path or conflict.path] = conflict
            self._report(f"conflict on {conflict.path}: {conflict.message}")
        result.conflicts = list(plan.conflicts)
        if on_planned is not None:
            on_planned(plan)
        written = await self._apply(agent, plan, source, remote, progress, result)
        examined = plan.examined
        self.agreed.record(examined, plan.merged, written, result.failed)
        self.agreed.forget_left(path for path in examined if path in plan.merged)
        self.deletions.note(examined, remote, source, plan.merged, creations=as_seen)
        await self.agreed.first_agreement()
        return result

    async def _plan(
        self,
        agent: FileTransport,
        sides: MergeInput,
        local_root: RootState,
        remote_root: RootState,
        allow_deletions: bool,
    ) -> PassPlan:
        """The pass's plan; a burst of deletions is judged whole before any of it goes."""
        renames = agent.two_way is not None
        if allow_deletions:
            return plan_pass(sides, None, renames=renames)
        recent, fresh = self.deletions.recent(self.agreed.entries)
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

    async def _save_conflict_copies(self, agent: FileTransport, plan: PassPlan) -> bool:
        """Save the target's versions of the pass's conflicts; whether all of them were."""
        if not plan.copies:
            return True
        for copy in plan.copies:
            try:
                saver = LocalApplier(self.two_way(agent), self.local_root, self.remote_root)
                await saver.copy_conflict(copy, self.remote_view)
            except (OSError, AgentError) as error:
                message = getattr(error, "message", None) or str(error)
                self.problems[copy.remote_path] = f"cannot save the target's version: {message}"
                return False
        return True

    async def _apply(
        self,
        agent: FileTransport,
        plan: PassPlan,
        source: dict[str, Entry],
        remote: dict[str, Entry],
        progress: ProgressCallback | None,
        result: BatchResult,
    ) -> dict[str, Entry]:
        """Carry ``plan`` out on both sides; the workspace entries downloads wrote."""
        written: dict[str, Entry] = {}
        # One applier per plan: a small change's pass may run beside a bulk one (the lane).
        uploader = RemoteApplier(self.local_root, self.remote_root, self.remote_view, self._digests)
        upload, merged = uploader.apply, plan.merged
        if self.mode is Mode.TWO_WAY:
            downloader = LocalApplier(self.two_way(agent), self.local_root, self.remote_root)
            uploaded, downloaded = await asyncio.gather(
                upload(agent, plan.upload, merged, progress, result, guard=remote),
                downloader.apply(plan.download, merged, source, result, written),
            )
            uploaded.fold_into(self.problems)
            downloaded.fold_into(self.problems)
        else:
            uploaded = await upload(agent, plan.upload, merged, progress, result)
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
        self,
        agent: FileTransport,
        needed: list[str],
        source: dict[str, Entry],
        remote: dict[str, Entry],
    ) -> dict[str, Entry]:
        """``source`` with digests for ``needed``; ``remote`` and the view get theirs."""
        filled, remote_digests = await fill_digests(
            needed,
            source,
            remote,
            cache=self._digests,
            local_root=self.local_root,
            transport=agent,
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
