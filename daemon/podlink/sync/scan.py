"""Read the local side of a sync: a snapshot of the tree under a sync root, and digests.

Blocking file-system work: callers run it in a worker thread. Digests are cached by
(inode, size, mtime) so a rescan does not read unchanged files again.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from podlink.sync.core.snapshot import Entry, Kind
from podlink.sync.ignore import IgnoreRules

HASH_CHUNK = 1 << 20


IGNORED_EXAMPLES = 20


@dataclass
class IgnoredCount:
    """What the user's ignore rules kept out of a walk: files, and folders left out whole
    (not looked into), with the first few of their paths (folders end with ``/``).
    podlink's own exclusions (``.git/``, ``.podlink/``) are not counted."""

    files: int = 0
    folders: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, path: str, is_dir: bool) -> None:
        if is_dir:
            self.folders += 1
        else:
            self.files += 1
        if len(self.examples) < IGNORED_EXAMPLES:
            self.examples.append(path + "/" if is_dir else path)


@dataclass
class LocalScan:
    entries: dict[str, Entry] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    ignored: IgnoredCount = field(default_factory=IgnoredCount)


def entry_from_stat(info: os.stat_result, link_target: str | None = None) -> Entry | None:
    """The snapshot entry for a stat result; None for sockets, fifos and devices."""
    if stat.S_ISREG(info.st_mode):
        kind = Kind.FILE
    elif stat.S_ISDIR(info.st_mode):
        kind = Kind.DIRECTORY
    elif stat.S_ISLNK(info.st_mode):
        kind = Kind.SYMLINK
    else:
        return None
    return Entry(
        kind=kind,
        mode=stat.S_IMODE(info.st_mode),
        size=info.st_size if kind is Kind.FILE else 0,
        mtime_ns=info.st_mtime_ns,
        link_target=link_target,
        inode=info.st_ino,
    )


def _not_utf8(text: str) -> bool:
    """Names that are not UTF-8 reach Python with surrogates; the wire cannot carry them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shown(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


SPECIAL_FILE = "special file, not synced"
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_file_problem(mode: int) -> str:
    """Why a path that is no file, folder or symlink is not synced: nothing can carry it."""
    kind = next((what for test, what in _SPECIAL_KINDS if test(mode)), "of an unknown kind")
    return f"{SPECIAL_FILE}: {kind}"


NOT_UTF8 = "skipped: its name is not valid UTF-8; rename it to sync it"
LINK_NOT_UTF8 = "skipped: the symlink's target is not valid UTF-8"


def scan_tree(root: Path, rules: IgnoreRules, below: str = "") -> LocalScan:
    """Snapshot of ``root`` (or of the subtree ``below`` it), ignored paths left out.

    A missing ``below`` gives an empty scan: the caller treats it as deleted.
    """
    result = LocalScan()
    if below:
        start = _entry_at(root, below, rules, result)
        if start is None or start.kind is not Kind.DIRECTORY:
            return result
    _walk(root, below, rules, result)
    return result


class FolderFound(Exception):
    """A path given to ``scan_paths(..., walk_folders=False)`` is a folder."""


def scan_paths(
    root: Path, paths: Iterable[str], rules: IgnoreRules, *, walk_folders: bool = True
) -> LocalScan:
    """Snapshot of just ``paths`` and, for folders among them, everything below.

    With ``walk_folders=False`` a folder raises FolderFound instead of being walked, so a
    caller can keep the quick case on the event loop and move the rest to a thread.
    """
    result = LocalScan()
    for path in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if path in result.entries or rules.is_ignored(path):
            continue
        entry = _entry_at(root, path, rules, result)
        if entry is not None and entry.kind is Kind.DIRECTORY:
            if not walk_folders:
                raise FolderFound(path)
            _walk(root, path, rules, result)
    return result


def _entry_at(root: Path, path: str, rules: IgnoreRules, result: LocalScan) -> Entry | None:
    full = root / path
    try:
        info = full.lstat()
        link_target = os.readlink(full) if stat.S_ISLNK(info.st_mode) else None
    except FileNotFoundError:
        return None
    except OSError as error:
        result.problems.append((path, f"cannot read: {error.strerror}"))
        return None
    entry = entry_from_stat(info, link_target)
    if rules.is_ignored(path, is_dir=entry is not None and entry.kind is Kind.DIRECTORY):
        return None
    if entry is None:
        result.problems.append((_shown(path), special_file_problem(info.st_mode)))
        return None
    if _not_utf8(path) or (link_target is not None and _not_utf8(link_target)):
        result.problems.append((_shown(path), NOT_UTF8 if _not_utf8(path) else LINK_NOT_UTF8))
        return None
    result.entries[path] = entry
    return entry


def _walk(root: Path, folder: str, rules: IgnoreRules, result: LocalScan) -> None:
    pending = [folder]
    while pending:
        current = pending.pop()
        rules.load_folder(root, current)
        try:
            with os.scandir(root / current if current else root) as listing:
                children = list(listing)
        except FileNotFoundError:
            continue
        except OSError as error:
            result.problems.append((current, f"cannot list folder: {error.strerror}"))
            continue
        prefix = current + "/" if current else ""
        for child in children:
            path = prefix + child.name
            try:
                info = child.stat(follow_symlinks=False)
                link_target = os.readlink(child.path) if stat.S_ISLNK(info.st_mode) else None
            except FileNotFoundError:
                continue
            except OSError as error:
                result.problems.append((path, f"cannot read: {error.strerror}"))
                continue
            entry = entry_from_stat(info, link_target)
            if entry is None:
                if not rules.is_ignored(path):
                    result.problems.append((_shown(path), special_file_problem(info.st_mode)))
                continue
            if _not_utf8(path) or (link_target is not None and _not_utf8(link_target)):
                result.problems.append(
                    (_shown(path), NOT_UTF8 if _not_utf8(path) else LINK_NOT_UTF8)
                )
                continue
            is_dir = entry.kind is Kind.DIRECTORY
            if rules.is_ignored(path, is_dir=is_dir):
                if not rules.is_built_in(path, is_dir=is_dir):
                    result.ignored.add(path, is_dir)
                continue
            result.entries[path] = entry
            if is_dir:
                pending.append(path)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DigestCache:
    """Digests of local files keyed by what stat says, so unchanged files are read once."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, int, int, str]] = {}

    def lookup(self, path: str, entry: Entry) -> str | None:
        known = self._known.get(path)
        if known is not None and known[:3] == (entry.inode, entry.size, entry.mtime_ns):
            return known[3]
        return None

    def remember(self, path: str, entry: Entry, digest: str) -> None:
        self._known[path] = (entry.inode, entry.size, entry.mtime_ns, digest)

    def with_digest(self, root: Path, path: str, entry: Entry) -> Entry | None:
        """``entry`` with its digest filled in; None if the file vanished meanwhile."""
        digest = self.lookup(path, entry)
        if digest is None:
            try:
                digest = file_digest(root / path)
            except FileNotFoundError:
                return None
            self.remember(path, entry, digest)
        return msgspec.structs.replace(entry, digest=digest)
