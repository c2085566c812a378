"""Target paths and local files through a session's sync entries, both ways.

Tools in the target print target paths (``/app/tests/test_api.py``); the editor needs the
local file. A target path maps when it lies under a sync entry's folder in the target and is
not ignored there: an ignored path in the target (a virtualenv made there, a cache) is not
the workspace's file, even if a local file of that name exists.

Tracebacks name many frames; ``place_frames`` picks the one a diagnostic belongs to (the
innermost frame inside the workspace) and turns the other workspace frames into related
locations. Frames outside the synced folders (the standard library, site-packages) are left
out: they stay in the text of the output.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from podlink.diagnostics import RelatedLocation


@dataclass(frozen=True)
class MappedRoot:
    """One sync entry: ``local_root`` here is ``target_root`` (a path the target's processes
    use); ``is_ignored`` takes a path relative to the root, POSIX style."""

    local_root: Path
    target_root: str
    is_ignored: Callable[[str], bool] = lambda _path: False


class Frame(NamedTuple):
    """A place a tool printed: a target path (absolute, or relative to the command's working
    folder), a 1-based line, and the function or note that goes with it."""

    path: str
    line: int
    name: str = ""


class Placed(NamedTuple):
    """Where a problem goes in the workspace, and the other workspace frames that led there."""

    path: Path
    line: int
    frame_index: int
    related: tuple[RelatedLocation, ...]


class PathMap:
    def __init__(self, roots: Sequence[MappedRoot]) -> None:
        # Longest target folder first, so that nested sync roots pick the closest one.
        self._roots = sorted(
            (
                MappedRoot(r.local_root, posixpath.normpath(r.target_root), r.is_ignored)
                for r in roots
            ),
            key=lambda root: len(root.target_root),
            reverse=True,
        )

    def to_local(
        self,
        target_path: str,
        *,
        cwd: str | None = None,
        must_exist: bool = True,
        synced_only: bool = True,
    ) -> Path | None:
        """The local file for a path in the target; None when it is not a synced file
        (``synced_only=False``: also where the ignore rules keep it out of the target)."""
        if target_path.startswith("<"):
            return None  # "<frozen importlib._bootstrap>", "<string>"
        if not posixpath.isabs(target_path):
            if cwd is None:
                return None
            target_path = posixpath.join(cwd, target_path)
        path = posixpath.normpath(target_path)
        for root in self._roots:
            relative = _relative_to(path, root.target_root)
            if relative is None:
                continue
            if synced_only and relative and root.is_ignored(relative):
                return None
            local = root.local_root / relative if relative else root.local_root
            if must_exist and not local.exists():
                return None
            return local
        return None

    def to_target(self, local: Path) -> str | None:
        """The target path of a local file or folder; None when no sync entry holds it."""
        resolved = local.resolve() if local.is_absolute() else local.absolute()
        for root in sorted(self._roots, key=lambda r: len(r.local_root.parts), reverse=True):
            if resolved == root.local_root:
                return root.target_root
            if resolved.is_relative_to(root.local_root):
                relative = resolved.relative_to(root.local_root).as_posix()
                return posixpath.join(root.target_root, relative)
        return None

    def place_frames(self, frames: Sequence[Frame], *, cwd: str | None = None) -> Placed | None:
        """The innermost frame inside the workspace, with the outer workspace frames as
        related locations (outermost first); None when no frame is in the workspace."""
        located = [
            (index, local, frame)
            for index, frame in enumerate(frames)
            if frame.line > 0 and (local := self.to_local(frame.path, cwd=cwd)) is not None
        ]
        if not located:
            return None
        index, path, frame = located[-1]
        related = tuple(
            RelatedLocation(local, outer.line, f"in {outer.name}" if outer.name else "called here")
            for _, local, outer in located[:-1]
        )
        return Placed(path, frame.line, index, related)


def _relative_to(path: str, root: str) -> str | None:
    if path == root:
        return ""
    prefix = root if root.endswith("/") else root + "/"
    if path.startswith(prefix):
        return path[len(prefix) :]
    return None
