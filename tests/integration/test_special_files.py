"""Files that are not plain files: pipes and sockets are named, sparse files keep their holes.

Through the real agent on the local target, driven by the sync engine.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podlink.agent.client import Agent
from podlink.targets.local import LocalTarget
from tests.helpers import engine_on

SPARSE_SIZE = 200 * 1024 * 1024


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[Agent, LocalTarget]]:
    target = LocalTarget(tmp_path / "target")
    await target.connect()
    started = await Agent.start(target)
    yield started, target
    await started.close()
    await target.close()


async def test_pipes_and_sockets_are_listed_as_not_synced_until_they_are_gone(
    tmp_path: Path, agent: tuple[Agent, LocalTarget]
) -> None:
    workspace = tmp_path / "workspace"
    (workspace / "run").mkdir(parents=True)
    (workspace / "app.py").write_text("print(1)\n")
    os.mkfifo(workspace / "run" / "pipe")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(workspace / "run" / "app.sock"))
    try:
        engine = engine_on(*agent, workspace)
        await engine.initial_sync()
        assert engine.problems == {
            "run/pipe": "special file, not synced: a named pipe (FIFO)",
            "run/app.sock": "special file, not synced: a socket",
        }
        app = Path(agent[1].target_path("/app"))
        assert sorted(path.name for path in app.rglob("*")) == ["app.py", "run"]

        (workspace / "run" / "pipe").unlink()
        await engine.sync_paths(["run/pipe"])
        assert list(engine.problems) == ["run/app.sock"]
    finally:
        listener.close()
    (workspace / "run" / "app.sock").unlink()
    await engine.rescan()
    assert engine.problems == {}


def digest(path: Path) -> str:
    hashed = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hashed.update(chunk)
    return hashed.hexdigest()


async def test_a_sparse_file_keeps_its_holes_in_the_target(
    tmp_path: Path, agent: tuple[Agent, LocalTarget]
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    sparse = workspace / "disk.img"
    with sparse.open("wb") as handle:
        handle.write(b"header" * 1000)
        handle.seek(100 * 1024 * 1024)
        handle.write(b"middle" * 1000)
        handle.truncate(SPARSE_SIZE)  # ends in a hole
    if sparse.stat().st_blocks * 512 > 1024 * 1024:
        pytest.skip("this file system does not keep holes")

    engine = engine_on(*agent, workspace)
    result = await engine.initial_sync()
    assert result.files_written == 1, engine.problems
    copy = Path(agent[1].target_path("/app")) / "disk.img"
    assert copy.stat().st_size == SPARSE_SIZE
    assert copy.stat().st_blocks * 512 < 1024 * 1024
    assert digest(copy) == digest(sparse)
