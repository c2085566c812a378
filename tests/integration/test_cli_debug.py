"""`podlink debug` run as a real process: the attach configuration, status, Ctrl-C."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import processes_mentioning
from tests.integration.test_cli import LineWatcher, podlink

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    port = free_port()
    config = folder / "podlink.yaml"
    text = config.read_text().replace('PORT: "8000"', f'PORT: "{port}"')
    config.write_text(text + f'ports: ["{port}"]\n')
    return folder


@pytest.fixture
def debug_process(workspace: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "podlink", "debug", str(workspace)],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_debug_prints_the_attach_configuration_and_stops_cleanly(
    workspace: Path, env: dict[str, str], debug_process: subprocess.Popen[str]
) -> None:
    output = LineWatcher(debug_process)
    start = output.wait_for("attach configuration", seconds=60)
    end = output.wait_for("}", after=output.wait_for('"subProcess": true', after=start))
    configuration = json.loads("\n".join(output.lines[start + 1 : end + 1]))
    assert configuration["type"] == "debugpy"
    assert configuration["request"] == "attach"
    assert configuration["connect"]["host"] == "127.0.0.1"
    assert configuration["pathMappings"] == [
        {
            "localRoot": str(workspace.resolve()),
            "remoteRoot": str((workspace / ".podlink" / "target" / "app").resolve()),
        }
    ]
    output.wait_for("debug server ready")

    status = podlink("status", cwd=workspace, env=env)
    assert f"port    127.0.0.1:{configuration['connect']['port']} -> " in status.stdout
    assert status.stdout.count("port    127.0.0.1:") == 2  # the app's and the debugger's
    assert processes_mentioning(str(workspace))

    debug_process.send_signal(signal.SIGINT)
    assert debug_process.wait(timeout=30) == 0
    assert processes_mentioning(str(workspace)) == []


def test_debug_refuses_an_app_that_is_not_python(workspace: Path, env: dict[str, str]) -> None:
    config = workspace / "podlink.yaml"
    config.write_text(
        config.read_text().replace('["python3", "-m", "app"]', '["sh", "-c", "sleep 600"]')
    )
    result = podlink("debug", str(workspace), cwd=workspace, env=env)
    assert result.returncode == 2
    assert "run.command starts with 'sh'" in result.stderr
    assert processes_mentioning(str(workspace)) == []
