"""Diff two snapshots into the operations that make the target mirror the source.

Pure: no I/O. The engine fills in digests where sizes alone cannot decide (see
``paths_needing_digests``) and applies the plan through the agent, which processes operations
in order, so the order here is the order of effect.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Iterable

import msgspec

from podlink.sync.core.snapshot import Entry, Kind, Snapshot


class OperationKind(enum.Enum):
    MKDIR = "mkdir"
    WRITE = "write"
    SYMLINK = "symlink"
    CHMOD = "chmod"
    DELETE = "delete"
    RENAME = "rename"  # ``source`` becomes ``path``


class Operation(msgspec.Struct, frozen=True):
    kind: OperationKind
    path: str
    mode: int = 0
    link_target: str | None = None
    size: int = 0
    source: str | None = None


class Plan(msgspec.Struct, frozen=True):
    operations: tuple[Operation, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.operations

    def count(self, kind: OperationKind) -> int:
        return sum(1 for operation in self.operations if operation.kind is kind)

    @property
    def bytes_to_send(self) -> int:
        return sum(op.size for op in self.operations if op.kind is OperationKind.WRITE)


def depth(path: str) -> int:
    return path.count("/")


def is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def restrict(snapshot: Snapshot, roots: Iterable[str]) -> dict[str, Entry]:
    """The entries at or below any of ``roots`` (relative paths).

    Cost grows with the number of roots, and with the snapshot's size only for roots that
    are folders in it: a saved file is a dictionary lookup, however large the tree.
    """
    root_set = set(roots)
    if "" in root_set:
        return dict(snapshot)
    chosen: dict[str, Entry] = {}
    folders: list[str] = []
    for root in root_set:
        entry = snapshot.get(root)
        if entry is not None:
            chosen[root] = entry
            if entry.kind is Kind.DIRECTORY:
                folders.append(root + "/")
    if folders:
        prefixes = tuple(folders)
        chosen.update((p, e) for p, e in snapshot.items() if p.startswith(prefixes))
    return chosen


def folders_above(paths: Iterable[str]) -> frozenset[str]:
    """Every folder that holds one of ``paths``, at any depth (the root excluded)."""
    found: set[str] = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent and parent not in found:
            found.add(parent)
            parent = posixpath.dirname(parent)
    return frozenset(found)


def quick_match(source: Entry, target: Entry) -> bool:
    """Equal size and modification time: the same file, as rsync's quick check assumes.

    podlink writes files with their source's mtime, so this holds for everything it synced
    and lets a rescan skip reading files on both sides.
    """
    return source.size == target.size and source.mtime_ns == target.mtime_ns != 0


# Below this size, re-sending a file whose mtime differs is cheaper than reading it on both
# sides to compare digests.
COMPARE_DIGESTS_FROM = 64 * 1024


def paths_needing_digests(source: Snapshot, target: Snapshot) -> list[str]:
    """Files worth comparing by digest: equal sizes of at least COMPARE_DIGESTS_FROM bytes,
    no quick match, and a digest missing on either side."""
    return sorted(
        path
        for path, entry in source.items()
        if entry.kind is Kind.FILE
        and entry.size >= COMPARE_DIGESTS_FROM
        and (other := target.get(path)) is not None
        and other.kind is Kind.FILE
        and other.size == entry.size
        and not quick_match(entry, other)
        and (entry.digest is None or other.digest is None)
    )


def same_content(source: Entry, target: Entry) -> bool:
    """Whether the target already holds what the source has (modes aside)."""
    if source.kind is not target.kind:
        return False
    if source.kind is Kind.FILE:
        if source.size != target.size:
            return False
        if source.digest is not None and target.digest is not None:
            return source.digest == target.digest
        if quick_match(source, target):
            return True
        if source.size < COMPARE_DIGESTS_FROM:
            return False
        raise ValueError("equal sizes need digests on both sides to compare")
    if source.kind is Kind.SYMLINK:
        return source.link_target == target.link_target
    return True


def plan_mirror(source: Snapshot, target: Snapshot) -> Plan:
    """Operations that make ``target`` equal ``source``: the upload direction.

    Order: paths whose type changes are removed first (deepest first), then folders are
    created (shallowest first), then files and links written, then modes fixed, then what
    the source no longer has is deleted, one recursive delete per removed subtree.
    """
    replaced: list[str] = []
    created_dirs: list[Operation] = []
    content: list[Operation] = []
    modes: list[Operation] = []

    for path, entry in source.items():
        existing = target.get(path)
        if (
            existing is not None
            and existing.mtime_ns == entry.mtime_ns != 0
            and existing.size == entry.size
            and existing.mode == entry.mode
            and existing.kind is entry.kind
            and existing.link_target == entry.link_target
            and (existing.digest is None or entry.digest is None or existing.digest == entry.digest)
        ):
            continue  # the common case of a big tree at rest
        if existing is not None and existing.kind is not entry.kind:
            replaced.append(path)
            existing = None
        if existing is None or not same_content(entry, existing):
            _create(path, entry, created_dirs, content)
        elif entry.kind is not Kind.SYMLINK and entry.mode != existing.mode:
            modes.append(Operation(OperationKind.CHMOD, path, mode=entry.mode))

    by_depth = lambda op: (depth(op.path), op.path)  # noqa: E731 - one key for three lists
    created_dirs.sort(key=by_depth)
    content.sort(key=by_depth)
    modes.sort(key=by_depth)
    removed = [path for path in target if path not in source]
    deletions = [Operation(OperationKind.DELETE, path) for path in _topmost(removed + replaced)]
    type_changes = sorted(
        (op for op in deletions if op.path in source), key=lambda op: -depth(op.path)
    )
    gone = [op for op in deletions if op.path not in source]
    return Plan((*type_changes, *created_dirs, *content, *modes, *gone))


def _create(path: str, entry: Entry, dirs: list[Operation], content: list[Operation]) -> None:
    if entry.kind is Kind.DIRECTORY:
        dirs.append(Operation(OperationKind.MKDIR, path, mode=entry.mode))
    elif entry.kind is Kind.SYMLINK:
        content.append(Operation(OperationKind.SYMLINK, path, link_target=entry.link_target))
    else:
        content.append(Operation(OperationKind.WRITE, path, mode=entry.mode, size=entry.size))


def _topmost(paths: Iterable[str]) -> list[str]:
    """Drop every path that lies below another one in the list."""
    chosen: set[str] = set()
    for path in sorted(set(paths), key=lambda p: (depth(p), p)):
        if folders_above((path,)).isdisjoint(chosen):
            chosen.add(path)
    return sorted(chosen)


def detect_renames(plan: Plan, source: Snapshot, target: Snapshot, agreed: Snapshot) -> Plan:
    """Turn a delete plus an upload of the same file into a rename in the target.

    A file moved in the workspace keeps its inode, size, mtime and mode; ``agreed`` (the last
    agreed state, keyed like ``source`` with the workspace's inodes) says which inode the old
    path had. Only an unambiguous match, whose old copy in the target is still the agreed
    one, becomes a rename; folders are not renamed as such, their files are, one by one.
    """
    gone_roots = [
        op.path
        for op in plan.operations
        if op.kind is OperationKind.DELETE and op.path not in source
    ]
    if not gone_roots:
        return plan
    candidates: dict[tuple[int, int, int, int], list[str]] = {}
    for path, there in restrict(target, gone_roots).items():
        before = agreed.get(path)
        if (
            there.kind is Kind.FILE
            and before is not None
            and before.inode
            and before.kind is Kind.FILE
            and quick_match(before, there)
        ):
            key = (before.inode, before.size, before.mtime_ns, before.mode)
            candidates.setdefault(key, []).append(path)
    if not candidates:
        return plan
    operations: list[Operation] = []
    moved: set[str] = set()
    for op in plan.operations:
        entry = source.get(op.path)
        if op.kind is OperationKind.WRITE and entry is not None and entry.inode:
            matches = candidates.get((entry.inode, entry.size, entry.mtime_ns, entry.mode), [])
            if len(matches) == 1:
                old = matches.pop()
                moved.add(old)
                op = Operation(OperationKind.RENAME, op.path, mode=entry.mode, source=old)
        operations.append(op)
    # A moved file's own delete has nothing left to do (a folder's still removes the rest).
    return Plan(
        tuple(op for op in operations if not (op.kind is OperationKind.DELETE and op.path in moved))
    )
