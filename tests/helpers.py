"""Helpers shared by tests: tree listings to compare, and process trees from /proc."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any


def tree_listing(root: Path) -> dict[str, Any]:
    """Every path under ``root`` with its kind, permission bits, and content digest or link."""
    listing: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(folder) / name
            relative = full.relative_to(root).as_posix()
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                listing[relative] = ("link", os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                listing[relative] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                listing[relative] = ("file", stat.S_IMODE(info.st_mode), digest)
    return listing


def descendants(pid: int) -> list[int]:
    """Living processes below ``pid``, found through /proc (zombies left out)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = (Path("/proc") / entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, parent = fields[0], int(fields[1])
        if state != "Z":
            children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found
