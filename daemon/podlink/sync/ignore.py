"""Which paths are synced: ``.gitignore`` files (nested too), ``.podlinkignore`` and the
config's ``exclude`` list, with gitignore semantics from pathspec.

``.git/``, ``.podlink/`` and conflict copies are never synced. Ignored paths are also left
alone in the target: a mirror never deletes what it was told not to look at
(``node_modules/`` installed in the container, caches).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path

from pathspec import GitIgnoreSpec

# Conflict copies hold the target's version of a file for the user to look at; they stay in
# the workspace (the target has its own version already).
ALWAYS_EXCLUDED = (".git/", ".podlink/", ".podlink-tmp-*", "*.podlink-conflict-*")
IGNORE_FILE_NAMES = (".gitignore", ".podlinkignore")


def _scoped_pattern(line: str, base: str) -> str | None:
    """Rewrite one line of an ignore file found in folder ``base`` to apply from the root."""
    stripped = line.rstrip("\n").rstrip("\r")
    if not stripped.strip() or stripped.startswith("#"):
        return None
    if not base:
        return stripped
    negated = stripped.startswith("!")
    body = stripped[1:] if negated else stripped
    # A slash before the end anchors a pattern to its own folder; otherwise it matches at any
    # depth below that folder (gitignore(5)).
    anchored = "/" in body.rstrip("/")
    body = body.lstrip("/")
    scoped = f"/{base}/{body}" if anchored else f"/{base}/**/{body}"
    return ("!" if negated else "") + scoped


class IgnoreRules:
    """Matches relative POSIX paths against every applicable ignore rule.

    Rules from nested ignore files are added as the scanner discovers them, scoped to the
    folder they were found in.
    """

    def __init__(self, excludes: Sequence[str] = (), extra_always: Sequence[str] = ()) -> None:
        self._lines: list[str] = [*ALWAYS_EXCLUDED, *extra_always, *excludes]
        self._spec = GitIgnoreSpec.from_lines(self._lines)
        self._loaded_files: set[str] = set()
        self._verdicts: dict[str, bool] = {}

    @classmethod
    def for_tree(
        cls, root: Path, excludes: Sequence[str] = (), extra_always: Sequence[str] = ()
    ) -> IgnoreRules:
        """Rules with the ignore files at the top of ``root`` already loaded."""
        rules = cls(excludes, extra_always)
        rules.load_folder(root, "")
        return rules

    def load_folder(self, root: Path, folder: str) -> bool:
        """Load the ignore files directly inside ``folder`` (relative to root). True if any."""
        added: list[str] = []
        for name in IGNORE_FILE_NAMES:
            relative = posixpath.join(folder, name) if folder else name
            if relative in self._loaded_files:
                continue
            try:
                text = (root / relative).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            self._loaded_files.add(relative)
            added.extend(p for line in text.splitlines() if (p := _scoped_pattern(line, folder)))
        if added:
            self._add_lines(added)
        return bool(added)

    def _add_lines(self, lines: Iterable[str]) -> None:
        self._lines.extend(lines)
        # New objects rather than changes in place: a scan thread may add rules while the
        # watcher asks on the event loop, and a verdict made with the old spec must land in
        # the old cache, never in the new one.
        self._spec = GitIgnoreSpec.from_lines(self._lines)
        self._verdicts = {}

    @property
    def loaded_files(self) -> frozenset[str]:
        return frozenset(self._loaded_files)

    def is_ignored(self, path: str, *, is_dir: bool = False) -> bool:
        """Whether ``path`` (relative, POSIX) or any folder above it is ignored.

        Verdicts are kept until the rules change: a rescan of a big tree asks about the same
        paths again, and matching each against every pattern is most of a scan's cost.
        """
        spec, verdicts = self._spec, self._verdicts
        key = path + "/" if is_dir else path
        verdict = verdicts.get(key)
        if verdict is None:
            parent = path.rpartition("/")[0]
            verdict = bool(parent and _folder_ignored(spec, verdicts, parent)) or _matches(
                spec, path, is_dir
            )
            verdicts[key] = verdict
        return verdict


def _folder_ignored(spec: GitIgnoreSpec, verdicts: dict[str, bool], folder: str) -> bool:
    key = folder + "/"
    verdict = verdicts.get(key)
    if verdict is None:
        parent = folder.rpartition("/")[0]
        verdict = (bool(parent) and _folder_ignored(spec, verdicts, parent)) or _matches(
            spec, folder, True
        )
        verdicts[key] = verdict
    return verdict


def _matches(spec: GitIgnoreSpec, path: str, is_dir: bool) -> bool:
    return spec.match_file(path + "/" if is_dir else path)


def is_ignore_file(path: str) -> bool:
    return posixpath.basename(path) in IGNORE_FILE_NAMES
