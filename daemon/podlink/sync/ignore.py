"""Which paths are synced: ``.gitignore`` files (nested too), ``.podlinkignore`` and the
config's ``exclude`` list, with gitignore semantics from pathspec.

``.git/``, ``.podlink/`` and conflict copies are never synced. Ignored paths are also left
alone in the target: a mirror never deletes what it was told not to look at
(``node_modules/`` installed in the container, caches).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec, RegexPattern

from podlink.sync.core.names import CONFLICT_MARKER, TEMP_PREFIX

# Conflict copies hold the target's version of a file for the user to look at; they stay in
# the workspace (the target has its own version already).
ALWAYS_EXCLUDED = (".git/", ".podlink/", f"{TEMP_PREFIX}*", f"*{CONFLICT_MARKER}*")
IGNORE_FILE_NAMES = (".gitignore", ".podlinkignore")
BUILT_IN = "built-in"
CONFIG_EXCLUDE = "exclude"


@dataclass(frozen=True)
class Rule:
    """Where one ignore rule comes from: ``source`` is an ignore file's path relative to the
    sync root, ``exclude`` (the sync entry's exclude list) or ``built-in``; ``line`` is
    1-based in the ignore file, the position in the exclude list, or None."""

    source: str
    line: int | None
    pattern: str

    def describe(self) -> str:
        if self.source == BUILT_IN:
            return f"podlink never syncs {self.pattern!r}"
        if self.source == CONFIG_EXCLUDE:
            return f"{self.pattern!r} in the sync entry's exclude list"
        return f"{self.pattern!r} in {self.source}, line {self.line}"


@dataclass(frozen=True)
class Verdict:
    """Why a path is (not) synced: ``rule`` decided about ``matched`` (the path itself or a
    folder above it); a rule with ``!`` that matched a path that is synced is given too."""

    ignored: bool
    matched: str = ""
    rule: Rule | None = None


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
        always = [*ALWAYS_EXCLUDED, *extra_always]
        self._lines: list[str] = [*always, *excludes]
        self._origins: list[Rule] = [Rule(BUILT_IN, None, line) for line in always] + [
            Rule(CONFIG_EXCLUDE, index, line) for index, line in enumerate(excludes, 1)
        ]
        self._built_in = len(always)
        self._spec = GitIgnoreSpec.from_lines(self._lines)
        self._match = spec_matcher(self._spec)
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
        added: list[tuple[str, Rule]] = []
        for name in IGNORE_FILE_NAMES:
            relative = posixpath.join(folder, name) if folder else name
            if relative in self._loaded_files:
                continue
            try:
                text = (root / relative).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            self._loaded_files.add(relative)
            for number, line in enumerate(text.splitlines(), 1):
                pattern = _scoped_pattern(line, folder)
                if pattern:
                    added.append((pattern, Rule(relative, number, line.strip())))
        if added:
            self._add_lines(added)
        return bool(added)

    def _add_lines(self, lines: Iterable[tuple[str, Rule]]) -> None:
        for pattern, origin in lines:
            self._lines.append(pattern)
            self._origins.append(origin)
        # New objects rather than changes in place: a scan thread may add rules while the
        # watcher asks on the event loop, and a verdict made with the old spec must land in
        # the old cache, never in the new one.
        self._spec = GitIgnoreSpec.from_lines(self._lines)
        self._match = spec_matcher(self._spec)
        self._verdicts = {}

    @property
    def loaded_files(self) -> frozenset[str]:
        return frozenset(self._loaded_files)

    def is_built_in(self, path: str, *, is_dir: bool = False) -> bool:
        """Whether ``path``, ignored while the folders above it are not (as a walk meets it),
        is left out by podlink itself (``.git/``, ``.podlink/``, ...) rather than by a rule
        the user wrote."""
        index = self._spec.check_file(path + "/" if is_dir else path).index
        return index is not None and index < self._built_in

    def explain(self, path: str, *, is_dir: bool = False) -> Verdict:
        """Whether ``path`` is ignored, and the rule that decided it (gitignore's order: the
        last matching rule wins, and nothing below an ignored folder comes back)."""
        spec = self._spec
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            current = "/".join(parts[:depth])
            folder = depth < len(parts) or is_dir
            result = spec.check_file(current + "/" if folder else current)
            index = result.index
            rule = self._origins[index] if index is not None else None
            if result.include:
                return Verdict(True, current, rule)
            if depth == len(parts):
                return Verdict(False, current if rule else "", rule)
        return Verdict(False)

    def is_ignored(self, path: str, *, is_dir: bool = False) -> bool:
        """Whether ``path`` (relative, POSIX) or any folder above it is ignored.

        Verdicts are kept until the rules change: a rescan of a big tree asks about the same
        paths again, and matching each against every pattern is most of a scan's cost.
        """
        match, verdicts = self._match, self._verdicts
        key = path + "/" if is_dir else path
        verdict = verdicts.get(key)
        if verdict is None:
            parent = path.rpartition("/")[0]
            verdict = bool(parent and _folder_ignored(match, verdicts, parent)) or match(key)
            verdicts[key] = verdict
        return verdict


Matcher = Callable[[str], bool]

# A named group may appear only once in a regular expression: the merged pattern keeps the
# groups' bracketing and drops their names (a match's groups are never read).
_NAMED_GROUP = re.compile(r"\(\?P<\w+>")


def spec_matcher(spec: GitIgnoreSpec) -> Matcher:
    """``spec.match_file`` for a relative POSIX path, as one regular expression where the
    answer allows it.

    A walk asks once per path; pathspec tries each pattern in turn from Python, which was
    half of a 100,000-file scan with only the built-in rules. Without a negated (``!``)
    pattern a path is ignored when any pattern matches, whatever the order: one search
    over all of them gives the same answer. With one, pathspec's ordered check decides.
    """
    patterns = [pattern for pattern in spec.patterns if pattern.include is not None]
    if not patterns:
        return lambda path: False
    regexes = [
        pattern.regex.pattern
        for pattern in patterns
        if pattern.include and isinstance(pattern, RegexPattern) and pattern.regex is not None
    ]
    if len(regexes) != len(patterns) or not all(isinstance(text, str) for text in regexes):
        return lambda path: bool(spec.match_file(path))
    search = re.compile("|".join(f"(?:{_NAMED_GROUP.sub('(?:', text)})" for text in regexes)).search
    return lambda path: search(path) is not None


def _folder_ignored(match: Matcher, verdicts: dict[str, bool], folder: str) -> bool:
    key = folder + "/"
    verdict = verdicts.get(key)
    if verdict is None:
        parent = folder.rpartition("/")[0]
        verdict = (bool(parent) and _folder_ignored(match, verdicts, parent)) or match(key)
        verdicts[key] = verdict
    return verdict


def is_ignore_file(path: str) -> bool:
    return posixpath.basename(path) in IGNORE_FILE_NAMES
