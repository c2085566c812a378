"""One pass, planned: what to hash before merging, then what to copy, upload and download.

Pure: no I/O. The engine scans, asks ``hashes_needed`` which digests would tell equal
content apart, fills them in, and hands the three states to ``plan_pass``, which merges
them (``reconcile``), judges the outcome (``safety``) and, unless that halts the pass,
plans both directions from the merged state (``plan.plan_mirror``). The engine then
applies the plan and records what went through as agreed.
"""

from __future__ import annotations

import msgspec

from podlink.sync.core.plan import Plan, detect_renames, paths_needing_digests, plan_mirror
from podlink.sync.core.reconcile import (
    Conflict,
    ConflictCopy,
    MergeInput,
    Mode,
    paths_needing_digests_both_changed,
    reconcile,
    touched_big_files,
)
from podlink.sync.core.safety import Halt, SafetyCheck, halt_for
from podlink.sync.core.snapshot import Entry, Kind, Snapshot


class PassPlan(msgspec.Struct, frozen=True):
    """``merged``: what both sides should hold. ``examined``: the paths that were not
    unchanged everywhere; only they can need an operation or a new agreed entry.
    ``copies``: target versions to save in the workspace before anything else is applied.
    A halted pass (``halt``) plans nothing."""

    merged: dict[str, Entry]
    examined: frozenset[str] = frozenset()
    conflicts: tuple[Conflict, ...] = ()
    copies: tuple[ConflictCopy, ...] = ()
    overwritten: tuple[str, ...] = ()
    upload: Plan = Plan()
    download: Plan = Plan()
    halt: Halt | None = None

    def files_leaving(self, side: Snapshot, excluding: frozenset[str]) -> list[str]:
        """The files (not folders) of ``side`` the merged state no longer has."""
        return [
            path
            for path in side.keys() - self.merged.keys() - excluding
            if side[path].kind is not Kind.DIRECTORY
        ]


def hashes_needed(ancestor: Snapshot, local: Snapshot, remote: Snapshot, mode: Mode) -> list[str]:
    """The paths whose digests the merge needs: where size and mtime cannot tell equal
    content from changed content."""
    needed = set(paths_needing_digests(local, remote))
    needed.update(paths_needing_digests_both_changed(ancestor, local, remote, mode=mode))
    needed.update(touched_big_files(ancestor, local))
    needed.update(touched_big_files(ancestor, remote))
    return sorted(needed)


def plan_pass(sides: MergeInput, safety: SafetyCheck | None, *, renames: bool = False) -> PassPlan:
    """Merge ``sides`` and plan what carries the merged state to both.

    ``safety``: what halts are judged on; None when the user resumed after a halt (apply what
    was held back). ``renames``: the transport can move files, so a file moved in the
    workspace is moved in the target instead of sent again.
    """
    outcome = reconcile(sides)
    merged = outcome.merged
    if safety is not None and (halt := halt_for(sides, merged, safety)) is not None:
        return PassPlan(merged=merged, halt=halt)
    # Paths unchanged everywhere need nothing: plan only the others.
    examined = outcome.examined
    merged_part = {path: merged[path] for path in examined if path in merged}
    remote_part = {path: sides.remote[path] for path in examined if path in sides.remote}
    upload = plan_mirror(merged_part, remote_part)
    if renames:
        upload = detect_renames(upload, merged, sides.remote, sides.ancestor)
    download = Plan()
    if sides.mode is Mode.TWO_WAY:
        local_part = {path: sides.local[path] for path in examined if path in sides.local}
        download = plan_mirror(merged_part, local_part)
    return PassPlan(
        merged=merged,
        examined=examined,
        conflicts=outcome.conflicts,
        copies=outcome.copies,
        overwritten=outcome.overwritten,
        upload=upload,
        download=download,
    )
