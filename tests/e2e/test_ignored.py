"""What the sync leaves out, through a real LSP client: the session's count, podlink/explainPath,
and a failing test that names a file an ignore rule keeps out of the target."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Daemon

pytestmark = pytest.mark.asyncio


@pytest.fixture
def sdist_like(workspace: Path) -> Path:
    """A project whose .gitignore lists *.egg-info, with a test that reads its metadata."""
    command = json.dumps([sys.executable, "-m", "pytest", "-q"])
    (workspace / "podlink.yaml").write_text(
        "version: 1\nsync:\n  - local: .\n    remote: /app\n    exclude: ['*.log']\n"
        f"test:\n  command: {command}\n"
    )
    (workspace / ".gitignore").write_text("__pycache__/\n*.egg-info\n")
    (workspace / "hello.egg-info").mkdir()
    (workspace / "hello.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\n")
    (workspace / "tests" / "test_metadata.py").write_text(
        "def test_metadata():\n    open('hello.egg-info/PKG-INFO').read()\n"
    )
    return workspace


async def test_the_session_counts_explains_and_notes_what_the_sync_leaves_out(
    daemon: Daemon, sdist_like: Path
) -> None:
    session: dict[str, Any] = await daemon.request(
        "podlink/startSession", {"folder": sdist_like.as_uri()}
    )
    assert session["sync"]["ignored"] == {
        "files": 0,
        "folders": 1,
        "examples": ["hello.egg-info/"],
    }

    metadata = sdist_like / "hello.egg-info" / "PKG-INFO"
    explained = await daemon.request(
        "podlink/explainPath", {"sessionId": session["id"], "uri": metadata.as_uri()}
    )
    assert explained == {
        "uri": metadata.as_uri(),
        "synced": False,
        "remotePath": "/app/hello.egg-info/PKG-INFO",
        "rule": {"source": ".gitignore", "line": 2, "pattern": "*.egg-info"},
        "excludedFolder": "hello.egg-info",
        "message": "hello.egg-info/PKG-INFO is not synced: its folder hello.egg-info/ is "
        "excluded by '*.egg-info' in .gitignore, line 2",
    }
    greeting = sdist_like / "app" / "greeting.py"
    assert await daemon.request(
        "podlink/explainPath", {"sessionId": session["id"], "uri": greeting.as_uri()}
    ) == {
        "uri": greeting.as_uri(),
        "synced": True,
        "remotePath": "/app/app/greeting.py",
        "message": "app/greeting.py is synced into /app/app/greeting.py",
    }

    await daemon.request(
        "podlink/runTests",
        {"sessionId": session["id"], "runId": "r", "ids": ["tests/test_metadata.py"]},
    )
    [result] = [p for p in daemon.received("podlink/testResult") if p["runId"] == "r"]
    assert result["outcome"] == "failed"
    assert result["message"].startswith("FileNotFoundError: [Errno 2] No such file or directory")
    assert result["message"].endswith(
        "\npodlink: hello.egg-info/PKG-INFO is not synced into the target (hello.egg-info "
        "matches '*.egg-info' in .gitignore, line 2); `podlink why hello.egg-info/PKG-INFO` "
        "says more"
    )
    await daemon.request("podlink/stopSession", {"sessionId": session["id"]})
