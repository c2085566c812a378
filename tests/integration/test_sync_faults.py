"""Faults in the middle of a sync, with the real `podlink` process and a real container: the
agent killed, the daemon killed, the container restarted. No partially written file ever
appears at its real path in the target, the sync completes afterwards, nothing is lost."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import start_podlink
from tests.integration.test_cli import LineWatcher
from tests.integration.test_cli_docker import run_in, wait_until
from tests.targets import docker_client, start_test_container

pytestmark = pytest.mark.docker

BIG_FILE_BYTES = 160 * 1024 * 1024


@pytest.fixture
def container() -> Iterator[Any]:
    started = start_test_container(docker_client())
    yield started
    started.remove(force=True)


@pytest.fixture
def workspace(tmp_path: Path, container: Any) -> Path:
    folder = tmp_path / "workspace"
    (folder / "src").mkdir(parents=True)
    for index in range(300):
        (folder / "src" / f"module{index}.py").write_text(f"value = {index}\n")
    # Incompressible and large enough that the transfer is still going when the fault comes.
    with (folder / "big.bin").open("wb") as handle:
        for _ in range(BIG_FILE_BYTES // (1 << 20)):
            handle.write(os.urandom(1 << 20))
    (folder / "podlink.yaml").write_text(
        f"version: 1\ntarget:\n  docker:\n    container: {container.name}\n"
        "sync:\n  - local: .\n    remote: /app\n    mode: two-way\n"
    )
    return folder


def start_up(workspace: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], LineWatcher]:
    process = start_podlink("up", str(workspace), cwd=workspace, env=env)
    return process, LineWatcher(process)


def stop_up(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def writing_started(container: Any) -> bool:
    """The agent has begun the big file: its temporary file exists beside it."""
    code, _ = container.exec_run(["sh", "-c", "ls -a /app | grep -q '^.podlink-tmp-.*big.bin$'"])
    return code == 0


def big_file_state(container: Any) -> str:
    """ "absent", or the size and digest of what is at the real path."""
    code, output = container.exec_run(
        [
            "python3",
            "-c",
            "import hashlib; print(hashlib.sha256(open('/app/big.bin', 'rb').read()).hexdigest())",
        ]
    )
    return output.decode().strip() if code == 0 else "absent"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_target_matches(container: Any, workspace: Path) -> None:
    assert big_file_state(container) == digest(workspace / "big.bin")
    listed = run_in(container, "ls /app/src | wc -l").strip()
    assert int(listed) == 300
    leftovers = run_in(container, "find /app -name '.podlink-tmp-*' | wc -l").strip()
    assert int(leftovers) == 0


def test_agent_killed_mid_transfer(container: Any, workspace: Path, env: dict[str, str]) -> None:
    process, output = start_up(workspace, env)
    try:
        wait_until(lambda: writing_started(container), "the big file's transfer")
        run_in(container, "pkill -KILL -f 'python3 -[I] -c'")
        # Never a half-written file at its real path: absent until it is whole.
        assert big_file_state(container) in ("absent", digest(workspace / "big.bin"))
        output.wait_for("ready", seconds=120)
        assert any("starting the agent again" in line for line in output.lines), output.lines
        assert_target_matches(container, workspace)
    finally:
        stop_up(process)


def test_daemon_killed_mid_sync_then_started_again(
    container: Any, workspace: Path, env: dict[str, str]
) -> None:
    process, _ = start_up(workspace, env)
    try:
        wait_until(lambda: writing_started(container), "the big file's transfer")
        process.kill()
        process.wait(30)
        assert big_file_state(container) in ("absent", digest(workspace / "big.bin"))
    finally:
        stop_up(process)
    (workspace / "src" / "module0.py").write_text("value = 'edited while podlink was down'\n")

    again, output = start_up(workspace, env)
    try:
        output.wait_for("ready", seconds=120)
        assert_target_matches(container, workspace)
        assert run_in(container, "cat /app/src/module0.py") == (
            "value = 'edited while podlink was down'\n"
        )
    finally:
        stop_up(again)


def test_container_restarted_mid_sync(container: Any, workspace: Path, env: dict[str, str]) -> None:
    (workspace / "big.bin").rename(workspace.parent / "big.bin")  # added once the session runs
    process, output = start_up(workspace, env)
    try:
        output.wait_for("ready", seconds=120)
        (workspace.parent / "big.bin").rename(workspace / "big.bin")
        wait_until(lambda: writing_started(container), "the big file's transfer")
        container.restart(timeout=1)
        mark = len(output.lines)
        # Logged once the resync after the restart is done.
        output.wait_for("reconnected", after=mark, seconds=120)
        assert_target_matches(container, workspace)
    finally:
        stop_up(process)
