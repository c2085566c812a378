"""WATCH: changes made in the target reach the daemon, by inotify or by polling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from podlink.agent import agent as agent_module
from podlink.agent import wire
from podlink.agent.client import Agent, AgentError
from podlink.sync.core import names
from podlink.sync.core.snapshot import Kind
from podlink.targets.base import Target
from tests.integration.two_way_agent.support import Reported, sh

METHODS = ["auto", "polling"]
POLL_MS = 50


@pytest.mark.parametrize("method", METHODS)
async def test_every_kind_of_change_is_reported(
    agent: Agent, target: Target, root: str, method: str
) -> None:
    reported = Reported()
    started = await agent.watch(root, reported, method=method, poll_interval_ms=POLL_MS)
    assert started.method == ("inotify" if method == "auto" else "polling")
    assert started.warning is None

    await sh(target, "printf hello > a.txt", cwd=root)
    await reported.until(
        lambda: (entry := reported.present("a.txt")) is not None and entry.size == 5
    )
    assert (entry := reported.present("a.txt")) is not None and entry.kind is Kind.FILE

    await sh(target, "printf ' world' >> a.txt", cwd=root)
    await reported.until(
        lambda: (entry := reported.present("a.txt")) is not None and entry.size == 11
    )

    await sh(target, "chmod 751 a.txt", cwd=root)
    await reported.until(
        lambda: (entry := reported.present("a.txt")) is not None and entry.mode == 0o751
    )

    await sh(target, "mv a.txt b.txt", cwd=root)
    await reported.until(lambda: reported.gone("a.txt") and reported.present("b.txt") is not None)

    await sh(target, "ln -s b.txt link", cwd=root)
    await reported.until(lambda: reported.present("link") is not None)
    link = reported.view["link"]
    assert link is not None and (link.kind, link.link_target) == (Kind.SYMLINK, "b.txt")

    await sh(target, "rm b.txt", cwd=root)
    await reported.until(lambda: reported.gone("b.txt"))

    # A whole tree made in one go, faster than watches can be added to its folders.
    await sh(target, "mkdir -p new/a/b && echo f > new/a/b/f && echo g > new/g", cwd=root)
    made = ["new", "new/a", "new/a/b", "new/a/b/f", "new/g"]
    await reported.until(lambda: all(reported.present(path) for path in made))
    await sh(target, "echo later > new/a/b/later", cwd=root)  # the new folders are watched
    await reported.until(lambda: reported.present("new/a/b/later") is not None)

    await sh(target, "rm -rf new", cwd=root)
    await reported.until(lambda: reported.gone("new"))
    assert not any(report.overflow for report in reported.reports)


@pytest.mark.parametrize("method", METHODS)
async def test_temporary_files_of_the_agent_are_never_reported(
    agent: Agent, target: Target, root: str, method: str
) -> None:
    reported = Reported()
    await agent.watch(root, reported, method=method, poll_interval_ms=POLL_MS)
    temp = f"{names.TEMP_PREFIX}1234-a.txt"
    await sh(target, f"echo x > {temp} && mv {temp} a.txt && echo y > {temp}", cwd=root)
    await agent.write_bytes(root, "written.txt", b"by the agent")
    await sh(target, "echo done > marker", cwd=root)
    await reported.until(
        lambda: all(reported.present(p) for p in ("a.txt", "written.txt", "marker"))
    )
    assert not [path for path in reported.paths() if names.TEMP_PREFIX in path]


async def test_a_folder_moved_within_the_root_is_watched_where_it_went(
    agent: Agent, target: Target, root: str
) -> None:
    await sh(target, "mkdir -p old/sub && echo f > old/sub/f", cwd=root)
    reported = Reported()
    assert (await agent.watch(root, reported)).method == "inotify"

    await sh(target, "mv old moved", cwd=root)
    moved = ["moved", "moved/sub", "moved/sub/f"]
    await reported.until(lambda: reported.gone("old") and all(map(reported.present, moved)))
    await sh(target, "echo g > moved/sub/g && echo h > moved/h", cwd=root)
    await reported.until(lambda: all(map(reported.present, ["moved/sub/g", "moved/h"])))
    assert not [path for path in reported.paths() if path.startswith("old/")]


async def test_many_files_in_fresh_deep_folders_are_all_reported(
    agent: Agent, target: Target, root: str
) -> None:
    reported = Reported()
    await agent.watch(root, reported)
    script = (
        "for i in 1 2 3 4 5 6 7 8; do mkdir -p deep/$i/x/y/z; "
        "for j in 1 2 3 4 5 6 7 8 9 10; do echo $j > deep/$i/x/y/z/$j; echo $j > deep/$i/$j; "
        "done; done"
    )
    await sh(target, script, cwd=root)
    files = [
        f"deep/{i}/{rest}{j}" for i in range(1, 9) for j in range(1, 11) for rest in ("", "x/y/z/")
    ]
    await reported.until(lambda: all(map(reported.present, files)))


async def test_the_watch_limit_at_the_start_means_polling_with_a_warning(
    agent: Agent, target: Target, root: str
) -> None:
    await sh(target, "mkdir a b c", cwd=root)
    reported = Reported()
    started = await agent.watch(root, reported, max_watches=2, poll_interval_ms=POLL_MS)
    assert started.method == "polling"
    assert started.warning is not None and "fs.inotify.max_user_watches" in started.warning
    await sh(target, "echo x > b/x", cwd=root)
    await reported.until(lambda: reported.present("b/x") is not None)


async def test_the_watch_limit_reached_later_switches_to_polling_with_a_warning(
    agent: Agent, target: Target, root: str
) -> None:
    reported = Reported()
    started = await agent.watch(root, reported, max_watches=2, poll_interval_ms=POLL_MS)
    assert (started.method, started.warning) == ("inotify", None)
    await sh(target, "mkdir first", cwd=root)  # the second watch: still inotify
    await reported.until(lambda: reported.present("first") is not None)
    await sh(target, "mkdir second", cwd=root)
    await reported.until(lambda: any(report.warning for report in reported.reports))
    switch = next(report for report in reported.reports if report.warning)
    assert switch.overflow  # events may have been missed: the daemon must rescan
    assert "fs.inotify.max_user_watches" in (switch.warning or "")
    await sh(target, "echo x > second/x && echo y > first/y", cwd=root)
    await reported.until(lambda: all(map(reported.present, ["second/x", "first/y"])))


async def test_a_removed_root_is_reported_and_watched_by_polling(
    agent: Agent, target: Target, root: str
) -> None:
    await sh(target, "echo x > x", cwd=root)
    reported = Reported()
    await agent.watch(root, reported, poll_interval_ms=POLL_MS)
    await sh(target, f"rm -rf {root}")
    await reported.until(lambda: any(report.overflow for report in reported.reports))
    assert "removed or moved" in (next(r.warning for r in reported.reports if r.warning) or "")
    await sh(target, f"mkdir {root} && echo back > {root}/back")
    await reported.until(lambda: reported.present("back") is not None)


async def test_a_new_watch_replaces_the_last_and_unwatch_ends_it(
    agent: Agent, target: Target, root: str
) -> None:
    first, second = Reported(), Reported()
    await agent.mkdir(root, "one")
    await agent.mkdir(root, "two")
    await agent.watch(f"{root}/one", first)
    await sh(target, "echo a > one/a", cwd=root)
    await first.until(lambda: first.present("a") is not None)

    await agent.watch(f"{root}/two", second)
    reports_before = len(first.reports)
    await sh(target, "echo b > one/b && echo c > two/c", cwd=root)
    await second.until(lambda: second.present("c") is not None)
    assert len(first.reports) == reports_before

    await agent.unwatch()
    await sh(target, "echo d > two/d", cwd=root)
    third = Reported()
    await agent.watch(f"{root}/one", third)  # a later watch proves the stream moved on
    await sh(target, "echo e > one/e", cwd=root)
    await third.until(lambda: third.present("e") is not None)
    assert second.present("d") is None


async def test_watching_a_missing_root_is_an_error(agent: Agent, root: str) -> None:
    with pytest.raises(AgentError) as refused:
        await agent.watch(f"{root}/missing", Reported())
    assert refused.value.code == "notFound"
    assert agent.alive


def test_the_watch_ends_with_the_input_and_the_agent_exits(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"x")
    watch = json.dumps({"root": str(tmp_path)}).encode()
    frames = wire.HEADER.pack(len(watch), wire.MessageType.WATCH, 1) + watch
    ran = subprocess.run(
        [sys.executable, agent_module.__file__], input=frames, capture_output=True, timeout=30
    )
    assert ran.returncode == 0, ran.stderr
    length, kind, request_id = wire.HEADER.unpack(ran.stdout[: wire.HEADER_SIZE])
    assert (kind, request_id) == (wire.MessageType.OK, 1)
    assert json.loads(ran.stdout[wire.HEADER_SIZE : wire.HEADER_SIZE + length]) == {
        "method": "inotify"
    }


async def test_the_agents_own_synced_writes_are_not_echoed(
    agent: Agent, target: Target, root: str
) -> None:
    reported = Reported()
    await agent.watch(root, reported, method="auto")
    # Synced files carry their source's mtime: the daemon knows exactly what it wrote.
    await agent.write_bytes(
        root, "synced.txt", b"from the workspace", mtime_ns=1_700_000_000_000_000_000
    )
    many = [(f"many/{index}.txt", b"x" * index) for index in range(20)]
    for path, data in many:
        await agent.write_bytes(root, path, data, mtime_ns=1_700_000_000_000_000_000)
    await sh(target, "echo edited > synced.txt && echo done > marker", cwd=root)
    await reported.until(lambda: reported.present("marker") is not None)
    await reported.until(
        lambda: (entry := reported.present("synced.txt")) is not None and entry.size == 7
    )
    assert not [path for path in reported.paths() if path.startswith("many/") and path != "many"]
