"""Three-way reconcile: the last agreed state (ancestor) and both sides in, one merged state out.

Pure: no I/O. For every path the side that changed since the ancestor wins; both sides
changing it the same way needs nothing; a deletion loses to a modification; two different
modifications are a conflict, where the workspace's version wins and the target's version is
kept as a local copy beside it (``NAME.podlink-conflict-<time>``) so that nothing written on
either side is lost. The merged state is what *both* sides should hold afterwards; the
upload and download plans are ``plan_mirror(merged, side)``.

In ``upload`` mode the workspace always wins; target-side changes that will be replaced are
listed in ``overwritten`` so they can be reported before they go.

This module only merges: whether the merged state may be applied is ``safety``'s call, and
what to send where is ``pass_plan``'s.
"""

from __future__ import annotations

import enum
import posixpath

import msgspec

from podlink.sync.core.names import conflict_copy_name
from podlink.sync.core.plan import COMPARE_DIGESTS_FROM, depth, is_within, quick_match
from podlink.sync.core.snapshot import Entry, Kind, Snapshot


class Mode(enum.Enum):
    UPLOAD = "upload"
    TWO_WAY = "two-way"


class MergeInput(msgspec.Struct, frozen=True):
    """The three states of one scope (the whole tree, or the paths a pass looks at, each with
    what lies below it) and how to merge them.

    ``first_sync``: the sides never agreed on anything, so where both hold something
    different the workspace wins without a conflict. ``conflict_stamp``: the time put into
    the names of this pass's conflict copies.
    """

    ancestor: Snapshot
    local: Snapshot
    remote: Snapshot
    mode: Mode
    conflict_stamp: str
    first_sync: bool = False


class Conflict(msgspec.Struct, frozen=True):
    """Both sides changed ``path`` differently; the target's version went to ``copy_path``."""

    path: str
    copy_path: str | None
    message: str


class ConflictCopy(msgspec.Struct, frozen=True):
    """Copy the target's ``remote_path`` (and what lies below it) to the local ``local_path``."""

    remote_path: str
    local_path: str


class Reconciliation(msgspec.Struct, frozen=True):
    """``merged``: what both sides should hold. ``examined``: the paths that were not
    unchanged everywhere; only they can need an operation or a new agreed entry."""

    merged: dict[str, Entry]
    examined: frozenset[str] = frozenset()
    conflicts: tuple[Conflict, ...] = ()
    copies: tuple[ConflictCopy, ...] = ()
    overwritten: tuple[str, ...] = ()


def same_entry(first: Entry | None, second: Entry | None) -> bool:
    """Whether two entries describe the same content and mode (inodes never count).

    Files match by digest when both have one, else by size and mtime (podlink writes files
    with their source's mtime, so this holds for everything it synced). Equal sizes with
    other mtimes and no digests count as different: the engine fills digests beforehand
    where that would turn into a conflict.
    """
    if first is None or second is None:
        return first is second
    if first.kind is not second.kind:
        return False
    if first.kind is Kind.SYMLINK:
        return first.link_target == second.link_target
    if first.mode != second.mode:
        return False
    if first.kind is Kind.DIRECTORY:
        return True
    return same_file_content(first, second)


def same_file_content(first: Entry, second: Entry) -> bool:
    if first.size != second.size:
        return False
    if first.digest is not None and second.digest is not None:
        return first.digest == second.digest
    return quick_match(first, second)


def paths_needing_digests_both_changed(
    ancestor: Snapshot, local: Snapshot, remote: Snapshot, *, mode: Mode
) -> list[str]:
    """Files that would look like conflicts only because no digest tells equal content apart.

    Two-way mode, both sides changed since the ancestor, equal sizes, other mtimes.
    Upload mode needs only what ``plan.paths_needing_digests`` asks for.
    """
    if mode is Mode.UPLOAD:
        return []
    found = []
    remote_get = remote.get
    for path, here in local.items():
        there = remote_get(path)
        if (
            there is None
            or here.mtime_ns == there.mtime_ns  # equal (quick match) or told apart by size
            or here.kind is not Kind.FILE
            or there.kind is not Kind.FILE
            or here.size != there.size
            or quick_match(here, there)
            or (here.digest is not None and there.digest is not None)
        ):
            continue
        base = ancestor.get(path)
        if not same_entry(base, here) and not same_entry(base, there):
            found.append(path)
    return sorted(found)


