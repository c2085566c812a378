"""The pure three-way reconcile, table-driven: ancestor, workspace and target in; the state both
sides should hold, conflicts and halts out."""

from __future__ import annotations

import msgspec
import pytest

from podlink.sync.core.pass_plan import PassPlan, plan_pass
from podlink.sync.core.plan import OperationKind, plan_mirror
from podlink.sync.core.reconcile import (
    MergeInput,
    Mode,
    paths_needing_digests_both_changed,
    reconcile,
    same_entry,
    touched_big_files,
)
from podlink.sync.core.safety import RootState, SafetyCheck
from podlink.sync.core.snapshot import Entry, Kind, Snapshot

STAMP = "20261126T120000"
UPLOAD, TWO_WAY = Mode.UPLOAD, Mode.TWO_WAY


def file(content: str = "v1", mode: int = 0o644) -> Entry:
    return Entry(kind=Kind.FILE, mode=mode, size=len(content), digest=f"sha:{content}")


def folder(mode: int = 0o755) -> Entry:
    return Entry(kind=Kind.DIRECTORY, mode=mode)


def link(target: str) -> Entry:
    return Entry(kind=Kind.SYMLINK, mode=0o777, link_target=target)


def run(ancestor: Snapshot, local: Snapshot, remote: Snapshot, mode: Mode = TWO_WAY) -> PassPlan:
    # The cases name a first sync by an empty ancestor.
    first = not ancestor
    sides = MergeInput(ancestor, local, remote, mode=mode, conflict_stamp=STAMP, first_sync=first)
    return plan_pass(sides, SafetyCheck())


def check(
    ancestor: Snapshot,
    local: Snapshot,
    remote: Snapshot,
    *,
    mode: Mode,
    allow_deletions: bool = False,
    local_root: RootState = RootState.NOT_SCANNED,
    remote_root: RootState = RootState.NOT_SCANNED,
    ancestor_files: int | None = None,
    max_delete_share: float = 0.5,
) -> PassPlan:
    """A pass planned with its safety check, as the engine plans one."""
    sides = MergeInput(ancestor, local, remote, mode=mode, conflict_stamp=STAMP)
    safety = SafetyCheck(
        local_root=local_root,
        remote_root=remote_root,
        ancestor_files=ancestor_files,
        max_delete_share=max_delete_share,
    )
    return plan_pass(sides, None if allow_deletions else safety)


def copy_of(path: str) -> str:
    return f"{path}.podlink-conflict-{STAMP}"


