"""End to end through a real LSP client: tests and builds in the target, results in the editor.

Each scenario runs against every target kind (`probe`): the local target, a real container
on a real Docker Engine and a pod (of the API server double, or of a real cluster), on a
copy of the example project.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tests.e2e.conftest import Daemon
from tests.helpers import descendants
from tests.targets import TargetProbe

pytestmark = pytest.mark.asyncio

# Runs after tests/test_greeting.py and holds the run open until the e2e test lets it go, so
# "a result arrived while the run was still going" does not depend on timing.
WAITING_TEST = """\
import time
from pathlib import Path


def test_waits_for_release():
    deadline = time.monotonic() + 60
    while not Path("release.flag").exists():
        assert time.monotonic() < deadline, "nobody wrote release.flag"
        time.sleep(0.02)
"""

SLOW_TEST = """\
import time
from pathlib import Path


def test_takes_a_minute():
    Path("started.flag").write_text("running")
    time.sleep(60)
"""

PARAMETRISED_TEST = """\
import pytest


class TestNumbers:
    @pytest.mark.parametrize("number", [1, 2, 3])
    def test_positive(self, number):
        assert number > 0
"""


@pytest.fixture(autouse=True)
def pytest_in_the_local_target(workspace: Path, probe: TargetProbe) -> None:
    """The local target runs this machine's python3, which need not have pytest: use ours."""
    if probe.kind == "local":
        config = workspace / "podlink.yaml"
        command = json.dumps([sys.executable, "-m", "pytest", "-q"])
        config.write_text(config.read_text().replace('["python3", "-m", "pytest", "-q"]', command))


async def start(daemon: Daemon, workspace: Path) -> str:
    session: dict[str, Any] = await daemon.request(
        "podlink/startSession", {"folder": workspace.as_uri()}
    )
    assert session["state"] == "ready"
    return str(session["id"])


