"""The two-way requests on the oldest Python the agent supports (3.8), where one is installed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from podlink.agent.client import Agent, AgentError, Expected
from tests.integration.test_agent import TargetWithPython, find_python
from tests.integration.two_way_agent.support import Reported


async def test_read_watch_preconditions_and_owner_on_python_3_8(tmp_path: Path) -> None:
    python = find_python("3.8")
    if python is None:
        pytest.skip("no Python 3.8 on this machine")
    target = TargetWithPython(tmp_path / "target", python)
    await target.connect()
    agent = await Agent.start(target)
    try:
        assert agent.hello.python.startswith("3.8.")
        root = str(target.root / "app")
        assert await agent.ensure_root(root, owner=f"{agent.hello.uid}")
        reported = Reported()
        assert (await agent.watch(root, reported)).method == "inotify"

        await agent.write_bytes(root, "src/a.txt", b"a" * 3000, expect=None)
        await reported.until(lambda: reported.present("src/a.txt") is not None)
        seen = reported.present("src/a.txt")
        assert seen is not None
        result = await agent.read_file(root, "src/a.txt", tmp_path / "copy")
        assert result.digest == hashlib.sha256(b"a" * 3000).hexdigest()
        assert (await agent.scan(root, hash=True)).entries["src/a.txt"].digest == result.digest

        await agent.rename(root, "src/a.txt", "b.txt", expect=Expected.entry(seen), expect_dst=None)
        await reported.until(lambda: reported.gone("src/a.txt") and bool(reported.present("b.txt")))
        with pytest.raises(AgentError) as refused:
            await agent.delete(root, "b.txt", expect=None)
        assert refused.value.code == "changed"

        await agent.unwatch()
        polled = Reported()
        assert (await agent.watch(root, polled, method="polling", poll_interval_ms=50)).method == (
            "polling"
        )
        (Path(root) / "c.txt").write_bytes(b"c")
        await polled.until(lambda: polled.present("c.txt") is not None)
    finally:
        await agent.close()
        await target.close()
