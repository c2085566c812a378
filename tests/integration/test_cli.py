"""The `podlink` command line, run as a real process."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import descendants, start_podlink
from tests.helpers import run_podlink as podlink

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    config = folder / "podlink.yaml"
    config.write_text(config.read_text().replace('PORT: "8000"', 'PORT: "0"'))
    return folder


def test_help_everywhere(workspace: Path, env: dict[str, str]) -> None:
    for command in ([], ["up"], ["init"], ["status"], ["serve"]):
        result = podlink(*command, "--help", cwd=workspace, env=env)
        assert result.returncode == 0, result.stderr
        assert "Usage: python -m podlink" in result.stdout


def test_init_writes_once_and_never_overwrites(tmp_path: Path, env: dict[str, str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text("FROM python:3.12-slim\nEXPOSE 8000\n")
    first = podlink("init", str(project), cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    written = (project / "podlink.yaml").read_text()
    assert "docker:" in written

    again = podlink("init", str(project), cwd=tmp_path, env=env)
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert (project / "podlink.yaml").read_text() == written

    (project / "podlink.yaml").write_text("# mine\n")
    forced = podlink("init", "--force", str(project), cwd=tmp_path, env=env)
    assert forced.returncode == 0
    assert (project / "podlink.yaml").read_text() == written


def test_up_with_a_broken_config_exits_2_naming_file_line_key(
    workspace: Path, env: dict[str, str]
) -> None:
    config = workspace / "podlink.yaml"
    config.write_text(config.read_text().replace("remote: /app", "remote: app"))
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "remote:" in text)
    result = podlink("up", str(workspace), cwd=workspace, env=env)
    assert result.returncode == 2
    assert f"podlink.yaml:{line}: sync[0].remote:" in result.stderr
    assert not (workspace / ".podlink").exists()


def test_what_the_target_refuses_names_the_key_the_path_and_what_to_do(
    workspace: Path, env: dict[str, str]
) -> None:
    config = workspace / "podlink.yaml"
    original = config.read_text()
    config.write_text(original.replace("mode: upload", "mode: upload\n    owner: nobody-here"))
    unknown_owner = podlink("up", str(workspace), cwd=workspace, env=env)
    assert unknown_owner.returncode == 2
    assert "podlink.yaml: sync[0].owner: the target refused 'nobody-here'" in unknown_owner.stderr
    assert "which does not exist in the target" in unknown_owner.stderr
    assert "Traceback" not in unknown_owner.stderr

    readme = workspace / ".podlink" / "target" / "app" / "README.md"
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text("already there\n")
    config.write_text(original.replace("remote: /app", "remote: /app/README.md/x"))
    under_a_file = podlink("up", str(workspace), cwd=workspace, env=env)
    assert under_a_file.returncode == 2
    assert "podlink.yaml: sync[0].remote: the target refused '/app/README.md/x'" in (
        under_a_file.stderr
    )
    assert f"{readme} is a file" in under_a_file.stderr
    assert "Traceback" not in under_a_file.stderr
    assert readme.read_text() == "already there\n"


def test_a_two_way_root_the_target_refuses_names_the_key(
    workspace: Path, env: dict[str, str]
) -> None:
    # Two-way follows the target before it scans it: the root is made then, ahead of the
    # initial sync, and its refusal must read the same.
    readme = workspace / ".podlink" / "target" / "app" / "README.md"
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text("already there\n")
    config = workspace / "podlink.yaml"
    config.write_text(
        config.read_text()
        .replace("mode: upload", "mode: two-way")
        .replace("remote: /app", "remote: /app/README.md/x")
    )
    assert "mode: two-way" in config.read_text()
    result = podlink("up", str(workspace), cwd=workspace, env=env)
    assert result.returncode == 2
    assert "podlink.yaml: sync[0].remote: the target refused '/app/README.md/x'" in result.stderr
    assert "Traceback" not in result.stderr
    assert readme.read_text() == "already there\n"


def test_status_without_sessions(workspace: Path, env: dict[str, str]) -> None:
    result = podlink("status", cwd=workspace, env=env)
    assert result.returncode == 0
    assert result.stdout.strip() == "no podlink sessions are running"


class LineWatcher:
    """Reads a process's output on a thread; tests wait for a line with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, after: int = 0, seconds: float = 30) -> int:
        deadline = time.monotonic() + seconds
        with self._changed:
            while True:
                for index in range(after, len(self.lines)):
                    if text in self.lines[index]:
                        return index
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no line with {text!r} in:\n" + "\n".join(self.lines))
                self._changed.wait(remaining)


@pytest.fixture
def up_process(workspace: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = start_podlink("up", str(workspace), cwd=workspace, env=env)
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_up_syncs_runs_reports_and_stops_cleanly_on_ctrl_c(
    workspace: Path, env: dict[str, str], up_process: subprocess.Popen[str]
) -> None:
    output = LineWatcher(up_process)
    ready = output.wait_for("ready:")
    output.wait_for("hello app listening")
    target = workspace / ".podlink" / "target" / "app"
    assert (target / "app" / "greeting.py").read_bytes() == (
        workspace / "app" / "greeting.py"
    ).read_bytes()

    status = podlink("status", cwd=workspace, env=env)
    assert workspace.as_uri() in status.stdout
    assert "[ready]" in status.stdout
    assert "app     running: python3 -m app" in status.stdout

    (workspace / "app" / "greeting.py").write_text("def greet(name):\n    return name\n")
    synced = output.wait_for("sync synced 1 file(s)", after=ready)
    output.wait_for("hello app listening", after=synced)
    assert (target / "app" / "greeting.py").read_text() == "def greet(name):\n    return name\n"

    assert descendants(up_process.pid)
    up_process.send_signal(signal.SIGINT)
    assert up_process.wait(timeout=30) == 0
    assert descendants(up_process.pid) == []
    assert podlink("status", cwd=workspace, env=env).stdout.strip() == (
        "no podlink sessions are running"
    )


def test_status_and_why_say_what_the_sync_leaves_out(workspace: Path, env: dict[str, str]) -> None:
    (workspace / ".gitignore").write_text("__pycache__/\n*.egg-info\n")
    (workspace / "hello.egg-info").mkdir()
    (workspace / "hello.egg-info" / "PKG-INFO").write_text("Name: hello\n")
    (workspace / "debug.log").write_text("noise\n")
    process = start_podlink("up", str(workspace), cwd=workspace, env=env)
    try:
        LineWatcher(process).wait_for("ready:")
        status = podlink("status", cwd=workspace, env=env)
        assert (
            "ignored 1 file and 1 folder not synced by ignore rules (debug.log, hello.egg-info/)"
            in status.stdout
        ), status.stdout
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0

    why = podlink(
        "why", "hello.egg-info/PKG-INFO", "debug.log", "app/greeting.py", cwd=workspace, env=env
    )
    assert why.returncode == 0, why.stderr
    assert why.stdout.splitlines() == [
        "hello.egg-info/PKG-INFO is not synced: its folder hello.egg-info/ is excluded by "
        "'*.egg-info' in .gitignore, line 2",
        "debug.log is not synced: it is excluded by '*.log' (item 1 of podlink.yaml "
        "sync[0].exclude)",
        "app/greeting.py is synced into /app/app/greeting.py",
    ]
    elsewhere = podlink("why", "-C", str(workspace), "/etc/passwd", cwd=REPO, env=env)
    assert "/etc/passwd is not synced: it is outside every folder podlink syncs" in elsewhere.stdout
