"""What the sync leaves out, said out loud.

Ignoring is right (a ``.gitignore`` that lists ``*.egg-info`` means it), silence is not:
``podlink why PATH`` and ``podlink/explainPath`` say whether a path is synced and which rule
of which file keeps it out; a failing test whose message names a path the sync left out
gets a note saying so. The rules are the ones a session's scan uses: ``rules_for_entry``.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from pathlib import Path

from podlink import protocol
from podlink.config import Config, SyncEntryConfig
from podlink.sync.ignore import BUILT_IN, CONFIG_EXCLUDE, IgnoreRules, Rule, Verdict


def rules_for_entry(config: Config, entry: SyncEntryConfig) -> IgnoreRules:
    """A sync entry's rules with its top-level ignore files loaded (a scan loads the rest)."""
    local_root = config.local_root(entry)
    extra: list[str] = []
    # A local target inside the synced tree must never be synced into itself.
    target_root = config.local_target_root
    inside = target_root is not None and target_root.is_relative_to(local_root)
    if target_root is not None and inside and target_root != local_root:
        extra.append(f"/{target_root.relative_to(local_root).as_posix()}/")
    return IgnoreRules.for_tree(local_root, entry.exclude, extra)


def explain_path(config: Config, path: Path) -> protocol.PathExplanation:
    """Whether the local ``path`` (absolute, need not exist) is synced, and why (not)."""
    path = Path(os.path.normpath(path.absolute()))
    shown = _shown(config, path)
    uri = path.as_uri()
    for index, entry in enumerate(config.sync):
        root = config.local_root(entry)
        if path != root and not path.is_relative_to(root):
            continue
        relative = path.relative_to(root).as_posix() if path != root else ""
        remote = posixpath.join(entry.remote, relative) if relative else entry.remote
        if not relative:
            return protocol.PathExplanation(
                uri=uri,
                synced=True,
                remote_path=remote,
                message=f"{shown} is the root of sync entry {index}, synced into {remote}",
            )
        rules = rules_for_entry(config, entry)
        _load_ignore_files_above(rules, root, relative)
        verdict = rules.explain(relative, is_dir=path.is_dir())
        return _explanation(config, index, root, path, relative, remote, verdict)
    entries = ", ".join(entry.local for entry in config.sync)
    return protocol.PathExplanation(
        uri=uri,
        synced=False,
        message=(
            f"{shown} is not synced: it is outside every folder podlink syncs "
            f"(sync[].local: {entries})"
        ),
    )


def _load_ignore_files_above(rules: IgnoreRules, root: Path, relative: str) -> None:
    """Load the ignore files of each folder down to ``relative``, as a scan would reach them:
    a scan never looks into an ignored folder, so its ignore files never count."""
    parts = relative.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folder = "/".join(parts[:depth])
        if rules.is_ignored(folder, is_dir=True):
            return
        rules.load_folder(root, folder)


def _explanation(
    config: Config,
    index: int,
    root: Path,
    path: Path,
    relative: str,
    remote: str,
    verdict: Verdict,
) -> protocol.PathExplanation:
    uri, shown = path.as_uri(), _shown(config, path)
    rule = _wire_rule(config, index, root, verdict.rule) if verdict.rule else None
    folder = None
    if verdict.ignored and verdict.matched != relative:
        folder = _shown(config, root / verdict.matched)
    if not verdict.ignored:
        message = f"{shown} is synced into {remote}"
        if rule is not None:
            message += f"; {_where(rule)} brings it back"
        return protocol.PathExplanation(
            uri=uri, synced=True, remote_path=remote, rule=rule, message=message
        )
    assert rule is not None
    what = f"its folder {folder}/ is" if folder else "it is"
    if rule.source == BUILT_IN:
        message = f"{shown} is not synced: {what} never synced by podlink ({rule.pattern!r})"
    else:
        message = f"{shown} is not synced: {what} excluded by {_where(rule)}"
    return protocol.PathExplanation(
        uri=uri,
        synced=False,
        remote_path=remote,
        rule=rule,
        excluded_folder=folder,
        message=message,
    )


def _wire_rule(config: Config, index: int, root: Path, rule: Rule) -> protocol.IgnoreRule:
    if rule.source == BUILT_IN:
        return protocol.IgnoreRule(source=BUILT_IN, pattern=rule.pattern)
    if rule.source == CONFIG_EXCLUDE:
        config_file = _shown(config, config.path) if config.path else "podlink.yaml"
        return protocol.IgnoreRule(
            source=f"{config_file} sync[{index}].exclude", line=rule.line, pattern=rule.pattern
        )
    return protocol.IgnoreRule(
        source=_shown(config, root / rule.source), line=rule.line, pattern=rule.pattern
    )


def _where(rule: protocol.IgnoreRule) -> str:
    if rule.line is None:
        return f"{rule.pattern!r} in {rule.source}"
    if rule.source.endswith(".exclude"):
        return f"{rule.pattern!r} (item {rule.line} of {rule.source})"
    return f"{rule.pattern!r} in {rule.source}, line {rule.line}"


def _shown(config: Config, path: Path) -> str:
    """A path as the user sees it: relative to the workspace folder when it lies inside."""
    if path == config.folder:
        return "."
    if path.is_relative_to(config.folder):
        return path.relative_to(config.folder).as_posix()
    return str(path)


# -- failures that name what the sync left out ---------------------------------------------

# Quoted paths ('...' or "...") and bare absolute ones, as exception messages write them.
_PATH_IN_TEXT = re.compile(r"""'([^'\n]+)'|"([^"\n]+)"|(?<![\w.])(/[^\s'":,;)]+)""")
MAX_NOTES = 3


def paths_in(message: str) -> list[str]:
    """The strings in a message that may be paths, in order, each once."""
    found: dict[str, None] = {}
    for match in _PATH_IN_TEXT.finditer(message):
        text = next(group for group in match.groups() if group)
        if "/" in text or "." in text:
            found.setdefault(text, None)
    return list(found)


def note_left_out(
    local_paths: Iterable[Path], sync_roots: Iterable[tuple[Path, IgnoreRules]], folder: Path
) -> str | None:
    """A note for the local paths (named by a failure) that the sync leaves out: a failure
    about a file missing in the target is then not a mystery. None when none is left out."""
    notes: list[str] = []
    roots = list(sync_roots)
    for path in local_paths:
        for root, rules in roots:
            if path == root or not path.is_relative_to(root):
                continue
            relative = path.relative_to(root).as_posix()
            verdict = rules.explain(relative, is_dir=path.is_dir())
            if verdict.ignored and verdict.rule is not None and verdict.rule.source != BUILT_IN:
                shown = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path
                notes.append(
                    f"podlink: {shown} is not synced into the target "
                    f"({_rule_text(verdict, root, folder)}); `podlink why {shown}` says more"
                )
            break
        if len(notes) == MAX_NOTES:
            break
    return "\n".join(notes) or None


def _rule_text(verdict: Verdict, root: Path, folder: Path) -> str:
    rule = verdict.rule
    assert rule is not None
    if rule.source == CONFIG_EXCLUDE:
        where = f"sync[].exclude item {rule.line}"
    else:
        source = root / rule.source
        shown = source.relative_to(folder).as_posix() if source.is_relative_to(folder) else source
        where = f"{shown}, line {rule.line}"
    return f"{verdict.matched} matches {rule.pattern!r} in {where}"
