"""`podlink up` as a program in a pipeline: fast app output, unwrapped lines, one app per folder."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_podlink, start_podlink

MEGABYTES = 50
LINE = "x" * 99  # with its newline, 100 bytes
LINES = MEGABYTES * 1024 * 1024 // 100

APP = f"""\
import sys
out = sys.stdout
line = {LINE!r} + "\\n"
out.write("begin\\n")
out.flush()
for _ in range({LINES}):
    out.write(line)
out.write("end\\n")
out.flush()
import time
time.sleep(600)
"""


def workspace_with(folder: Path, app: str) -> Path:
    folder.mkdir()
    (folder / "app.py").write_text(app)
    (folder / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  local:\n    root: .podlink/target\n"
        'sync:\n  - local: .\n    remote: /app\nrun:\n  command: ["python3", "-u", "app.py"]\n'
    )
    return folder


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_app_output_arrives_whole_with_bounded_memory(tmp_path: Path, env: dict[str, str]) -> None:
    folder = workspace_with(tmp_path / "loud", APP)
    process = subprocess.Popen(
        [*start_podlink_argv(), "up", str(folder)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        began = None
        count = 0
        deadline = time.monotonic() + 120
        for raw in process.stdout:
            if raw.endswith(b"app | begin\n"):
                began = time.monotonic()
            elif began is not None and raw.endswith(LINE.encode() + b"\n"):
                count += 1
            elif raw.endswith(b"app | end\n"):
                break
            assert time.monotonic() < deadline, "the app's output did not end"
        assert began is not None
        # Every line, whole and in order; its speed is bench.app_output's to measure.
        assert count == LINES
        assert peak_rss_kib(process.pid) < 200 * 1024
    finally:
        stop(process)


def start_podlink_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "podlink"]


QUIET_APP = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"


@pytest.fixture
def quiet(tmp_path: Path) -> Path:
    return workspace_with(
        tmp_path / "a-folder-with-a-rather-long-name-to-pass-80-columns", QUIET_APP
    )


@pytest.fixture
def first_up(quiet: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    narrow = {**env, "COLUMNS": "80"}
    process = start_podlink("up", str(quiet), cwd=quiet, env=narrow)
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if "app | up" in line:
            break
    yield process, lines
    stop(process)


def test_the_ready_line_is_one_line_when_stdout_is_a_pipe(
    first_up: tuple[subprocess.Popen[str], list[str]],
) -> None:
    _, lines = first_up
    [ready] = [line for line in lines if line.startswith("ready:")]
    assert ready.endswith("watching for changes, Ctrl-C to stop"), lines
    assert len(ready) > 80


def test_a_second_up_on_the_same_folder_names_the_process_serving_it(
    quiet: Path, env: dict[str, str], first_up: tuple[subprocess.Popen[str], list[str]]
) -> None:
    process, _ = first_up
    second = run_podlink("up", str(quiet), cwd=quiet, env=env, timeout=60)
    assert second.returncode == 1
    assert f"pid {process.pid}" in second.stderr
    assert "already" in second.stderr and str(quiet) in second.stderr
    assert "app | up" not in second.stdout
    assert process.poll() is None
