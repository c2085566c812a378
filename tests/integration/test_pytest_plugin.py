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

import podlink.testing
from podlink.testing.pytest_plugin import CACHE_WINDOW_SECONDS, remove_ambiguous_cache

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
        Path(podlink.testing.__file__).with_name("pytest_plugin.py"),
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
        "test_xfail": "xfailed",
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


OUTCOMES = {
    "tests/test_outcomes.py": """\
import pytest


def helper_that_skips():
    pytest.skip("no database here")


def test_skips_in_a_helper():
    x = 1
    helper_that_skips()


@pytest.mark.skip(reason="marked")
def test_marked_skip():
    pass


@pytest.mark.xfail(reason="bug 7")
def test_xfail_fails():
    assert 1 == 2


@pytest.mark.xfail(reason="bug 8")
def test_xfail_passes():
    pass


@pytest.mark.xfail(reason="bug 9", strict=True)
def test_xfail_strict_passes():
    pass


@pytest.mark.xfail(raises=KeyError, reason="wrong error")
def test_xfail_other_error():
    raise ValueError("not a key")


def test_imperative_xfail():
    pytest.xfail("not done")


def test_assertion_with_message():
    raise AssertionError("expected positive, got -1")


def test_bare_assertion_error():
    raise AssertionError
""",
    "tests/test_module_skip.py": """\
import pytest

pytest.importorskip("a_module_nobody_has")


def test_never_collected():
    pass
""",
    "tests/test_module_skip_call.py": """\
import pytest


pytest.skip("not on this platform", allow_module_level=True)
""",
}


@pytest.fixture
def outcomes_project(project: Path) -> Path:
    for name in PROJECT:
        if name != "helper.py":
            (project / name).unlink()
    for name, text in OUTCOMES.items():
        (project / name).write_text(text)
    return project


def test_outcomes_are_those_of_pytests_summary(outcomes_project: Path) -> None:
    code, events = run_pytest(outcomes_project, "--continue-on-collection-errors")
    assert code == 1
    results = by_id(events, "result")
    outcomes = {nodeid: e["outcome"] for nodeid, e in results.items()}
    prefix = "tests/test_outcomes.py::"
    assert outcomes == {
        prefix + "test_skips_in_a_helper": "skipped",
        prefix + "test_marked_skip": "skipped",
        prefix + "test_xfail_fails": "xfailed",
        prefix + "test_xfail_passes": "xpassed",
        prefix + "test_xfail_strict_passes": "failed",
        prefix + "test_xfail_other_error": "failed",
        prefix + "test_imperative_xfail": "xfailed",
        prefix + "test_assertion_with_message": "failed",
        prefix + "test_bare_assertion_error": "failed",
        "tests/test_module_skip.py": "skipped",
        "tests/test_module_skip_call.py": "skipped",
    }
    source = str(outcomes_project / "tests/test_outcomes.py")

    def failure(name: str) -> dict[str, Any]:
        found: dict[str, Any] = results[prefix + name]["failure"]
        return found

    # A skip is where pytest.skip() was called, a marked one at the test, as pytest says.
    assert failure("test_skips_in_a_helper") == {
        "message": "no database here",
        "frames": [[source, 5, ""]],
    }
    assert failure("test_marked_skip")["frames"] == [[source, 13, ""]]
    xfail = failure("test_xfail_fails")
    assert xfail["message"] == "bug 7\nassert 1 == 2"
    assert xfail["frames"][-1] == [source, 20, "test_xfail_fails"]
    assert failure("test_xfail_passes")["message"] == "bug 8"
    assert "[XPASS(strict)] bug 9" in failure("test_xfail_strict_passes")["message"]
    assert failure("test_imperative_xfail")["message"] == "not done"
    assert failure("test_imperative_xfail")["frames"][-1][:2] == [source, 39]
    assert failure("test_assertion_with_message")["message"] == (
        "AssertionError: expected positive, got -1"
    )
    assert failure("test_bare_assertion_error")["message"] == "AssertionError"

    module = results["tests/test_module_skip.py"]
    assert module["path"] == str(outcomes_project / "tests/test_module_skip.py")
    assert module["line"] == 3
    assert module["failure"]["message"].startswith("could not import 'a_module_nobody_has'")
    called = results["tests/test_module_skip_call.py"]
    assert (called["line"], called["failure"]["message"]) == (4, "not on this platform")
    # Skipped files were collected: any earlier collection error of theirs is gone.
    assert {"tests/test_module_skip.py", "tests/test_module_skip_call.py"} <= set(
        by_id(events, "collected")
    )


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
