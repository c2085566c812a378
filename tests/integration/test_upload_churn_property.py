"""Churn in upload mode: 400 random create/modify/rename/delete/chmod/symlink operations on a
small tree, as editors, formatters and generators make them, flushed every 25. After every
flush the target equals the workspace and the sync never paused: files created and deleted
again are not work a safety halt protects. Runs a real session (watcher, engine, agent) on
the local target and on a Docker container, drawing new examples on every run.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podlink.config import load_config
from podlink.session import Session
from tests.integration.test_two_way_property import ContainerSide, FolderSide, Side
from tests.recording import RecordingListener
from tests.targets import docker_client, start_test_container

STEPS = 400
FLUSH_EVERY = 25
EXAMPLES = int(os.environ.get("PODLINK_PROPERTY_EXAMPLES", "3"))
STABLE = [f"src/module{index}.py" for index in range(12)]  # files nobody deletes
# Fewer paths than the 20 files a halt needs: however slow a run, the files that existed before
# a 10-second window and were deleted within it can never add up to a halt on their own.
CHURN = ["a", "b", "c", "gen/a", "gen/b", "gen/c/a", "gen/c/b", "tmp~", "tmp.swp", ".#a", "d/a"]
CHURN += ["d/b", "d/c", "e.pyc", "f.orig", "g"]
LINK_TARGETS = ["a", "gen", "missing", "./b"]

KINDS = ["write", "write", "write", "delete", "delete", "rename", "chmod", "symlink"]


def operations_from(seed: int) -> list[dict[str, Any]]:
    """400 operations drawn from ``seed``. Hypothesis draws the seeds: drawing the operations
    themselves makes its first, simplest examples 400 writes of one file, which churn nothing.
    """
    chance = random.Random(seed)
    operations = []
    for serial in range(1, STEPS + 1):
        kind = chance.choice(KINDS)
        path = chance.choice(CHURN + STABLE[:5] if kind in ("write", "chmod") else CHURN)
        if kind == "write":
            data = f"{serial}\n".encode().hex() * chance.randint(1, 4)
            operations.append({"op": "write", "path": path, "data": data})
        elif kind == "delete":
            doomed = chance.choice([*CHURN, "gen", "d"])
            operations.append({"op": "delete", "path": doomed})
        elif kind == "rename":
            operations.append({"op": "rename", "path": path, "to": chance.choice(CHURN)})
        elif kind == "chmod":
            operations.append({"op": "chmod", "path": path, "executable": chance.random() < 0.5})
        else:
            link = chance.choice(LINK_TARGETS)
            operations.append({"op": "symlink", "path": path, "target": link})
    return operations


SEEDS = st.integers(min_value=0, max_value=2**63)


def synced(listing: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {path: entry for path, entry in listing.items() if not path.startswith(".podlink")}


async def run_churn(
    workspace: Path, target_section: str, remote: Side, operations: list[dict[str, Any]]
) -> None:
    local = FolderSide(workspace)
    for path in STABLE:
        local.edit({"op": "write", "path": path, "data": f"# {path}\n".encode().hex()})
    (workspace / "podlink.yaml").write_text(
        f"version: 1\ntarget:\n{target_section}sync:\n  - local: .\n    remote: /app\n"
    )
    session = Session(load_config(workspace), RecordingListener())
    await session.start()
    try:
        for serial, operation in enumerate(operations, 1):
            local.edit(operation)
            if serial % FLUSH_EVERY == 0:
                status = await session.flush(30)
                assert status.state != "paused", status.problems
                assert synced(await asyncio.to_thread(remote.listing)) == synced(local.listing())
    finally:
        await session.stop()


def property_settings(examples: int) -> Any:
    # Health checks stay on; no example database and no derandomizing: new examples each run.
    return settings(max_examples=examples, deadline=None, database=None, derandomize=False)


@pytest.mark.timeout(900)
@property_settings(EXAMPLES)
@given(seed=SEEDS)
def test_upload_churn_never_pauses_and_the_target_equals_the_workspace_local(seed: int) -> None:
    operations = operations_from(seed)
    with tempfile.TemporaryDirectory() as temporary:
        workspace = Path(temporary) / "workspace"
        workspace.mkdir()
        section = f"  local:\n    root: {Path(temporary) / 'target'}\n"
        remote = FolderSide(Path(temporary) / "target" / "app")
        asyncio.run(run_churn(workspace, section, remote, operations))


@pytest.fixture(scope="module")
def container() -> Iterator[Any]:
    started = start_test_container(docker_client())
    yield started
    started.remove(force=True)


@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_upload_churn_never_pauses_and_the_target_equals_the_workspace_docker(
    container: Any,
) -> None:
    @property_settings(max(1, EXAMPLES - 1))
    @given(seed=SEEDS)
    def churn(seed: int) -> None:
        operations = operations_from(seed)
        container.exec_run(["rm", "-rf", "/app"])
        with tempfile.TemporaryDirectory() as temporary:
            workspace = Path(temporary) / "workspace"
            workspace.mkdir()
            section = f"  docker:\n    container: {container.name}\n"
            remote = ContainerSide(container, "/app")
            asyncio.run(run_churn(workspace, section, remote, operations))

    churn()
