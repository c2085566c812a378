"""Safety halts: whether a merged pass may be applied at all. Pure: no I/O.

A pass stops, before anything is applied, when a side's root vanished or became empty while
the ancestor had content, or when it would delete more than a share of the tree: the typical
"container restarted without its volume" and "workspace unmounted" cases, where propagating
the deletion would destroy the other side. The merge (``reconcile``) never decides this.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import msgspec

from podlink.sync.core.reconcile import MergeInput, Mode
from podlink.sync.core.snapshot import Entry, Kind, Snapshot

# The share check needs a tree of some size: deleting 3 of 4 files is ordinary editing.
MIN_FILES_FOR_DELETE_SHARE = 20


class RootState(enum.Enum):
    """What a whole-tree scan found at a side's root."""

    PRESENT = "present"
    MISSING = "missing"
    NOT_A_FOLDER = "not a folder"
    NOT_SCANNED = "not scanned"  # an incremental pass: only some paths were looked at


class Side(enum.StrEnum):
    """The side a halt protects: the one whose files the pass would have deleted."""

    WORKSPACE = "workspace"
    TARGET = "target"


class HaltKind(enum.Enum):
    EMPTIED_ROOT = "emptied root"  # a side's root is gone or empty
    DELETE_SHARE = "delete share"  # more than sync[].maxDeleteShare would be deleted


class Halt(msgspec.Struct, frozen=True):
    reason: str
    side: Side
    kind: HaltKind


class SafetyCheck(msgspec.Struct, frozen=True):
    """What the halts are judged on besides the three snapshots and the merged state.

    ``ancestor_files``: how many files the whole ancestor holds (defaults to the files in the
    pass's ancestor). ``recently_deleted``: files deleted in the target and in the workspace
    by the passes of the last moments; a deletion arrives in several passes (a watcher
    batches what it sees), and the share counts them together. ``fresh``: files created
    within those moments; deleting them again loses nothing the sides had agreed on (an
    editor's or a generator's churn), so it never counts against the share.
    """

    local_root: RootState = RootState.NOT_SCANNED
    remote_root: RootState = RootState.NOT_SCANNED
    ancestor_files: int | None = None
    max_delete_share: float = 0.5
    recently_deleted: tuple[int, int] = (0, 0)
    fresh: frozenset[str] = frozenset()


def halt_for(sides: MergeInput, merged: Mapping[str, Entry], check: SafetyCheck) -> Halt | None:
    """Why the pass that merged ``sides`` into ``merged`` must not be applied, if it must not."""
    ancestor, local, remote = sides.ancestor, sides.local, sides.remote
    if not _has_files(ancestor.values()):
        return None
    held = _count_files(ancestor.values())
    if check.local_root is not RootState.NOT_SCANNED and not _has_files(local.values()):
        what = _root_description(check.local_root)
        return Halt(
            f"the workspace folder {what} but held {held} files when last synced; "
            "podlink paused instead of deleting them in the target",
            Side.WORKSPACE,
            HaltKind.EMPTIED_ROOT,
        )
    if (
        sides.mode is Mode.TWO_WAY
        and check.remote_root is not RootState.NOT_SCANNED
        and not _has_files(remote.values())
    ):
        what = _root_description(check.remote_root)
        return Halt(
            f"the sync folder in the target {what} but held {held} files when last synced "
            "(was the container recreated without its volume?); podlink paused instead of "
            "deleting them in the workspace",
            Side.TARGET,
            HaltKind.EMPTIED_ROOT,
        )
    total = held if check.ancestor_files is None else max(check.ancestor_files, held)
    total += max(check.recently_deleted)  # the tree as it was before those deletions
    for side, snapshot, before in (
        (Side.TARGET, remote, check.recently_deleted[0]),
        (Side.WORKSPACE, local, check.recently_deleted[1]),
    ):
        deleted = before + deleted_files(snapshot, merged, excluding=check.fresh)
        if deleted >= MIN_FILES_FOR_DELETE_SHARE and deleted > check.max_delete_share * total:
            share = round(100 * deleted / total)
            return Halt(
                f"this sync would delete {deleted} files ({share}% of the tree) in the "
                f"{side}, more than the {round(100 * check.max_delete_share)}% allowed by "
                "sync[].maxDeleteShare; podlink paused",
                side,
                HaltKind.DELETE_SHARE,
            )
    return None


def deleted_files(
    side: Snapshot, merged: Mapping[str, Entry], excluding: frozenset[str] = frozenset()
) -> int:
    """How many files (not folders) of ``side`` the merged state no longer has."""
    return sum(
        1
        for path in side.keys() - merged.keys() - excluding
        if side[path].kind is not Kind.DIRECTORY
    )


def _root_description(state: RootState) -> str:
    if state is RootState.MISSING:
        return "is gone"
    if state is RootState.NOT_A_FOLDER:
        return "is no longer a folder"
    return "is empty"


def _has_files(entries: Iterable[Entry]) -> bool:
    return any(entry.kind is not Kind.DIRECTORY for entry in entries)


def _count_files(entries: Iterable[Entry]) -> int:
    return sum(1 for entry in entries if entry.kind is not Kind.DIRECTORY)
