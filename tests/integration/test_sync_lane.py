"""The lane: a save made while a bulk pass is still sending goes beside it, not behind it.

Through the real agent on the local target, driven by the sync engine. The bulk pass's
transport holds its first batch of files until the test lets it go, so "still sending" is a
state the test controls instead of a race with the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from podlink.agent.client import Agent, WriteManyResult
from podlink.agent.transport import FileTransport
from podlink.sync.engine import BULK_OPERATIONS, SyncEngine
from podlink.sync.ignore import IgnoreRules
from podlink.sync.watch import BARRIER_PREFIX, PRIORITY_MAX_PATHS, TreeWatcher
from podlink.targets.base import TargetUnavailable
from podlink.targets.local import LocalTarget

BULK_FILES = 4 * BULK_OPERATIONS
WAIT_SECONDS = 20


class HeldAgent:
    """The real agent, except that batches of files wait until ``release``."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self.batch_waiting = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def write_many(self, root: str, files: Sequence[Any]) -> WriteManyResult:
        self.batch_waiting.set()
        await self._released.wait()
        return await self._agent.write_many(root, files)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    (folder / "src").mkdir(parents=True)
    (folder / "docs").mkdir()
    (folder / "docs" / "index.md").write_text("# docs\n")
    return folder


async def engine_in(
    target: LocalTarget, workspace: Path
) -> tuple[SyncEngine, HeldAgent, list[FileTransport]]:
    """An engine whose main transport holds its batches, and the lane transports it opened."""
    held = HeldAgent(await Agent.start(target))
    lanes: list[FileTransport] = []

    async def open_lane() -> FileTransport:
        lanes.append(await Agent.start(target))
        return lanes[-1]

    transport: Any = held
    engine = SyncEngine(
        transport,
        workspace,
        target.target_path("/app"),
        lambda: IgnoreRules.for_tree(workspace),
        open_lane=open_lane,
    )
    return engine, held, lanes


def write_bulk(workspace: Path, version: str) -> list[str]:
    paths = [f"src/module{index}.py" for index in range(BULK_FILES)]
    for path in paths:
        (workspace / path).write_text(f"{version} = {path!r}\n")
    return paths


async def test_a_save_during_the_initial_sync_is_in_the_target_before_the_bulk(
    target: LocalTarget, workspace: Path
) -> None:
    write_bulk(workspace, "first")
    engine, held, lanes = await engine_in(target, workspace)
    remote = Path(target.target_path("/app"))
    initial = asyncio.ensure_future(engine.initial_sync())
    try:
        await asyncio.wait_for(held.batch_waiting.wait(), WAIT_SECONDS)
        (workspace / "fresh.py").write_text("saved during the initial sync\n")
        result = await asyncio.wait_for(engine.sync_paths(["fresh.py"]), WAIT_SECONDS)

        assert (remote / "fresh.py").read_text() == "saved during the initial sync\n"
        assert result.files_written == 1
        assert not initial.done()
        assert not (remote / "src" / "module0.py").exists()
        assert len(lanes) == 1
    finally:
        held.release()
        await initial
    assert sorted(path.name for path in (remote / "src").iterdir()) == sorted(
        path.name for path in (workspace / "src").iterdir()
    )
    assert "fresh.py" in engine.agreed.entries
    again = await engine.rescan()
    assert (again.files_written, again.deleted) == (0, 0)
    await engine.close()
    await held.close()


async def test_a_save_the_bulk_pass_is_writing_waits_for_it_and_wins(
    target: LocalTarget, workspace: Path
) -> None:
    engine, held, lanes = await engine_in(target, workspace)
    held.release()
    await engine.initial_sync()
    remote = Path(target.target_path("/app"))
    held._released.clear()
    held.batch_waiting.clear()

    paths = write_bulk(workspace, "switched")
    switch = asyncio.ensure_future(engine.sync_paths(paths))
    finished: list[str] = []
    switch.add_done_callback(lambda _: finished.append("switch"))
    await asyncio.wait_for(held.batch_waiting.wait(), WAIT_SECONDS)
    # The same file again, and a file in a folder the target does not have yet: both would
    # race the bulk pass, so both go after it.
    (workspace / "src" / "module0.py").write_text("saved again\n")
    (workspace / "new").mkdir()
    (workspace / "new" / "file.py").write_text("in a new folder\n")
    same = asyncio.ensure_future(engine.sync_paths(["src/module0.py"]))
    same.add_done_callback(lambda _: finished.append("same file"))
    fresh_folder = asyncio.ensure_future(engine.sync_paths(["new", "new/file.py"]))
    fresh_folder.add_done_callback(lambda _: finished.append("new folder"))
    # A folder that is in the target and that the bulk pass leaves alone: it passes.
    (workspace / "docs" / "index.md").write_text("# docs, edited\n")
    await asyncio.wait_for(engine.sync_paths(["docs/index.md"]), WAIT_SECONDS)
    assert (remote / "docs" / "index.md").read_text() == "# docs, edited\n"
    assert finished == []

    held.release()
    await asyncio.wait_for(asyncio.gather(switch, same, fresh_folder), WAIT_SECONDS)
    assert finished[0] == "switch"
    assert (remote / "src" / "module0.py").read_text() == "saved again\n"
    assert (remote / "src" / "module1.py").read_text() == "switched = 'src/module1.py'\n"
    assert (remote / "new" / "file.py").read_text() == "in a new folder\n"
    assert len(lanes) == 1
    await engine.close()
    await held.close()


