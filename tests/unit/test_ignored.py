"""Explanations of what the sync leaves out, from the rules on disk; paths named in messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlink.config import Config, SyncEntryConfig
from podlink.ignored import explain_path, note_left_out, paths_in, rules_for_entry


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / ".gitignore").write_text("build/\n*.log\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / ".podlinkignore").write_text("!keep.log\ngenerated.py\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / ".gitignore").write_text("!*\n")  # never read: its folder is ignored
    entry = SyncEntryConfig(local=".", remote="/srv", exclude=("*.tmp",))
    return Config(folder=tmp_path, path=tmp_path / "podlink.yaml", sync=(entry,))


EXPLAINED = {
    "a nested ignore file": (
        "src/generated.py",
        False,
        "src/generated.py is not synced: it is excluded by 'generated.py' in "
        "src/.podlinkignore, line 2",
    ),
    "brought back": (
        "src/keep.log",
        True,
        "src/keep.log is synced into /srv/src/keep.log; '!keep.log' in src/.podlinkignore, "
        "line 1 brings it back",
    ),
    "below an ignored folder, whose own ignore file never counts": (
        "build/x/out.py",
        False,
        "build/x/out.py is not synced: its folder build/ is excluded by 'build/' in "
        ".gitignore, line 1",
    ),
    "the exclude list": (
        "a.tmp",
        False,
        "a.tmp is not synced: it is excluded by '*.tmp' (item 1 of podlink.yaml sync[0].exclude)",
    ),
    "podlink's own": (
        ".git/config",
        False,
        ".git/config is not synced: its folder .git/ is never synced by podlink ('.git/')",
    ),
    "the root": (".", True, ". is the root of sync entry 0, synced into /srv"),
}


@pytest.mark.parametrize(("path", "synced", "message"), EXPLAINED.values(), ids=EXPLAINED.keys())
def test_explanations_name_the_rule_and_its_file(
    config: Config, path: str, synced: bool, message: str
) -> None:
    explained = explain_path(config, config.folder / path)
    assert (explained.synced, explained.message) == (synced, message)


def test_a_path_outside_every_sync_entry(config: Config, tmp_path: Path) -> None:
    explained = explain_path(config, tmp_path.parent / "elsewhere.py")
    assert not explained.synced
    assert explained.remote_path is None
    assert "outside every folder podlink syncs (sync[].local: .)" in explained.message


PATH_CASES = {
    "quoted, as FileNotFoundError says it": (
        "FileNotFoundError: [Errno 2] No such file or directory: 'pkg.egg-info/PKG-INFO'",
        ["pkg.egg-info/PKG-INFO"],
    ),
    "bare absolute": ("cannot open /app/data/x.csv: gone", ["/app/data/x.csv"]),
    "double quotes, once each": ('"a/b" and "a/b" and "c.txt"', ["a/b", "c.txt"]),
    "words that are no paths": ("assert 'Hello' == 'Ada'", []),
}


@pytest.mark.parametrize(("message", "found"), PATH_CASES.values(), ids=PATH_CASES.keys())
def test_paths_named_in_messages(message: str, found: list[str]) -> None:
    assert paths_in(message) == found


def test_a_note_only_for_what_the_user_s_rules_leave_out(config: Config) -> None:
    root = config.folder
    rules = rules_for_entry(config, config.sync[0])
    rules.load_folder(root, "src")
    named = [root / "build" / "out.py", root / "src" / "app.py", root / ".git" / "HEAD"]
    note = note_left_out(named, [(root, rules)], root)
    assert note == (
        "podlink: build/out.py is not synced into the target (build matches 'build/' in "
        ".gitignore, line 1); `podlink why build/out.py` says more"
    )
    assert note_left_out([root / "src" / "app.py"], [(root, rules)], root) is None
