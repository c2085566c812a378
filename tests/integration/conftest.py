"""Fixtures shared by the tests that run the `podlink` command as a real process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment for a `podlink` process: its own state folder, a wide, known terminal."""
    return {
        **os.environ,
        "PODLINK_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "200",
        "TERM": "xterm",
    }