class BlockedWatcher:
    """A watcher whose first batch stays running until the test lets it finish."""

    def __init__(self, root: Path) -> None:
        self.may_go = False
        self.first_finish = asyncio.Event()
        self.batches: asyncio.Queue[set[str]] = asyncio.Queue()
        self.watcher = TreeWatcher(
            root,
            # As the sync rules do: the barrier's marker file is never synced.
            lambda path: path.startswith(BARRIER_PREFIX),
            self._on_batch,
            may_go_first=lambda paths: self.may_go,
        )

    async def _on_batch(self, paths: set[str], first_seen: float) -> None:
        await self.batches.put(paths)
        if "first.txt" in paths:
            await self.first_finish.wait()

    async def start(self, root: Path) -> None:
        await self.watcher.start()
        (root / "first.txt").write_text("a batch that takes long")
        assert "first.txt" in await asyncio.wait_for(self.batches.get(), WAIT_SECONDS)

    async def stop(self) -> None:
        self.first_finish.set()
        await self.watcher.stop()


async def test_a_save_goes_while_a_batch_is_still_being_applied(tmp_path: Path) -> None:
    blocked = BlockedWatcher(tmp_path)
    blocked.may_go = True
    await blocked.start(tmp_path)
    try:
        (tmp_path / "saved.txt").write_text("a save")
        assert await asyncio.wait_for(blocked.batches.get(), WAIT_SECONDS) == {"saved.txt"}
        assert not blocked.first_finish.is_set()
    finally:
        await blocked.stop()


async def test_only_the_newest_changes_apart_from_the_older_ones_go_first(
    tmp_path: Path,
) -> None:
    blocked = BlockedWatcher(tmp_path)
    await blocked.start(tmp_path)
    try:
        (tmp_path / "pkg").mkdir()
        for index in range(PRIORITY_MAX_PATHS + 2):
            (tmp_path / "pkg" / f"module{index}.py").write_text(f"value = {index}\n")
        (tmp_path / "top.txt").write_text("saved last")
        assert await blocked.watcher.barrier()
        waiting = blocked.watcher.pending_count

        # The newest few include files in pkg/, whose folder is still waiting to go: only
        # the newest one, which is elsewhere, may pass.
        blocked.may_go = True
        blocked.watcher.offer_priority()
        assert blocked.watcher.pending_count == waiting - 1
        assert await asyncio.wait_for(blocked.batches.get(), WAIT_SECONDS) == {"top.txt"}

        (tmp_path / "pkg" / "late.py").write_text("saved into a folder still waiting")
        assert await blocked.watcher.barrier()
        blocked.watcher.offer_priority()
        assert blocked.watcher.pending_count == waiting  # top.txt went, late.py waits

        blocked.first_finish.set()
        rest = await asyncio.wait_for(blocked.batches.get(), WAIT_SECONDS)
        assert {"pkg", "pkg/late.py", "pkg/module0.py"} <= rest
    finally:
        await blocked.stop()


async def test_a_lane_that_cannot_start_shares_the_main_transport(
    target: LocalTarget, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_bulk(workspace, "first")
    held = HeldAgent(await Agent.start(target))

    async def cannot_open() -> FileTransport:
        raise TargetUnavailable("the container stopped accepting exec")

    transport: Any = held
    engine = SyncEngine(
        transport,
        workspace,
        target.target_path("/app"),
        lambda: IgnoreRules.for_tree(workspace),
        open_lane=cannot_open,
    )
    remote = Path(target.target_path("/app"))
    initial = asyncio.ensure_future(engine.initial_sync())
    await asyncio.wait_for(held.batch_waiting.wait(), WAIT_SECONDS)
    (workspace / "fresh.py").write_text("saved while the lane could not start\n")
    save = asyncio.ensure_future(engine.sync_paths(["fresh.py"]))
    held.release()
    await asyncio.wait_for(asyncio.gather(initial, save), WAIT_SECONDS)
    assert (remote / "fresh.py").read_text() == "saved while the lane could not start\n"
    assert "the container stopped accepting exec" in caplog.text
    assert (await engine.rescan()).files_written == 0
    await engine.close()
    await held.close()


async def test_a_deletion_never_passes_the_bulk_pass(target: LocalTarget, workspace: Path) -> None:
    # The safety halt judges a burst of deletions whole: a few of them must not slip past
    # it beside a bulk pass whose own deletions are not counted yet.
    (workspace / "docs" / "old.md").write_text("to be deleted\n")
    engine, held, _ = await engine_in(target, workspace)
    held.release()
    await engine.initial_sync()
    remote = Path(target.target_path("/app"))
    held._released.clear()
    held.batch_waiting.clear()

    switch = asyncio.ensure_future(engine.sync_paths(write_bulk(workspace, "switched")))
    finished: list[str] = []
    switch.add_done_callback(lambda _: finished.append("switch"))
    await asyncio.wait_for(held.batch_waiting.wait(), WAIT_SECONDS)
    (workspace / "docs" / "old.md").unlink()
    assert not engine.may_pass_bulk({"docs/old.md"})
    deletion = asyncio.ensure_future(engine.sync_paths(["docs/old.md"]))
    deletion.add_done_callback(lambda _: finished.append("deletion"))
    (workspace / "docs" / "index.md").write_text("# an edit still passes\n")
    await asyncio.wait_for(engine.sync_paths(["docs/index.md"]), WAIT_SECONDS)
    assert (remote / "docs" / "old.md").exists()

    held.release()
    await asyncio.wait_for(asyncio.gather(switch, deletion), WAIT_SECONDS)
    assert finished == ["switch", "deletion"]
    assert not (remote / "docs" / "old.md").exists()
    await engine.close()
    await held.close()
