"""The agreed state a new engine loads is kept to what today's ignore rules sync.

Through the real agent on the local target: a first engine syncs a tree and stores what the
sides agreed on; then an ignore file appears, and a second engine (a fresh daemon) starts
from that store.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podlink.agent.client import Agent
from podlink.sync.engine import SyncEngine
from podlink.targets.local import LocalTarget
from tests.helpers import engine_on


@contextlib.asynccontextmanager
async def engine_for(
    target: LocalTarget, workspace: Path, store: Path
) -> AsyncIterator[SyncEngine]:
    agent = await Agent.start(target)
    engine = engine_on(agent, target, workspace, store)
    try:
        yield engine
    finally:
        await engine.close()
        await agent.close()


@pytest.mark.parametrize("build_output_in_the_target", [True, False])
async def test_a_fresh_start_forgets_what_new_ignore_rules_leave_out(
    target: LocalTarget, tmp_path: Path, build_output_in_the_target: bool
) -> None:
    workspace = tmp_path / "workspace"
    for path in ("src/app.py", "build/out.bin", "build/deep/more.bin", "notes.log"):
        (workspace / path).parent.mkdir(parents=True, exist_ok=True)
        (workspace / path).write_text(f"{path}\n")
    store = tmp_path / "agreed"
    async with engine_for(target, workspace, store) as first:
        await first.initial_sync()
        assert {"build/out.bin", "notes.log"} <= first.agreed.entries.keys()

    (workspace / ".gitignore").write_text("build/\n*.log\n")
    remote = Path(target.target_path("/app"))
    if not build_output_in_the_target:
        # Whatever the target holds of it, an ignored path is not the sync's business.
        for path in ("build/out.bin", "build/deep/more.bin"):
            (remote / path).unlink()
    async with engine_for(target, workspace, store) as second:
        result = await second.initial_sync()
        kept = second.agreed.entries.keys()
    assert {"src", "src/app.py", ".gitignore"} <= kept
    assert not [path for path in kept if path.startswith("build") or path.endswith(".log")]
    assert not result.deleted
    assert (remote / "notes.log").read_text() == "notes.log\n"
    assert (remote / "build/out.bin").exists() is build_output_in_the_target
