"""What one side of a sync looks like: a mapping of relative POSIX paths to entries."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import msgspec


class Kind(enum.Enum):
    FILE = "f"
    DIRECTORY = "d"
    SYMLINK = "l"


# Kind(value) goes through enum's machinery: ~2 µs, which a 100,000-entry snapshot feels.
KIND_OF_VALUE = {kind.value: kind for kind in Kind}


class Entry(msgspec.Struct, frozen=True, gc=False):
    """One file system object, as scanned. ``digest`` is filled only where it was needed.

    ``mode`` holds the permission bits only (``st_mode & 0o7777``). ``link_target`` is set for
    symlinks. ``mtime_ns`` and ``inode`` let a scanner reuse a cached digest; they never
    decide equality between the two sides.
    """

    kind: Kind
    mode: int = 0
    size: int = 0
    mtime_ns: int = 0
    digest: str | None = None
    link_target: str | None = None
    inode: int = 0


# Keys are relative POSIX paths ("src/app.py"), never starting with "/" and never "".
Snapshot = Mapping[str, Entry]
