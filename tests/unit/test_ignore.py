"""Ignore rules: gitignore semantics, nested files scoped to their folder, fixed exclusions."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pathspec import GitIgnoreSpec

from podlink.sync.ignore import IgnoreRules, Rule, Verdict, spec_matcher


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / ".gitignore").write_text("*.log\nbuild/\n/only-top.txt\n# comment\n\n")
    (tmp_path / ".podlinkignore").write_text("secrets/\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / ".gitignore").write_text("x.txt\n/anchored.txt\ndeep/z.txt\n!keep.log\n")
    return tmp_path


CASES = [
    # path, is_dir, ignored
    ("a.log", False, True),
    ("src/a.log", False, True),
    ("build", True, True),
    ("build/out.py", False, True),
    ("src/build/out.py", False, True),
    ("only-top.txt", False, True),
    ("src/only-top.txt", False, False),
    ("secrets/key", False, True),
    ("sub/x.txt", False, True),
    ("sub/any/x.txt", False, True),
    ("x.txt", False, False),
    ("sub/anchored.txt", False, True),
    ("sub/q/anchored.txt", False, False),
    ("sub/deep/z.txt", False, True),
    ("sub/q/deep/z.txt", False, False),
    ("sub/keep.log", False, False),
    (".git", True, True),
    (".git/HEAD", False, True),
    (".podlink/target/app/x.py", False, True),
    ("src/.podlink-tmp-123-x", False, True),
    ("src/app.py", False, False),
    ("build.py", False, False),
]


@pytest.mark.parametrize(("path", "is_dir", "ignored"), CASES)
def test_rules_from_nested_files(tree: Path, path: str, is_dir: bool, ignored: bool) -> None:
    rules = IgnoreRules.for_tree(tree, excludes=[])
    rules.load_folder(tree, "sub")
    assert rules.is_ignored(path, is_dir=is_dir) is ignored
    assert rules.explain(path, is_dir=is_dir).ignored is ignored


EXPLAINED = {
    "a file matched in the top .gitignore": (
        "src/a.log",
        False,
        Verdict(True, "src/a.log", Rule(".gitignore", 1, "*.log")),
    ),
    "a file below an ignored folder: the folder's rule": (
        "build/lib/out.py",
        False,
        Verdict(True, "build", Rule(".gitignore", 2, "build/")),
    ),
    "a nested file's rule, with its own line": (
        "sub/q/x.txt",
        False,
        Verdict(True, "sub/q/x.txt", Rule("sub/.gitignore", 1, "x.txt")),
    ),
    "brought back by a negation": (
        "sub/keep.log",
        False,
        Verdict(False, "sub/keep.log", Rule("sub/.gitignore", 4, "!keep.log")),
    ),
    ".podlinkignore": (
        "secrets",
        True,
        Verdict(True, "secrets", Rule(".podlinkignore", 1, "secrets/")),
    ),
    "the exclude list": (
        "web/x.tmp",
        False,
        Verdict(True, "web/x.tmp", Rule("exclude", 2, "*.tmp")),
    ),
    "built in": (".git/HEAD", False, Verdict(True, ".git", Rule("built-in", None, ".git/"))),
    "synced, no rule at all": ("src/app.py", False, Verdict(False)),
}


@pytest.mark.parametrize(("path", "is_dir", "verdict"), EXPLAINED.values(), ids=EXPLAINED.keys())
def test_each_verdict_names_the_rule_and_where_it_is_written(
    tree: Path, path: str, is_dir: bool, verdict: Verdict
) -> None:
    rules = IgnoreRules.for_tree(tree, excludes=["node_modules/", "*.tmp"])
    rules.load_folder(tree, "sub")
    assert rules.explain(path, is_dir=is_dir) == verdict
    assert rules.is_built_in(verdict.matched, is_dir=verdict.matched != path or is_dir) is (
        path == ".git/HEAD"
    )


def test_config_excludes_and_extra_always(tmp_path: Path) -> None:
    rules = IgnoreRules.for_tree(
        tmp_path, excludes=["node_modules/", "*.tmp"], extra_always=["/t/"]
    )
    assert rules.is_ignored("web/node_modules/react/index.js")
    assert rules.is_ignored("a.tmp")
    assert rules.is_ignored("t/app/x")
    assert not rules.is_ignored("web/t/app/x")
    assert not rules.is_ignored("web/index.js")


def test_children_of_an_ignored_folder_stay_ignored_despite_negation(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("cache/\n!cache/keep.txt\n")
    rules = IgnoreRules.for_tree(tmp_path)
    # git cannot re-include a file when its parent folder is excluded; neither do we.
    assert rules.is_ignored("cache/keep.txt")


def test_loading_a_folder_twice_adds_nothing(tree: Path) -> None:
    rules = IgnoreRules.for_tree(tree)
    assert rules.load_folder(tree, "sub") is True
    assert rules.load_folder(tree, "sub") is False
    assert rules.loaded_files == {".gitignore", ".podlinkignore", "sub/.gitignore"}


NAME_PARTS = st.sampled_from(["a", "b", "build", ".git", "x.log", "*", "**", "?", "[ab]", "c d"])
PATTERNS = st.builds(
    lambda negated, anchored, parts, folder: (
        ("!" if negated else "")
        + ("/" if anchored else "")
        + "/".join(parts)
        + ("/" if folder else "")
    ),
    st.booleans(),
    st.booleans(),
    st.lists(NAME_PARTS, min_size=1, max_size=3),
    st.booleans(),
)
PATHS = st.builds(
    lambda parts, folder: "/".join(parts) + ("/" if folder else ""),
    st.lists(
        st.sampled_from(["a", "b", "build", ".git", "x.log", "c d", "ab"]), min_size=1, max_size=4
    ),
    st.booleans(),
)


@given(st.lists(PATTERNS, max_size=6), st.lists(PATHS, min_size=1, max_size=10))
def test_the_merged_matcher_answers_as_pathspec_does(lines: list[str], paths: list[str]) -> None:
    spec = GitIgnoreSpec.from_lines(lines)
    match = spec_matcher(spec)
    assert [match(path) for path in paths] == [bool(spec.match_file(path)) for path in paths]
