"""WRITE_MANY over a real agent process: many small files in one round trip."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podlink.agent.client import Agent
from podlink.targets.local import LocalTarget

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    target = LocalTarget(tmp_path / "target")
    await target.connect()
    started = await Agent.start(target)
    yield started
    await started.close()
    await target.close()


def make_sources(folder: Path, count: int) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for index in range(count):
        relative = f"pkg{index % 7}/sub{index % 3}/file {index} ü.py"
        source = folder / relative
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_bytes(bytes([index % 256]) * (index * 37 % 5000))
        source.chmod(0o755 if index % 5 == 0 else 0o640)
        os.utime(source, ns=(1_600_000_000_123_456_789 + index, 1_600_000_000_123_456_789 + index))
        files.append((relative, source))
    return files


async def test_many_files_arrive_with_content_mode_and_mtime(agent: Agent, tmp_path: Path) -> None:
    root = tmp_path / "target" / "app"
    await agent.ensure_root(str(root))
    sources = make_sources(tmp_path / "src", 700)
    outcome = await agent.write_many(str(root), sources)
    assert outcome.failed == [] and outcome.vanished == []
    assert len(outcome.written) == 700
    for relative, source in sources:
        written = root / relative
        assert written.read_bytes() == source.read_bytes()
        local, remote = source.stat(), written.stat()
        assert stat.S_IMODE(remote.st_mode) == stat.S_IMODE(local.st_mode)
        assert remote.st_mtime_ns == local.st_mtime_ns
    assert not [p for p in root.rglob(".podlink-tmp-*")]


async def test_one_bad_file_fails_alone(agent: Agent, tmp_path: Path) -> None:
    root = tmp_path / "target" / "app"
    (root / "in_the_way").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "linked").symlink_to(outside)
    sources = make_sources(tmp_path / "src", 3)
    blocked = tmp_path / "src" / "blocked.txt"
    blocked.write_text("x" * 100)
    listing = [
        sources[0],
        ("in_the_way", blocked),
        sources[1],
        ("../escape.txt", blocked),
        ("linked/through.txt", blocked),
        ("gone.txt", tmp_path / "src" / "never-existed"),
        sources[2],
    ]
    outcome = await agent.write_many(str(root), listing)
    failed = {path: code for path, code, _ in outcome.failed}
    assert failed == {
        "in_the_way": "isDirectory",
        "../escape.txt": "escape",
        "linked/through.txt": "escape",
    }
    assert outcome.vanished == ["gone.txt"]
    assert sorted(f.path for f in outcome.written) == sorted(p for p, _ in sources)
    for relative, source in sources:
        assert (root / relative).read_bytes() == source.read_bytes()
    assert not (tmp_path / "target" / "escape.txt").exists()
    assert list(outside.iterdir()) == []
    # the stream is still in step: a plain request right after works
    assert await agent.write_bytes(str(root), "after.txt", b"still fine")
