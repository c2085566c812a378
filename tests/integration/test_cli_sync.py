"""`podlink resume` and `podlink reset` reaching a running `podlink up` from another terminal."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_podlink as podlink
from tests.helpers import start_podlink
from tests.integration.test_cli import LineWatcher

FILES = 30


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    (folder / "src").mkdir(parents=True)
    for index in range(FILES):
        (folder / "src" / f"part{index}.txt").write_text(f"{index}\n")
    (folder / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  local:\n    root: .podlink/target\n"
        "sync:\n  - local: src\n    remote: /app\n"
    )
    return folder


@pytest.fixture
def up(workspace: Path, env: dict[str, str]) -> Iterator[LineWatcher]:
    process = start_podlink("up", str(workspace), cwd=workspace, env=env)
    output = LineWatcher(process)
    output.wait_for("ready", seconds=60)
    yield output
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def test_a_paused_sync_is_resumed_from_another_terminal(
    workspace: Path, env: dict[str, str], up: LineWatcher
) -> None:
    target = workspace / ".podlink" / "target" / "app"
    for index in range(25):
        (workspace / "src" / f"part{index}.txt").unlink()
    up.wait_for("paused", seconds=30)
    assert len(list(target.iterdir())) == FILES  # nothing deleted while paused

    mark = len(up.lines)
    answer = podlink("resume", str(workspace), cwd=workspace, env=env)
    assert answer.returncode == 0, answer.stderr
    assert "resume" in answer.stdout
    up.wait_for("25 deleted", after=mark, seconds=30)
    assert len(list(target.iterdir())) == FILES - 25


def test_reset_from_another_terminal_makes_the_target_match(
    workspace: Path, env: dict[str, str], up: LineWatcher
) -> None:
    target = workspace / ".podlink" / "target" / "app"
    (target / "stray.txt").write_text("only in the target")  # upload mode replaces it on reset
    mark = len(up.lines)
    answer = podlink("reset", str(workspace), cwd=workspace, env=env)
    assert answer.returncode == 0, answer.stderr
    up.wait_for("1 deleted", after=mark, seconds=30)
    assert len(list(target.iterdir())) == FILES
    assert not (target / "stray.txt").exists()


def test_resume_without_a_running_session_says_how_to_start_one(
    workspace: Path, env: dict[str, str]
) -> None:
    answer = podlink("resume", str(workspace), cwd=workspace, env=env)
    assert answer.returncode == 1
    assert "no running podlink session" in answer.stderr
    assert "podlink up" in answer.stderr


def test_a_deep_mkdir_while_up_runs_prints_nothing_of_the_watcher(
    tmp_path: Path, env: dict[str, str]
) -> None:
    folder = tmp_path / "whole"
    folder.mkdir()
    (folder / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  local:\n    root: .podlink/target\n"
        "sync:\n  - local: .\n    remote: /app\n"
    )
    process = start_podlink("up", str(folder), cwd=folder, env=env)
    try:
        up = LineWatcher(process)
        mark = up.wait_for("ready", seconds=60)
        levels = Path(*["level"] * 200)
        subprocess.run(["mkdir", "-p", str(folder / "deep" / levels)], check=True)
        subprocess.run(["mkdir", "-p", str(folder / "short" / "a" / "b" / "c" / "d")], check=True)
        (folder / "deep" / levels / "bottom.txt").write_text("deep\n")
        target = folder / ".podlink" / "target" / "app"
        wanted = [target / "deep" / levels / "bottom.txt", target / "short/a/b/c/d"]
        while not all(path.exists() for path in wanted):
            mark = up.wait_for("synced", after=mark + 1, seconds=30)
        noise = [line[:300] for line in up.lines if "Warning" in line or "watchdog" in line]
        assert noise == []
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
