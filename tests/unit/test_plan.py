"""The pure upload planner, table-driven: snapshots in, ordered operations out."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from podlink.sync.core.plan import (
    COMPARE_DIGESTS_FROM,
    Operation,
    OperationKind,
    Plan,
    detect_renames,
    paths_needing_digests,
    plan_mirror,
    restrict,
)
from podlink.sync.core.snapshot import Entry, Kind, Snapshot

MKDIR, WRITE, SYMLINK, CHMOD, DELETE = (
    OperationKind.MKDIR,
    OperationKind.WRITE,
    OperationKind.SYMLINK,
    OperationKind.CHMOD,
    OperationKind.DELETE,
)


def apply_plan(snapshot: Mapping[str, Entry], plan: Plan, source: Snapshot) -> dict[str, Entry]:
    """The target snapshot after ``plan`` succeeded, with entries taken from ``source``."""
    result = dict(snapshot)
    for operation in plan.operations:
        if operation.kind is OperationKind.DELETE:
            for path in restrict(result, [operation.path]):
                del result[path]
        elif operation.kind is OperationKind.RENAME:
            assert operation.source is not None
            del result[operation.source]
            result[operation.path] = source[operation.path]
        else:
            result[operation.path] = source[operation.path]
    return result


def file(content: str = "x", mode: int = 0o644) -> Entry:
    return Entry(kind=Kind.FILE, mode=mode, size=len(content), digest=f"sha:{content}")


def folder(mode: int = 0o755) -> Entry:
    return Entry(kind=Kind.DIRECTORY, mode=mode)


def link(target: str) -> Entry:
    return Entry(kind=Kind.SYMLINK, mode=0o777, link_target=target)


def ops(*items: tuple[OperationKind, str]) -> list[tuple[OperationKind, str]]:
    return list(items)


PLAN_CASES = {
    "nothing on either side": ({}, {}, ops()),
    "identical trees": ({"a": file(), "d": folder()}, {"a": file(), "d": folder()}, ops()),
    "new file in new folder": (
        {"d": folder(), "d/a.py": file()},
        {},
        ops((MKDIR, "d"), (WRITE, "d/a.py")),
    ),
    "nested folders are created shallowest first": (
        {"a": folder(), "a/b": folder(), "a/b/c": folder()},
        {},
        ops((MKDIR, "a"), (MKDIR, "a/b"), (MKDIR, "a/b/c")),
    ),
    "changed content": ({"a": file("new")}, {"a": file("old")}, ops((WRITE, "a"))),
    "same size, different digest": ({"a": file("abc")}, {"a": file("xyz")}, ops((WRITE, "a"))),
    "mode only": ({"run.sh": file(mode=0o755)}, {"run.sh": file()}, ops((CHMOD, "run.sh"))),
    "folder mode only": ({"d": folder(0o700)}, {"d": folder()}, ops((CHMOD, "d"))),
    "removed subtree is one delete": (
        {},
        {"d": folder(), "d/a": file(), "d/e": folder(), "d/e/b": file()},
        ops((DELETE, "d")),
    ),
    "removed file beside kept ones": (
        {"d": folder(), "d/keep": file()},
        {"d": folder(), "d/keep": file(), "d/gone": file()},
        ops((DELETE, "d/gone")),
    ),
    "file replaced by folder": (
        {"p": folder(), "p/inner": file()},
        {"p": file()},
        ops((DELETE, "p"), (MKDIR, "p"), (WRITE, "p/inner")),
    ),
    "folder replaced by file": (
        {"p": file()},
        {"p": folder(), "p/inner": file()},
        ops((DELETE, "p"), (WRITE, "p")),
    ),
    "new symlink": ({"l": link("a")}, {}, ops((SYMLINK, "l"))),
    "retargeted symlink": ({"l": link("b")}, {"l": link("a")}, ops((SYMLINK, "l"))),
    "symlink replaced by file": ({"l": file()}, {"l": link("a")}, ops((DELETE, "l"), (WRITE, "l"))),
    "deletes come after writes": (
        {"new": file()},
        {"old": file()},
        ops((WRITE, "new"), (DELETE, "old")),
    ),
}


@pytest.mark.parametrize("case", list(PLAN_CASES), ids=list(PLAN_CASES))
def test_plan_mirror(case: str) -> None:
    source, target, expected = PLAN_CASES[case]
    plan = plan_mirror(source, target)
    assert [(op.kind, op.path) for op in plan.operations] == expected


@pytest.mark.parametrize("case", list(PLAN_CASES), ids=list(PLAN_CASES))
def test_applying_the_plan_yields_the_source(case: str) -> None:
    source, target, _ = PLAN_CASES[case]
    after = apply_plan(target, plan_mirror(source, target), source)
    assert after == source


def test_write_carries_mode_and_size() -> None:
    plan = plan_mirror({"a.sh": file("hello", mode=0o750)}, {})
    assert plan.operations == (Operation(WRITE, "a.sh", mode=0o750, size=5),)
    assert plan.bytes_to_send == 5
    assert plan.count(WRITE) == 1


BIG = COMPARE_DIGESTS_FROM


def test_digests_are_requested_only_for_equal_sizes_of_big_files() -> None:
    bare = Entry(kind=Kind.FILE, size=BIG)
    small = Entry(kind=Kind.FILE, size=3)
    source = {
        "same": bare,
        "bigger": Entry(kind=Kind.FILE, size=BIG + 1),
        "new": bare,
        "small": small,
        "d": folder(),
    }
    target = {"same": bare, "bigger": bare, "small": small, "d": folder()}
    assert paths_needing_digests(source, target) == ["same"]


def test_small_files_without_a_quick_match_are_sent_again_without_reading_them() -> None:
    small = Entry(kind=Kind.FILE, size=3)
    assert [(op.kind, op.path) for op in plan_mirror({"a": small}, {"a": small}).operations] == [
        (WRITE, "a")
    ]


def test_equal_big_sizes_without_digests_are_a_programming_error() -> None:
    bare = Entry(kind=Kind.FILE, size=BIG)
    with pytest.raises(ValueError, match="digests"):
        plan_mirror({"a": bare}, {"a": bare})


def test_restrict_keeps_roots_and_descendants_only() -> None:
    snapshot = {"a": folder(), "a/b": file(), "ab": file(), "c": file()}
    assert set(restrict(snapshot, ["a"])) == {"a", "a/b"}
    assert set(restrict(snapshot, ["a/b", "c"])) == {"a/b", "c"}
    assert set(restrict(snapshot, [""])) == set(snapshot)


def test_equal_size_and_mtime_is_a_quick_match_without_digests() -> None:
    synced = Entry(kind=Kind.FILE, size=BIG, mtime_ns=1_700_000_000_000_000_000)
    touched = Entry(kind=Kind.FILE, size=BIG, mtime_ns=1_700_000_000_000_000_001)
    assert plan_mirror({"a": synced}, {"a": synced}).is_empty
    assert paths_needing_digests({"a": synced}, {"a": synced}) == []
    assert paths_needing_digests({"a": touched}, {"a": synced}) == ["a"]


def moved(inode: int, content: str = "x", mtime_ns: int = 7) -> Entry:
    return Entry(kind=Kind.FILE, mode=0o644, size=len(content), mtime_ns=mtime_ns, inode=inode)


def test_a_moved_file_becomes_a_rename() -> None:
    agreed = {"old.py": moved(11)}
    target = {"old.py": moved(99)}  # the target's own inode never matters
    source = {"new.py": moved(11)}
    plan = detect_renames(plan_mirror(source, target), source, target, agreed)
    assert [(op.kind, op.path, op.source) for op in plan.operations] == [
        (OperationKind.RENAME, "new.py", "old.py"),
    ]
    assert apply_plan(target, plan, source) == source


def test_files_of_a_moved_folder_are_renamed_one_by_one() -> None:
    agreed = {"a": folder(), "a/x": moved(1), "a/y": moved(2, "yy")}
    target = {"a": folder(), "a/x": moved(5), "a/y": moved(6, "yy")}
    source = {"b": folder(), "b/x": moved(1), "b/y": moved(2, "yy")}
    plan = detect_renames(plan_mirror(source, target), source, target, agreed)
    assert [(op.kind, op.path) for op in plan.operations] == [
        (MKDIR, "b"),
        (OperationKind.RENAME, "b/x"),
        (OperationKind.RENAME, "b/y"),
        (DELETE, "a"),
    ]


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ({"new.py": moved(11, "changed")}, "content changed on the way"),
        ({"new.py": moved(12)}, "another inode: a copy, not a move"),
        ({"new.py": moved(11), "other.py": moved(11)}, "two candidates"),
    ],
)
def test_no_rename_without_a_clear_match(source: dict[str, Entry], why: str) -> None:
    agreed = {"old.py": moved(11)}
    target = {"old.py": moved(99)}
    plan = detect_renames(plan_mirror(source, target), source, target, agreed)
    renames = [op for op in plan.operations if op.kind is OperationKind.RENAME]
    assert len(renames) <= (1 if why == "two candidates" else 0), why


def test_a_target_copy_changed_since_is_not_moved() -> None:
    agreed = {"old.py": moved(11)}
    target = {"old.py": moved(99, mtime_ns=8)}
    source = {"new.py": moved(11)}
    plan = detect_renames(plan_mirror(source, target), source, target, agreed)
    assert OperationKind.RENAME not in [op.kind for op in plan.operations]