def line_of(path: Path, text: str) -> int:
    """The 1-based line of the first line of ``path`` that contains ``text``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def diagnostics(daemon: Daemon, path: Path, source: str) -> list[types.Diagnostic]:
    published = daemon.client.diagnostics.get(path.resolve().as_uri(), [])
    return [each for each in published if each.source == source]


def results_of(daemon: Daemon, run_id: str) -> dict[str, Any]:
    return {p["id"]: p for p in daemon.received("podlink/testResult") if p["runId"] == run_id}


async def test_failure_is_a_diagnostic_until_fixed(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    test_file = workspace / "tests" / "test_greeting.py"
    good = test_file.read_text()
    test_file.write_text(good.replace('== "Hello, Ada!"', '== "Hello, Grace!"'))
    failing_line = line_of(test_file, "Hello, Grace!")
    (workspace / "tests" / "test_wait.py").write_text(WAITING_TEST)
    session_id = await start(daemon, workspace)

    mark = daemon.mark()
    run = asyncio.ensure_future(
        daemon.request("podlink/runTests", {"sessionId": session_id, "runId": "first"})
    )
    first = await daemon.wait_for("podlink/testResult", lambda p: p["runId"] == "first", since=mark)
    assert not run.done(), "results stream while the run goes on"
    assert first["id"].startswith("tests/test_greeting.py::")
    (workspace / "release.flag").write_text("go\n")  # synced like any save
    summary = await asyncio.wait_for(run, 60)

    assert summary["runId"] == "first"
    assert (summary["passed"], summary["failed"], summary["errored"]) == (3, 1, 0)
    results = results_of(daemon, "first")
    assert set(results) == {
        "tests/test_greeting.py::test_greets_by_name",
        "tests/test_greeting.py::test_blank_name_greets_the_world",
        "tests/test_greeting.py::test_shout_is_upper_case",
        "tests/test_wait.py::test_waits_for_release",
    }
    failed = results["tests/test_greeting.py::test_greets_by_name"]
    assert failed["outcome"] == "failed"
    assert "Hello, Grace!" in failed["message"]
    assert failed["location"]["uri"] == test_file.resolve().as_uri()
    assert failed["location"]["range"]["start"]["line"] == failing_line - 1
    assert results["tests/test_wait.py::test_waits_for_release"]["outcome"] == "passed"

    [diagnostic] = diagnostics(daemon, test_file, "podlink-test")
    assert diagnostic.range.start.line == failing_line - 1
    assert diagnostic.message.startswith("assert ")
    assert "Hello, Grace!" in diagnostic.message
    assert diagnostic.severity == types.DiagnosticSeverity.Error

    test_file.write_text(good)
    fixed = await daemon.request("podlink/runTests", {"sessionId": session_id, "runId": "second"})
    assert (fixed["passed"], fixed["failed"]) == (4, 0)
    assert results_of(daemon, "second")["tests/test_greeting.py::test_greets_by_name"][
        "outcome"
    ] == ("passed")
    assert diagnostics(daemon, test_file, "podlink-test") == []


async def test_run_sees_every_save_made_before_it(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session_id = await start(daemon, workspace)
    flip = workspace / "tests" / "test_flip.py"
    # Same size every time and quicker than a second apart: neither the sync nor a cached
    # module may let a run see the previous version.
    for attempt in range(6):
        expected = "passed" if attempt % 2 else "failed"
        flip.write_text(f"def test_flip():\n    assert {attempt % 2} == 1\n")
        run_id = f"flip-{attempt}"
        await daemon.request(
            "podlink/runTests",
            {"sessionId": session_id, "runId": run_id, "ids": ["tests/test_flip.py"]},
        )
        outcome = results_of(daemon, run_id)["tests/test_flip.py::test_flip"]["outcome"]
        assert outcome == expected, f"attempt {attempt} ran the previous version"


async def test_discovery_tree_and_collection_errors(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    (workspace / "tests" / "test_numbers.py").write_text(PARAMETRISED_TEST)
    broken = workspace / "tests" / "test_broken.py"
    broken.write_text("def test_fine():\n    pass\n\n\ndef broken(:\n    pass\n")
    session_id = await start(daemon, workspace)

    found = await daemon.request("podlink/discoverTests", {"sessionId": session_id})
    [folder] = found["tests"]
    assert (folder["id"], folder["label"]) == ("tests", "tests")
    files = {node["id"]: node for node in folder["children"]}
    assert set(files) == {"tests/test_greeting.py", "tests/test_numbers.py"}
    greeting = workspace / "tests" / "test_greeting.py"
    greeting_tests = {node["id"]: node for node in files["tests/test_greeting.py"]["children"]}
    first = greeting_tests["tests/test_greeting.py::test_greets_by_name"]
    assert first["uri"] == greeting.resolve().as_uri()
    def_line = line_of(greeting, "def test_greets_by_name")
    assert first["range"]["start"]["line"] == def_line - 1
    assert first["range"]["end"]["line"] == def_line + 1  # the whole two-line function

    [numbers_class] = files["tests/test_numbers.py"]["children"]
    assert numbers_class["id"] == "tests/test_numbers.py::TestNumbers"
    [function] = numbers_class["children"]
    assert function["id"] == "tests/test_numbers.py::TestNumbers::test_positive"
    assert [case["id"] for case in function["children"]] == [
        f"tests/test_numbers.py::TestNumbers::test_positive[{n}]" for n in (1, 2, 3)
    ]
    assert [case["label"] for case in function["children"]] == ["[1]", "[2]", "[3]"]

    [problem] = diagnostics(daemon, broken, "podlink-test")
    assert problem.range.start.line == line_of(broken, "def broken(:") - 1
    assert "SyntaxError" in problem.message

    broken.write_text("def test_fine():\n    pass\n")
    found = await daemon.request("podlink/discoverTests", {"sessionId": session_id})
    files = {node["id"] for node in found["tests"][0]["children"]}
    assert "tests/test_broken.py" in files
    assert diagnostics(daemon, broken, "podlink-test") == []


def pytest_processes(probe: TargetProbe, daemon_pid: int) -> list[str]:
    if probe.kind != "local":
        return [line for line in probe.leftover_processes(daemon_pid) if "pytest" in line]
    found = []
    for pid in descendants(daemon_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "pytest" in command:
            found.append(f"{pid} {command}")
    return found


def wait_until_exists(probe: TargetProbe, remote: str, seconds: float = 30.0) -> None:
    """Block until a file appears in the target (the test there has no other way to say so)."""
    deadline = time.monotonic() + seconds
    while not probe.exists(remote):
        assert time.monotonic() < deadline, f"{remote} never appeared in the target"
        time.sleep(0.05)


async def test_cancel_ends_the_run_at_once_and_leaves_no_pytest(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    (workspace / "tests" / "test_slow.py").write_text(SLOW_TEST)
    session_id = await start(daemon, workspace)
    run = asyncio.ensure_future(
        daemon.request("podlink/runTests", {"sessionId": session_id, "runId": "long"})
    )
    await asyncio.to_thread(wait_until_exists, probe, "/app/started.flag")
    daemon_pid = daemon.client._server.pid  # type: ignore[union-attr]
    assert pytest_processes(probe, daemon_pid), "the slow test is running"

    cancelled_at = time.monotonic()
    await daemon.request("podlink/cancelTests", {"runId": "long"})
    summary = await asyncio.wait_for(run, 2.0)
    assert time.monotonic() - cancelled_at < 2.0
    assert summary["runId"] == "long"
    assert summary["passed"] == 3  # the greeting tests ran before the slow one
    assert pytest_processes(probe, daemon_pid) == []
    assert "tests/test_slow.py::test_takes_a_minute" not in results_of(daemon, "long")

    # Cancelling a run that is over is not an error.
    assert await daemon.request("podlink/cancelTests", {"runId": "long"}) is None


BUILD_SCRIPT = """\
import os
import app.greeting