def touched_big_files(ancestor: Snapshot, side: Snapshot) -> list[str]:
    """Big files whose mtime alone moved since the agreed state, which has their digest.

    A digest tells a touched file from an edited one, and costs less than sending it again;
    it also keeps two equal files whose mtimes differ (a first sync) from looking changed
    ever after. Small files are cheaper to send than to read on both sides.
    """
    found = []
    for path, entry in side.items():
        if (
            entry.size >= COMPARE_DIGESTS_FROM
            and entry.kind is Kind.FILE
            and entry.digest is None
            and (base := ancestor.get(path)) is not None
            and base.digest is not None
            and base.kind is Kind.FILE
            and base.size == entry.size
            and base.mtime_ns != entry.mtime_ns
        ):
            found.append(path)
    return found


def reconcile(sides: MergeInput) -> Reconciliation:
    """Merge the three states for every path any of them holds."""
    ancestor, local, remote = sides.ancestor, sides.local, sides.remote
    mode, first_sync, conflict_stamp = sides.mode, sides.first_sync, sides.conflict_stamp
    merged: dict[str, Entry] = {}
    origin: dict[str, str] = {}
    conflicts: list[Conflict] = []
    copies: list[ConflictCopy] = []
    overwritten: list[str] = []

    # The workspace's paths first, most of them unchanged on every side (the loop a big tree
    # at rest costs), then what only the target or only the ancestor still has.
    ancestor_get, remote_get = ancestor.get, remote.get
    triples: list[tuple[str, Entry | None, Entry | None, Entry | None]] = []
    for path, entry in local.items():
        there, base = remote_get(path), ancestor_get(path)
        if there is not None and base is not None and _unchanged(base, entry, there):
            merged[path] = entry
        else:
            triples.append((path, base, entry, there))
    for path in remote.keys() - local.keys():
        triples.append((path, ancestor_get(path), None, remote[path]))
    for path in ancestor.keys() - local.keys() - remote.keys():
        triples.append((path, ancestor[path], None, None))
    for path, base, here, there in triples:
        winner, side = _decide(path, base, here, there, mode, first_sync, overwritten)
        if side == "conflict":
            assert here is not None and there is not None
            copy_path = conflict_copy_name(path, conflict_stamp)
            copies.append(ConflictCopy(path, copy_path))
            conflicts.append(Conflict(path, copy_path, _conflict_message(here, there, copy_path)))
            side = "local"
        if winner is not None:
            merged[path] = winner
            origin[path] = side

    _repair_folders(merged, origin, local, remote, mode, conflict_stamp, conflicts, copies)
    return Reconciliation(
        merged=merged,
        examined=frozenset(path for path, *_ in triples).union(origin),
        conflicts=tuple(conflicts),
        copies=tuple(copies),
        overwritten=tuple(sorted(overwritten)),
    )


def _unchanged(base: Entry, here: Entry, there: Entry) -> bool:
    """The common case of a big tree at rest, decided without the general rules' calls."""
    return (
        here.mtime_ns == base.mtime_ns == there.mtime_ns != 0
        and here.size == base.size == there.size
        and here.mode == base.mode == there.mode
        and here.kind is base.kind is there.kind
        and here.link_target == base.link_target == there.link_target
        and (here.digest is None or base.digest is None or here.digest == base.digest)
        and (there.digest is None or base.digest is None or there.digest == base.digest)
    )


def _decide(
    path: str,
    base: Entry | None,
    here: Entry | None,
    there: Entry | None,
    mode: Mode,
    first_sync: bool,
    overwritten: list[str],
) -> tuple[Entry | None, str]:
    """The entry both sides should hold at ``path``, and which side it came from."""
    remote_changed = not same_entry(base, there)
    if not remote_changed or same_entry(here, there):
        return here, "local"
    local_changed = not same_entry(base, here)
    if mode is Mode.UPLOAD:
        if not first_sync:
            overwritten.append(path)
        return here, "local"
    if not local_changed:
        return there, "remote"
    if first_sync and here is not None:
        # No agreed state yet: the workspace is the truth for what both sides hold.
        return here, "local"
    if here is None:
        return there, "remote"  # deleted here, modified there: the modification wins
    if there is None:
        return here, "local"
    if here.kind is Kind.DIRECTORY and there.kind is Kind.DIRECTORY:
        return here, "local"  # only modes differ; a folder's content is decided below it
    if here.kind is there.kind is Kind.FILE and same_file_content(here, there):
        return here, "local"  # same bytes, other modes: no content to lose
    return here, "conflict"


