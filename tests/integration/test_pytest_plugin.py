"""podlink's pytest plugin in a real pytest process: the events it writes, and nothing else.

pytest here is the test environment's own; the e2e tests run the plugin on the Docker test
image's pytest as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import podlink
from podlink.pytest_plugin import CACHE_WINDOW_SECONDS, remove_ambiguous_cache

PROJECT = {
    "helper.py": """\
def explode(value):
    raise ValueError(f"bad value {value}")
""",
    "tests/test_cases.py": """\
import pytest
from helper import explode


def test_pass():
    print("hello out")


def test_fail():
    x = 1
    assert x == 2


@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n != 2


class TestGroup:
    def test_in_helper(self):
        explode(3)

    @pytest.mark.skip(reason="not now")
    def test_skipped(self):
        pass


@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False


@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")


def test_fixture(broken):
    pass
""",
    "tests/test_syntax.py": "def test_ok():\n    pass\n\ndef broken(:\n    pass\n",
    "tests/test_import.py": "import os\nfrom helper import nothing_here\n",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    for name, text in PROJECT.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    plugin_folder = tmp_path / "plugin"
    plugin_folder.mkdir()
    shutil.copy(
        Path(podlink.__file__).with_name("pytest_plugin.py"),
        plugin_folder / "podlink_pytest_plugin.py",
    )
    return folder


def run_pytest(project: Path, *options: str, mode: str = "run") -> tuple[int, list[dict[str, Any]]]:
    read_end, write_end = os.pipe()
    env = {
        **os.environ,
        "PYTHONPATH": str(project.parent / "plugin"),
        "PODLINK_EVENTS_FD": str(write_end),
        "PODLINK_PYTEST_MODE": mode,
    }
    env.pop("PYTEST_ADDOPTS", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "podlink_pytest_plugin",
            "-p",
            "no:cacheprovider",
            *options,
        ],
        cwd=project,
        env=env,
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as events:
        lines = events.read().splitlines()
    return process.wait(timeout=60), [json.loads(line) for line in lines]


def by_id(events: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {e["nodeid"]: e for e in events if e["event"] == kind}


def test_a_run_reports_each_test_and_each_file_that_failed_to_collect(project: Path) -> None:
    code, events = run_pytest(project, "--continue-on-collection-errors")
    assert code == 1
    assert events[0]["event"] == "start"
    assert events[-1] == {"event": "finish", "exitstatus": 1}

    errors = by_id(events, "collecterror")
    assert set(errors) == {"tests/test_syntax.py", "tests/test_import.py"}
    syntax = errors["tests/test_syntax.py"]["failure"]
    assert syntax["message"] == "SyntaxError: invalid syntax"
    assert syntax["frames"][-1][:2] == [str(project / "tests/test_syntax.py"), 4]
    assert syntax["column"] == 12
    imported = errors["tests/test_import.py"]["failure"]
    assert imported["message"].startswith("ImportError: cannot import name 'nothing_here'")
    assert [str(project / "tests/test_import.py"), 2, "<module>"] in imported["frames"]
    assert set(by_id(events, "collected")) == {"tests/test_cases.py"}

    results = by_id(events, "result")
    outcomes = {nodeid.split("::", 1)[1]: e["outcome"] for nodeid, e in results.items()}
    assert outcomes == {
        "test_pass": "passed",
        "test_fail": "failed",
        "test_param[1]": "passed",
        "test_param[2]": "failed",
        "TestGroup::test_in_helper": "failed",
        "TestGroup::test_skipped": "skipped",
        "test_xfail": "skipped",
        "test_fixture": "errored",
    }
    cases = str(project / "tests/test_cases.py")
    failed = results["tests/test_cases.py::test_fail"]
    assert failed["path"] == cases
    assert failed["line"] == 9
    assert failed["failure"]["message"] == "assert 1 == 2"
    assert failed["failure"]["frames"][-1] == [cases, 11, "test_fail"]  # after pytest's own
    helper = results["tests/test_cases.py::TestGroup::test_in_helper"]["failure"]
    assert helper["message"] == "ValueError: bad value 3"
    assert helper["frames"][-2:] == [
        [cases, 21, "test_in_helper"],
        [str(project / "helper.py"), 2, "explode"],
    ]
    assert results["tests/test_cases.py::TestGroup::test_skipped"]["failure"]["message"] == (
        "not now"
    )
    fixture = results["tests/test_cases.py::test_fixture"]["failure"]
    assert fixture["message"] == "RuntimeError: fixture broke"
    assert fixture["frames"][-1] == [cases, 35, "broken"]
    assert "hello out" in results["tests/test_cases.py::test_pass"]["output"]


def test_discovery_reports_items_with_their_lines(project: Path) -> None:
    (project / "tests/test_syntax.py").unlink()
    (project / "tests/test_import.py").unlink()
    code, events = run_pytest(project, "--collect-only", "-q", mode="discover")
    assert code == 0
    items = by_id(events, "item")
    assert len(items) == 8
    assert not by_id(events, "result")
    param = items["tests/test_cases.py::test_param[2]"]
    assert (param["function"], param["parametrized"]) == ("test_param", True)
    assert (param["line"], param["endLine"]) == (14, 16)
    grouped = items["tests/test_cases.py::TestGroup::test_in_helper"]
    assert grouped["classes"] == [["tests/test_cases.py::TestGroup", "TestGroup", 19, 25]]


def test_without_the_descriptor_the_plugin_stays_silent(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(project.parent / "plugin")}
    env.pop("PODLINK_EVENTS_FD", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "podlink_pytest_plugin",
            "-q",
            "tests/test_cases.py",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert '"event"' not in result.stdout + result.stderr


def test_a_cache_written_within_its_sources_second_is_removed(tmp_path: Path) -> None:
    source, cached = tmp_path / "mod.py", tmp_path / "mod.pyc"
    source.write_text("x = 1\n")
    cached.write_bytes(b"cache")
    second = int(time.time()) - 100
    os.utime(source, (second + 0.2, second + 0.2))
    os.utime(cached, (second + 0.7, second + 0.7))  # may predate a save later in that second
    remove_ambiguous_cache(str(source), str(cached))
    assert not cached.exists()

    cached.write_bytes(b"cache")
    later = second + CACHE_WINDOW_SECONDS + 1
    os.utime(cached, (later, later))  # written well after: any later save has a later mtime
    remove_ambiguous_cache(str(source), str(cached))
    assert cached.exists()
