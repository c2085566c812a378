"""A first sync into a remote folder that already holds files: what podlink did not write stays.

Through the real `podlink up` on the local target, whose remote folder is a plain folder the
test fills beforehand, as an image's own files or a volume's data would be.
"""

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


def make_workspace(folder: Path, extra: str = "") -> Path:
    (folder / "src").mkdir(parents=True)
    for index in range(FILES):
        (folder / "src" / f"part{index}.txt").write_text(f"{index}\n")
    (folder / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  local:\n    root: .podlink/target\n"
        f"sync:\n  - local: src\n    remote: /app\n{extra}"
    )
    target = folder / ".podlink" / "target" / "app"
    (target / "data" / "db").mkdir(parents=True)
    (target / "data" / "db" / "rows.bin").write_bytes(b"\0" * 100)
    (target / "notes.txt").write_text("the image's own file\n")
    (target / "part0.txt").write_text("an older copy\n")  # the workspace has this one
    return folder


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "workspace")


class Up:
    """A running `podlink up`, stopped with Ctrl-C at the end."""

    def __init__(self, workspace: Path, env: dict[str, str]) -> None:
        self.process = start_podlink("up", str(workspace), cwd=workspace, env=env)
        self.output = LineWatcher(self.process)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def up(env: dict[str, str]) -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for each in started:
        if each.process.poll() is None:
            each.stop()


def start(workspace: Path, env: dict[str, str], up: list[Up]) -> LineWatcher:
    up.append(Up(workspace, env))
    up[-1].output.wait_for("ready:", seconds=60)
    return up[-1].output


def test_a_first_sync_leaves_what_podlink_did_not_write_and_lists_it(
    workspace: Path, env: dict[str, str], up: list[Up]
) -> None:
    target = workspace / ".podlink" / "target" / "app"
    output = start(workspace, env, up)

    assert (target / "notes.txt").read_text() == "the image's own file\n"
    assert (target / "data" / "db" / "rows.bin").stat().st_size == 100
    assert (target / "part0.txt").read_text() == "0\n"  # the workspace's version wins
    assert all((target / f"part{index}.txt").exists() for index in range(FILES))
    listed = output.lines[output.wait_for("deleteUnknown")]
    assert "notes.txt" in listed and "data/" in listed and "part0" not in listed

    # Later passes leave them too: a deleted folder's sync, and a reset, which deletes what
    # the target gained since the first sync but not what it held before.
    (target / "stray.txt").write_text("made in the target after the first sync\n")
    mark = len(output.lines)
    answer = podlink("reset", str(workspace), cwd=workspace, env=env)
    assert answer.returncode == 0, answer.stderr
    output.wait_for("1 deleted", after=mark, seconds=30)
    assert not (target / "stray.txt").exists()
    assert (target / "notes.txt").exists()
    assert (target / "data" / "db" / "rows.bin").exists()


def test_what_was_left_stays_left_after_a_restart(
    workspace: Path, env: dict[str, str], up: list[Up]
) -> None:
    target = workspace / ".podlink" / "target" / "app"
    start(workspace, env, up)
    up[-1].stop()
    (workspace / "src" / "part1.txt").unlink()  # something to do on the next start

    output = start(workspace, env, up)

    output.wait_for("1 deleted")
    assert not (target / "part1.txt").exists()
    assert (target / "notes.txt").exists()
    assert (target / "data" / "db" / "rows.bin").exists()
    assert not any("deleteUnknown" in line for line in output.lines)  # listed once, at first


def test_a_workspace_folder_deleted_later_keeps_the_files_left_inside_it(
    tmp_path: Path, env: dict[str, str], up: list[Up]
) -> None:
    workspace = make_workspace(tmp_path / "workspace")
    (workspace / "src" / "data").mkdir()
    (workspace / "src" / "data" / "seed.txt").write_text("seed\n")
    target = workspace / ".podlink" / "target" / "app"
    output = start(workspace, env, up)
    assert (target / "data" / "seed.txt").exists()

    mark = len(output.lines)
    (workspace / "src" / "data" / "seed.txt").unlink()
    (workspace / "src" / "data").rmdir()
    output.wait_for("1 deleted", after=mark)

    assert not (target / "data" / "seed.txt").exists()
    assert (target / "data" / "db" / "rows.bin").exists()


def test_delete_unknown_lets_the_first_sync_make_the_target_match(
    tmp_path: Path, env: dict[str, str], up: list[Up]
) -> None:
    workspace = make_workspace(tmp_path / "workspace", extra="    deleteUnknown: true\n")
    target = workspace / ".podlink" / "target" / "app"

    start(workspace, env, up)

    assert sorted(path.name for path in target.iterdir()) == sorted(
        f"part{index}.txt" for index in range(FILES)
    )