greeting = os.path.abspath("app/greeting.py")
print(f"{greeting}:5:5: error: 'cleaned' undeclared (first use in this function)")
print("app/greeting.py:10: error: Incompatible return value type  [return-value]")
print("tests/test_greeting.py:1:35: F401 [*] `app.greeting.shout` imported but unused")
print(f"  {greeting}:6:12 - warning: Expression value is unused (reportUnusedExpression)")
print("/usr/lib/python3/os.py:1: error: a file outside the workspace stays in the log")
print("some other line no format knows")
app.greeting.greet(None)
"""


async def test_build_output_becomes_diagnostics_on_local_files(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    (workspace / "build_check.py").write_text(BUILD_SCRIPT)
    config = workspace / "podlink.yaml"
    config.write_text(config.read_text() + 'build:\n  command: ["python3", "build_check.py"]\n')
    session_id = await start(daemon, workspace)

    mark = daemon.mark()
    result = await daemon.request("podlink/build", {"sessionId": session_id})
    assert result["exitCode"] == 1  # the traceback at the end
    assert result["diagnostics"] == 5

    greeting = workspace / "app" / "greeting.py"
    found = sorted(
        (d.range.start.line + 1, d.range.start.character + 1, d.severity, d.message)
        for d in diagnostics(daemon, greeting, "podlink-build")
    )
    error, warning = types.DiagnosticSeverity.Error, types.DiagnosticSeverity.Warning
    assert found == [
        (5, 1, error, "AttributeError: 'NoneType' object has no attribute 'strip'"),
        (5, 5, error, "'cleaned' undeclared (first use in this function)"),
        (6, 12, warning, "Expression value is unused"),
        (10, 1, error, "Incompatible return value type"),
    ]
    [traceback] = [
        d for d in diagnostics(daemon, greeting, "podlink-build") if "strip" in d.message
    ]
    assert traceback.related_information is not None
    [caller] = traceback.related_information
    assert caller.location.uri == (workspace / "build_check.py").resolve().as_uri()
    assert caller.location.range.start.line + 1 == line_of(
        workspace / "build_check.py", "greet(None)"
    )
    [lint] = diagnostics(daemon, workspace / "tests" / "test_greeting.py", "podlink-build")
    assert (lint.range.start.line, lint.range.start.character, lint.code) == (0, 34, "F401")

    logged = [
        p["text"] for p in daemon.received("podlink/log", since=mark) if p["source"] == "build"
    ]
    assert "some other line no format knows" in logged
    assert any("/usr/lib/python3/os.py:1" in line for line in logged)

    (workspace / "build_check.py").write_text("print('all good')\n")
    result = await daemon.request("podlink/build", {"sessionId": session_id})
    assert (result["exitCode"], result["diagnostics"]) == (0, 0)
    assert diagnostics(daemon, greeting, "podlink-build") == []
    assert diagnostics(daemon, workspace / "tests" / "test_greeting.py", "podlink-build") == []
