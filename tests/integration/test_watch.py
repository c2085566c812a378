"""The local watcher on a real file system: batches, and never a silently missed change."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from pathlib import Path

from watchdog.observers.inotify import InotifyObserver

from podlink.sync.watch import OVERFLOW_LOGGER, TreeWatcher


class Batches:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[set[str]] = asyncio.Queue()

    async def __call__(self, paths: set[str], first_seen: float) -> None:
        await self.queue.put(paths)

    async def until(self, wanted: str) -> set[str]:
        seen: set[str] = set()
        while wanted not in seen:
            seen |= await asyncio.wait_for(self.queue.get(), 10)
        return seen


class OutOfWatches(InotifyObserver):
    """Starts like the inotify observer on a machine whose watch limit is used up."""

    def start(self) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


async def test_saves_arrive_as_relative_paths(tmp_path: Path) -> None:
    batches = Batches()
    watcher = TreeWatcher(tmp_path, lambda path: path.startswith("skip"), batches)
    await watcher.start()
    try:
        (tmp_path / "skip.txt").write_text("ignored")
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "app.py").write_text("print(1)\n")
        seen = await batches.until("src/app.py")
        assert "skip.txt" not in seen
    finally:
        await watcher.stop()


async def test_running_out_of_watches_names_the_sysctl_and_polls(tmp_path: Path) -> None:
    batches = Batches()
    warnings: list[str] = []
    watcher = TreeWatcher(
        tmp_path,
        lambda path: False,
        batches,
        on_warning=warnings.append,
        observer_factory=OutOfWatches,
    )
    await watcher.start()
    try:
        assert watcher.polling
        assert len(warnings) == 1
        assert "fs.inotify.max_user_watches" in warnings[0]
        assert "sysctl" in warnings[0] and "polls" in warnings[0]
        (tmp_path / "later.txt").write_text("seen by polling")
        await batches.until("later.txt")
    finally:
        await watcher.stop()


async def test_an_overflowed_event_queue_asks_for_a_whole_tree_rescan(tmp_path: Path) -> None:
    batches = Batches()
    watcher = TreeWatcher(tmp_path, lambda path: False, batches)
    await watcher.start()
    try:
        # The kernel's IN_Q_OVERFLOW reaches us only as watchdog's warning, from its thread.
        await asyncio.to_thread(
            logging.getLogger(OVERFLOW_LOGGER).warning,
            "Inotify queue overflowed; filesystem events were lost",
        )
        assert "" in await batches.until("")
    finally:
        await watcher.stop()


async def test_a_barrier_returns_after_every_earlier_change_was_handed_over(
    tmp_path: Path,
) -> None:
    batches = Batches()
    watcher = TreeWatcher(tmp_path, lambda path: path.startswith(".podlink-tmp-"), batches)
    await watcher.start()
    try:
        for index in range(50):
            (tmp_path / f"saved{index}.txt").write_text("x")
        assert await watcher.barrier()
        await watcher.drain()
        seen: set[str] = set()
        while not batches.queue.empty():
            seen |= batches.queue.get_nowait()
        assert {f"saved{index}.txt" for index in range(50)} <= seen
        assert not [path for path in seen if "barrier" in path]
        assert not list(tmp_path.glob(".podlink-tmp-*"))
    finally:
        await watcher.stop()


async def test_a_slow_burst_of_deletions_is_handed_over_as_one_batch(tmp_path: Path) -> None:
    # A save goes after 4 ms of quiet; deletions a little further apart than that (an rm -rf
    # on a busy machine) must still reach the safety halt together, or the first of them
    # would be applied before the share they add up to is seen.
    names = {f"generated{index}.txt" for index in range(30)}
    for name in names:
        (tmp_path / name).write_text("x")
    batches = Batches()
    watcher = TreeWatcher(tmp_path, lambda path: False, batches)
    await watcher.start()
    try:
        for name in sorted(names):
            (tmp_path / name).unlink()
            await asyncio.sleep(0.01)  # the pace of the deleting program, not a wait
        first = await asyncio.wait_for(batches.queue.get(), 10)
        assert first == names
    finally:
        await watcher.stop()


async def test_a_deletion_holds_its_batch_longer_than_a_save_waits(tmp_path: Path) -> None:
    batches = Batches()
    watcher = TreeWatcher(
        tmp_path,
        lambda path: False,
        batches,
        removal_quiet_seconds=30.0,
        removal_max_delay_seconds=30.0,
    )
    await watcher.start()
    try:
        (tmp_path / "saved.txt").write_text("x")
        assert await asyncio.wait_for(batches.queue.get(), 10) == {"saved.txt"}
        (tmp_path / "saved.txt").unlink()
        (tmp_path / "after.txt").write_text("y")
        # Held behind the deletion's long quiet period: only a drain hands them over now.
        with contextlib.suppress(TimeoutError):
            early = await asyncio.wait_for(batches.queue.get(), 0.5)
            raise AssertionError(f"handed over before the deletion's quiet period: {early}")
        await watcher.drain()
        assert await asyncio.wait_for(batches.queue.get(), 10) == {"saved.txt", "after.txt"}
    finally:
        await watcher.stop()


async def test_a_polling_watcher_cannot_vouch_for_a_barrier(tmp_path: Path) -> None:
    watcher = TreeWatcher(
        tmp_path,
        lambda path: False,
        Batches(),
        on_warning=lambda text: None,
        observer_factory=OutOfWatches,
    )
    await watcher.start()
    try:
        assert not await watcher.barrier()
    finally:
        await watcher.stop()


def watched_inodes() -> set[int]:
    """The inodes this process's inotify instances watch, as the kernel lists them."""
    inodes: set[int] = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if os.readlink(fd) != "anon_inode:inotify":
                continue
            info = (Path("/proc/self/fdinfo") / fd.name).read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("inotify "):
                fields = dict(part.split(":", 1) for part in line.split()[1:] if ":" in part)
                inodes.add(int(fields["ino"], 16))
    return inodes


async def test_a_folder_never_synced_is_not_watched(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    target = tmp_path / ".podlink" / "target" / "app"
    (target / "lib").mkdir(parents=True)
    batches = Batches()
    watcher = TreeWatcher(
        tmp_path,
        lambda path: path == ".podlink" or path.startswith(".podlink/"),
        batches,
        is_unwatched=lambda folder: folder == ".podlink",
    )
    await watcher.start()
    try:
        (target / "later" / "deeper").mkdir(parents=True)
        (tmp_path / "src" / "new").mkdir()
        (tmp_path / "src" / "new" / "file.txt").write_text("x")
        await batches.until("src/new/file.txt")
        watched = watched_inodes()
        assert (tmp_path / "src").stat().st_ino in watched
        assert (tmp_path / "src" / "new").stat().st_ino in watched
        never = [tmp_path / ".podlink", target, target / "lib", target / "later" / "deeper"]
        assert [path for path in never if path.stat().st_ino in watched] == []
    finally:
        await watcher.stop()


async def test_a_folder_made_where_one_was_moved_away_is_watched(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "src").mkdir(parents=True)
    batches = Batches()
    watcher = TreeWatcher(root, lambda path: False, batches)
    await watcher.start()
    try:
        (root / "src" / "old").mkdir()
        await batches.until("src/old")
        (root / "src" / "old").rename(tmp_path / "moved-away")
        (root / "src" / "old").mkdir()
        (root / "src" / "old" / "new.txt").write_text("x")
        await batches.until("src/old/new.txt")
        assert (root / "src" / "old").stat().st_ino in watched_inodes()
    finally:
        await watcher.stop()
