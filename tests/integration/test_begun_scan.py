"""The target's scan sent ahead of the initial sync, through the real agent on the local target."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from podlink.agent.client import Agent
from podlink.targets.local import LocalTarget
from tests.helpers import engine_on


async def test_the_initial_sync_takes_the_scan_begun_before_it(
    target: LocalTarget, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("print('here')\n")
    remote = Path(target.target_path("/app"))
    agent = await Agent.start(target)
    engine = engine_on(agent, target, workspace)
    try:
        engine.begin_remote_scan()
        result = await engine.initial_sync()
        assert result.files_written == 1
        assert (remote / "src" / "app.py").read_text() == "print('here')\n"
        # Taken once: the next full look scans again and finds what the first one wrote.
        assert (await engine.rescan()).files_written == 0
        assert "src/app.py" in engine.remote_view
    finally:
        await engine.close()
        await agent.close()


async def test_closing_before_the_initial_sync_leaves_no_request_unread(
    target: LocalTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    agent = await Agent.start(target)
    try:
        engine = engine_on(agent, target, workspace)
        before = asyncio.all_tasks()
        engine.begin_remote_scan()
        begun = asyncio.all_tasks() - before
        assert len(begun) == 2  # the root, and its scan
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            await engine.close()
            await asyncio.wait(begun, timeout=10)
        assert all(task.done() for task in begun)
        assert [record.message for record in caplog.records] == []
        # The agent's stream is still in step: a new request gets its own answer.
        scan = await agent.scan(target.target_path("/app"))
        assert scan.problems == []
    finally:
        await agent.close()