def _conflict_message(here: Entry, there: Entry, copy_path: str) -> str:
    name = posixpath.basename(copy_path)
    if here.kind is not there.kind:
        what = f"the target has a {_noun(there)} where the workspace has a {_noun(here)}"
    else:
        what = "changed in the workspace and in the target"
    return f"{what}; the workspace's version was kept, the target's is saved as {name}"


def _noun(entry: Entry) -> str:
    return {Kind.FILE: "file", Kind.DIRECTORY: "folder", Kind.SYMLINK: "symlink"}[entry.kind]


def _repair_folders(
    merged: dict[str, Entry],
    origin: dict[str, str],
    local: Snapshot,
    remote: Snapshot,
    mode: Mode,
    stamp: str,
    conflicts: list[Conflict],
    copies: list[ConflictCopy],
) -> None:
    """Make every kept entry's parent a folder in ``merged``.

    A parent deleted on one side while something below it changed on the other comes back
    (the modification wins). A parent replaced by a file or link on one side while the other
    changed something below it is a conflict: the workspace's parent wins, and a target
    subtree that would be dropped is copied to the workspace first.
    """
    # Most entries sit in a folder that is kept: only the others need the ordered walk.
    orphans = [
        path
        for path in merged
        if (parent := path.rpartition("/")[0])
        and ((found := merged.get(parent)) is None or found.kind is not Kind.DIRECTORY)
    ]
    for path in sorted(orphans, key=lambda p: (depth(p), p)):
        if path not in merged:
            continue  # dropped as part of a copied subtree
        parent = posixpath.dirname(path)
        if not parent or (parent not in local and parent not in remote):
            continue  # outside this pass's scope: the parent is not being changed
        parent_entry = merged.get(parent)
        if parent_entry is not None and parent_entry.kind is Kind.DIRECTORY:
            continue
        here, there = local.get(parent), remote.get(parent)
        if parent_entry is None:
            _revive_folder(parent, merged, origin, local, remote)
            continue
        if (
            origin.get(path, "local") == "local"
            and here is not None
            and here.kind is Kind.DIRECTORY
        ):
            # The target replaced the folder; the workspace changed inside it.
            merged[parent], origin[parent] = here, "local"
            if there is not None and mode is Mode.TWO_WAY:
                _add_copy(parent, here, there, stamp, conflicts, copies)
            continue
        # The workspace replaced the folder; the target changed inside it.
        if there is not None and mode is Mode.TWO_WAY and there.kind is Kind.DIRECTORY:
            _add_copy(parent, parent_entry, there, stamp, conflicts, copies)
        for below in [p for p in merged if is_within(p, parent) and p != parent]:
            del merged[below]


def _revive_folder(
    folder: str,
    merged: dict[str, Entry],
    origin: dict[str, str],
    local: Snapshot,
    remote: Snapshot,
) -> None:
    while folder and folder not in merged:
        here, there = local.get(folder), remote.get(folder)
        if here is not None and here.kind is Kind.DIRECTORY:
            merged[folder], origin[folder] = here, "local"
        elif there is not None and there.kind is Kind.DIRECTORY:
            merged[folder], origin[folder] = there, "remote"
        else:
            merged[folder], origin[folder] = Entry(kind=Kind.DIRECTORY, mode=0o755), "local"
        folder = posixpath.dirname(folder)


def _add_copy(
    path: str,
    here: Entry,
    there: Entry,
    stamp: str,
    conflicts: list[Conflict],
    copies: list[ConflictCopy],
) -> None:
    if any(copy.remote_path == path for copy in copies):
        return
    copy_path = conflict_copy_name(path, stamp)
    copies.append(ConflictCopy(path, copy_path))
    conflicts.append(Conflict(path, copy_path, _conflict_message(here, there, copy_path)))