# name: (mode, ancestor, local, remote, merged, conflicted paths)
CASES: dict[str, tuple[Mode, Snapshot, Snapshot, Snapshot, Snapshot, list[str]]] = {
    "nothing anywhere": (TWO_WAY, {}, {}, {}, {}, []),
    "unchanged on both sides": (
        TWO_WAY,
        {"a": file()},
        {"a": file()},
        {"a": file()},
        {"a": file()},
        [],
    ),
    "edited in the workspace": (
        TWO_WAY,
        {"a": file()},
        {"a": file("v2")},
        {"a": file()},
        {"a": file("v2")},
        [],
    ),
    "edited in the target": (
        TWO_WAY,
        {"a": file()},
        {"a": file()},
        {"a": file("v2")},
        {"a": file("v2")},
        [],
    ),
    "edited the same way on both sides": (
        TWO_WAY,
        {"a": file()},
        {"a": file("v2")},
        {"a": file("v2")},
        {"a": file("v2")},
        [],
    ),
    "edited differently on both sides": (
        TWO_WAY,
        {"a": file()},
        {"a": file("mine")},
        {"a": file("theirs")},
        {"a": file("mine")},
        ["a"],
    ),
    "created differently on both sides": (
        TWO_WAY,
        {"x": file()},
        {"x": file(), "a": file("mine")},
        {"x": file(), "a": file("theirs")},
        {"x": file(), "a": file("mine")},
        ["a"],
    ),
    "deleted in the workspace": (TWO_WAY, {"a": file()}, {}, {"a": file()}, {}, []),
    "deleted in the target": (TWO_WAY, {"a": file()}, {"a": file()}, {}, {}, []),
    "deleted on both sides": (TWO_WAY, {"a": file()}, {}, {}, {}, []),
    "deleted in the workspace, edited in the target: the edit wins": (
        TWO_WAY,
        {"a": file()},
        {},
        {"a": file("v2")},
        {"a": file("v2")},
        [],
    ),
    "edited in the workspace, deleted in the target: the edit wins": (
        TWO_WAY,
        {"a": file()},
        {"a": file("v2")},
        {},
        {"a": file("v2")},
        [],
    ),
    "created in the target": (
        TWO_WAY,
        {"x": file()},
        {"x": file()},
        {"x": file(), "n": file()},
        {"x": file(), "n": file()},
        [],
    ),
    "mode changed in the target": (
        TWO_WAY,
        {"run.sh": file()},
        {"run.sh": file()},
        {"run.sh": file(mode=0o755)},
        {"run.sh": file(mode=0o755)},
        [],
    ),
    "modes changed differently, same content: no conflict, the workspace's mode": (
        TWO_WAY,
        {"run.sh": file()},
        {"run.sh": file(mode=0o700)},
        {"run.sh": file(mode=0o755)},
        {"run.sh": file(mode=0o700)},
        [],
    ),
    "symlink retargeted in the target": (
        TWO_WAY,
        {"l": link("a")},
        {"l": link("a")},
        {"l": link("b")},
        {"l": link("b")},
        [],
    ),
    "symlinks retargeted differently": (
        TWO_WAY,
        {"l": link("a")},
        {"l": link("b")},
        {"l": link("c")},
        {"l": link("b")},
        ["l"],
    ),
    "folder deleted in the workspace, a file in it edited in the target: folder comes back": (
        TWO_WAY,
        {"d": folder(), "d/x": file(), "d/y": file()},
        {},
        {"d": folder(), "d/x": file("v2"), "d/y": file()},
        {"d": folder(), "d/x": file("v2")},
        [],
    ),
    "folder replaced by a file in the workspace, file added in it in the target": (
        TWO_WAY,
        {"d": folder(), "d/old": file()},
        {"d": file("now a file")},
        {"d": folder(), "d/old": file(), "d/new": file("theirs")},
        {"d": file("now a file")},
        ["d"],
    ),
    "folder replaced by a file in the target, file edited in it in the workspace": (
        TWO_WAY,
        {"d": folder(), "d/x": file(), "d/y": file()},
        {"d": folder(), "d/x": file("mine"), "d/y": file()},
        {"d": file("now a file")},
        {"d": folder(), "d/x": file("mine")},
        ["d"],
    ),
    "file edited in the workspace, replaced by a folder in the target": (
        TWO_WAY,
        {"p": file()},
        {"p": file("mine")},
        {"p": folder(), "p/inner": file()},
        {"p": file("mine")},
        ["p"],
    ),
    "first sync: the workspace wins where both differ, target-only files come over": (
        TWO_WAY,
        {},
        {"a": file("mine"), "b": file()},
        {"a": file("theirs"), "c": file()},
        {"a": file("mine"), "b": file(), "c": file()},
        [],
    ),
    "upload: target edits are replaced": (
        UPLOAD,
        {"a": file()},
        {"a": file()},
        {"a": file("theirs"), "n": file()},
        {"a": file()},
        [],
    ),
    "upload: workspace deletion propagates": (UPLOAD, {"a": file()}, {}, {"a": file()}, {}, []),
    "upload: first sync mirrors": (
        UPLOAD,
        {},
        {"a": file()},
        {"a": file("old"), "stale": file()},
        {"a": file()},
        [],
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_reconcile(case: str) -> None:
    mode, ancestor, local, remote, merged, conflicted = CASES[case]
    result = run(ancestor, local, remote, mode)
    assert result.halt is None
    assert result.merged == merged
    assert [conflict.path for conflict in result.conflicts] == conflicted
    assert [copy.remote_path for copy in result.copies] == conflicted
    for conflict in result.conflicts:
        assert conflict.copy_path == copy_of(conflict.path)
        assert conflict.copy_path is not None and conflict.copy_path.split("/")[-1] in (
            conflict.message
        )


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_merged_state_is_a_consistent_tree(case: str) -> None:
    mode, ancestor, local, remote, _, _ = CASES[case]
    merged = run(ancestor, local, remote, mode).merged
    for path in merged:
        parent = path.rpartition("/")[0]
        assert not parent or merged[parent].kind is Kind.DIRECTORY, path


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_nothing_written_on_either_side_is_lost(case: str) -> None:
    """Every changed entry of either side is kept in the merged state or copied aside."""
    mode, ancestor, local, remote, _, _ = CASES[case]
    if mode is UPLOAD:
        return  # the target mirrors the workspace by definition
    result = run(ancestor, local, remote, mode)
    copied = [copy.remote_path for copy in result.copies]
    for side in (local, remote):
        for path, entry in side.items():
            if same_entry(ancestor.get(path), entry) or (not ancestor and side is remote):
                continue
            kept_entry = result.merged.get(path)
            # A mode is a setting, not written work: only content counts as lost.
            kept = kept_entry is not None and same_entry(
                msgspec.structs.replace(kept_entry, mode=entry.mode), entry
            )
            saved = any(path == c or path.startswith(c + "/") for c in copied)
            assert kept or saved, path


def test_upload_mode_lists_target_edits_before_replacing_them() -> None:
    result = run({"a": file()}, {"a": file()}, {"a": file("theirs"), "n": file()}, UPLOAD)
    assert result.overwritten == ("a", "n")


def test_an_agreed_empty_state_is_not_a_first_sync() -> None:
    result = reconcile(
        MergeInput({}, {"a": file("mine")}, {"a": file("theirs")}, TWO_WAY, conflict_stamp=STAMP)
    )
    assert [conflict.path for conflict in result.conflicts] == ["a"]


def test_upload_first_sync_reports_nothing() -> None:
    assert run({}, {"a": file()}, {"a": file("old")}, UPLOAD).overwritten == ()


def test_plans_for_both_sides_follow_from_the_merged_state() -> None:
    ancestor = {"a": file(), "b": file()}
    local = {"a": file("v2"), "b": file()}
    remote = {"a": file(), "b": file(), "c": file()}
    merged = run(ancestor, local, remote).merged
    upload = [(op.kind, op.path) for op in plan_mirror(merged, remote).operations]
    download = [(op.kind, op.path) for op in plan_mirror(merged, local).operations]
    assert upload == [(OperationKind.WRITE, "a")]
    assert download == [(OperationKind.WRITE, "c")]


def tree(count: int) -> dict[str, Entry]:
    return {f"f{index}": file(str(index)) for index in range(count)}


@pytest.mark.parametrize("state", [RootState.PRESENT, RootState.MISSING, RootState.NOT_A_FOLDER])
def test_halts_when_the_workspace_becomes_empty(state: RootState) -> None:
    result = check(tree(3), {}, tree(3), mode=UPLOAD, local_root=state)
    assert result.halt is not None
    assert result.halt.side == "workspace"
    assert "3 files" in result.halt.reason


@pytest.mark.parametrize("state", [RootState.PRESENT, RootState.MISSING])
def test_two_way_halts_when_the_target_becomes_empty(state: RootState) -> None:
    result = check(tree(3), tree(3), {}, mode=TWO_WAY, remote_root=state)
    assert result.halt is not None and result.halt.side == "target"
    assert "volume" in result.halt.reason


def test_upload_refills_an_empty_target_without_halting() -> None:
    result = check(tree(3), tree(3), {}, mode=UPLOAD, remote_root=RootState.MISSING)
    assert result.halt is None
    assert result.merged == tree(3)


def test_halts_when_a_pass_would_delete_more_than_the_allowed_share() -> None:
    ancestor = tree(100)
    local = {path: entry for path, entry in ancestor.items() if path not in tree(60)}
    result = check(ancestor, local, ancestor, mode=TWO_WAY, max_delete_share=0.5)
    assert result.halt is not None and result.halt.side == "target"
    assert "60 files (60%" in result.halt.reason


def test_a_share_below_the_limit_goes_through() -> None:
    ancestor = tree(100)
    local = {path: entry for path, entry in ancestor.items() if path not in tree(40)}
    result = check(ancestor, local, ancestor, mode=TWO_WAY)
    assert result.halt is None and len(result.merged) == 60


def test_small_trees_never_trip_the_share_check() -> None:
    result = check(tree(4), {}, tree(4), mode=TWO_WAY)
    assert result.halt is None and result.merged == {}


def test_the_share_counts_against_the_whole_ancestor_in_an_incremental_pass() -> None:
    ancestor = tree(30)
    result = check(ancestor, {}, ancestor, mode=TWO_WAY, ancestor_files=1000)
    assert result.halt is None


def test_resuming_applies_what_was_held_back() -> None:
    result = check(
        tree(3),
        tree(3),
        {},
        mode=TWO_WAY,
        remote_root=RootState.MISSING,
        allow_deletions=True,
    )
    assert result.halt is None and result.merged == {}


def test_equal_sizes_changed_on_both_sides_need_digests_in_two_way_mode() -> None:
    bare = Entry(kind=Kind.FILE, size=3, mtime_ns=1)
    local = {"a": Entry(kind=Kind.FILE, size=3, mtime_ns=2)}
    remote = {"a": Entry(kind=Kind.FILE, size=3, mtime_ns=3)}
    assert paths_needing_digests_both_changed({"a": bare}, local, remote, mode=TWO_WAY) == ["a"]
    assert paths_needing_digests_both_changed({"a": bare}, local, remote, mode=UPLOAD) == []
    assert paths_needing_digests_both_changed({"a": bare}, {"a": bare}, remote, mode=TWO_WAY) == []


def test_big_files_touched_since_the_agreed_state_are_asked_for_digests() -> None:
    big = 1 << 20
    agreed = {
        "touched": Entry(kind=Kind.FILE, size=big, mtime_ns=1, digest="d"),
        "small": Entry(kind=Kind.FILE, size=3, mtime_ns=1, digest="d"),
        "grown": Entry(kind=Kind.FILE, size=big, mtime_ns=1, digest="d"),
    }
    side = {
        "touched": Entry(kind=Kind.FILE, size=big, mtime_ns=2),
        "small": Entry(kind=Kind.FILE, size=3, mtime_ns=2),
        "grown": Entry(kind=Kind.FILE, size=big + 1, mtime_ns=2),
    }
    assert touched_big_files(agreed, side) == ["touched"]
