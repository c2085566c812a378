"""Fixtures shared by the integration tests: the environment of a `podlink` process, and a
local target (a module that tests another target kind defines its own ``target``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podlink.targets.local import LocalTarget


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment for a `podlink` process: its own state folder, a wide, known terminal."""
    return {
        **os.environ,
        "PODLINK_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "200",
        "TERM": "xterm",
    }


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[LocalTarget]:
    """A local target rooted in the test's own folder, connected."""
    local = LocalTarget(tmp_path / "target")
    await local.connect()
    yield local
    await local.close()
