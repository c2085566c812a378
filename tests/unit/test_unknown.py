"""What a first sync leaves in the target, and how later passes are kept from deleting it."""

from __future__ import annotations

import pytest

from podlink.sync.core.plan import OperationKind, folders_above, plan_mirror
from podlink.sync.core.snapshot import Entry, Kind
from podlink.sync.core.unknown import describe_left, unknown_paths, without_left


def file(content: str = "x") -> Entry:
    return Entry(kind=Kind.FILE, mode=0o644, size=len(content), digest=f"sha:{content}")


def folder() -> Entry:
    return Entry(kind=Kind.DIRECTORY, mode=0o755)


TARGET = {
    "app.py": file("old"),
    "notes.txt": file(),
    "data": folder(),
    "data/db": folder(),
    "data/db/rows.bin": file(),
    "src": folder(),
    "src/vendored.py": file(),
}
WORKSPACE = {"app.py": file("new"), "src": folder(), "src/main.py": file()}


def test_unknown_paths_are_what_only_the_target_holds() -> None:
    assert unknown_paths(WORKSPACE, TARGET) == {
        "notes.txt",
        "data",
        "data/db",
        "data/db/rows.bin",
        "src/vendored.py",
    }


def test_folders_above_reach_the_top_but_not_the_root() -> None:
    assert folders_above(["a/b/c.txt", "a/d", "e"]) == {"a", "a/b"}


@pytest.mark.parametrize(
    ("workspace", "kept_deletes"),
    [
        pytest.param(WORKSPACE, [], id="first-sync"),
        # The workspace deleted src/: its own file goes, the folder (holding a left file) stays.
        pytest.param({"app.py": file("new")}, ["src/main.py"], id="folder-deleted-later"),
    ],
)
def test_no_plan_deletes_a_left_path(workspace: dict[str, Entry], kept_deletes: list[str]) -> None:
    left = unknown_paths(WORKSPACE, TARGET)
    target = {**TARGET, "src/main.py": file()}

    seen = without_left(target, workspace.keys(), left, folders_above(left))
    deletes = [
        op.path for op in plan_mirror(workspace, seen).operations if op.kind is OperationKind.DELETE
    ]

    assert deletes == kept_deletes


def test_a_left_path_the_workspace_writes_is_seen_again() -> None:
    left = frozenset({"notes.txt"})

    seen = without_left(TARGET, {"notes.txt"}, left, folders_above(left))

    assert "notes.txt" in seen


def test_the_list_names_top_paths_and_marks_folders() -> None:
    left = unknown_paths(WORKSPACE, TARGET)

    assert describe_left(left, TARGET) == "data/, notes.txt, src/vendored.py"
    assert describe_left(left, TARGET, limit=1) == "data/ and 2 more"
