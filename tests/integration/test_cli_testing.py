"""`podlink test` and `podlink build`, run as real processes on the local target."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

from tests.dap import DapClient
from tests.helpers import run_podlink as podlink
from tests.integration.test_cli import LineWatcher

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    # The local target runs this machine's python3, which need not have pytest: use ours.
    config = folder / "podlink.yaml"
    command = json.dumps([sys.executable, "-m", "pytest", "-q"])
    config.write_text(config.read_text().replace('["python3", "-m", "pytest", "-q"]', command))
    return folder.resolve()


def break_greeting_test(workspace: Path) -> int:
    """Make test_greets_by_name fail; the line of its assertion."""
    test_file = workspace / "tests" / "test_greeting.py"
    test_file.write_text(test_file.read_text().replace('"Hello, Ada!"', '"Hello, Grace!"'))
    lines = test_file.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if "Hello, Grace!" in line)


def test_failures_are_printed_with_local_file_and_line(
    workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    line = break_greeting_test(workspace)
    report = tmp_path / "junit.xml"
    result = podlink("test", "--junit-xml", str(report), cwd=workspace, env=env)
    assert result.returncode == 1, result.stderr
    assert "FAILED tests/test_greeting.py::test_greets_by_name" in result.stdout
    test_file = workspace / "tests" / "test_greeting.py"
    assert f"{test_file}:{line}: assert 'Hello, Ada!' == 'Hello, Grace!'" in result.stdout
    assert "2 passed, 1 failed" in result.stdout

    [suite] = ElementTree.parse(report).getroot()
    assert (suite.attrib["tests"], suite.attrib["failures"]) == ("3", "1")
    failed = next(case for case in suite if case.attrib["name"] == "test_greets_by_name")
    assert failed.attrib["classname"] == "tests.test_greeting"
    assert failed.attrib["line"] == str(line)
    assert failed.find("failure") is not None
    assert not list((tmp_path / "state").glob("**/*.json")), "the session is gone"


def test_passing_run_and_chosen_ids(workspace: Path, env: dict[str, str]) -> None:
    everything = podlink("test", cwd=workspace, env=env)
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert "3 passed" in everything.stdout

    break_greeting_test(workspace)
    chosen = podlink(
        "test",
        "-C",
        str(workspace),
        "tests/test_greeting.py::test_shout_is_upper_case",
        cwd=REPO,
        env=env,
    )
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert "1 passed" in chosen.stdout


def test_one_id_runs_with_the_conftest_files_of_a_whole_run(
    workspace: Path, env: dict[str, str]
) -> None:
    (workspace / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.fixture\ndef visitor():\n    return 'Ada'\n"
    )
    (workspace / "tests" / "test_visitor.py").write_text(
        "from app.greeting import greet\n\n\ndef test_visitor(visitor):\n"
        "    assert greet(visitor) == 'Hello, Ada!'\n"
    )
    result = podlink("test", "tests/test_visitor.py::test_visitor", cwd=workspace, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_ids_outside_the_workspace_are_refused(workspace: Path, env: dict[str, str]) -> None:
    result = podlink("test", "../elsewhere/test_x.py", cwd=workspace, env=env)
    assert result.returncode == 2
    assert "not in a folder podlink syncs" in result.stderr


@pytest.mark.parametrize(
    "test_id",
    ["tests/test_greeting.py::test_nobody_wrote_this", "tests/test_missing.py"],
)
def test_an_id_that_matches_nothing_is_named(
    workspace: Path, env: dict[str, str], test_id: str
) -> None:
    result = podlink("test", test_id, cwd=workspace, env=env)

    assert result.returncode == 1, result.stderr
    output = result.stdout + result.stderr
    assert f"no test matched {test_id}" in output
    assert "exited with code 4" not in output


def test_a_test_command_that_is_not_pytest_shows_its_own_error(
    workspace: Path, env: dict[str, str]
) -> None:
    config = workspace / "podlink.yaml"
    script = "import sys; sys.stderr.write('unittest: cannot import tests.helpers\\n'); sys.exit(3)"
    command = json.dumps([sys.executable, "-c", script])
    lines = config.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("test:"))
    lines[start : start + 2] = [f"test:\n  command: {command}"]
    config.write_text("\n".join(lines) + "\n")

    result = podlink("test", cwd=workspace, env=env)

    assert result.returncode == 1
    assert "unittest: cannot import tests.helpers" in result.stderr
    assert "no output" not in result.stderr


def test_build_prints_output_and_errors_on_local_files(
    workspace: Path, env: dict[str, str]
) -> None:
    no_build = podlink("build", cwd=workspace, env=env)
    assert no_build.returncode == 2
    assert "build:" in no_build.stderr

    config = workspace / "podlink.yaml"
    config.write_text(
        config.read_text() + 'build:\n  command: ["python3", "-m", "compileall", "-q", "."]\n'
    )
    (workspace / "app" / "broken.py").write_text('"""Broken."""\n\ndef f(:\n    pass\n')
    result = podlink("build", cwd=workspace, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "*** Error compiling './app/broken.py'" in result.stdout
    assert f"{workspace / 'app' / 'broken.py'}:3:1: error: SyntaxError" in result.stdout

    (workspace / "app" / "broken.py").unlink()
    fixed = podlink("build", str(workspace), cwd=REPO, env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def test_files_skipped_as_a_whole_and_expected_failures_are_counted_like_pytest(
    workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    tests = workspace / "tests"
    (tests / "test_needs_numpy.py").write_text(
        "import pytest\n\nnp = pytest.importorskip('a_module_nobody_has')\n\n\n"
        "def test_array():\n    pass\n"
    )
    (tests / "test_not_here.py").write_text(
        "import pytest\n\npytest.skip('not on this platform', allow_module_level=True)\n"
    )
    skipped_files = podlink(
        "test", "tests/test_needs_numpy.py", "tests/test_not_here.py", cwd=workspace, env=env
    )
    # pytest exits with 5 here (no test items), but it reports two skips, and so does podlink.
    assert skipped_files.returncode == 0, skipped_files.stdout + skipped_files.stderr
    assert "2 skipped" in skipped_files.stdout
    assert "exited with code" not in skipped_files.stdout

    (tests / "test_expected.py").write_text(
        "import pytest\n\n\n@pytest.mark.xfail(reason='bug 7')\ndef test_known_bug():\n"
        "    assert 1 == 2\n\n\n@pytest.mark.xfail(reason='bug 8')\ndef test_fixed_bug():\n"
        "    pass\n"
    )
    report = tmp_path / "junit.xml"
    everything = podlink("test", "--junit-xml", str(report), cwd=workspace, env=env)
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert "3 passed, 2 skipped, 1 xfailed, 1 xpassed" in everything.stdout
    cases = {case.attrib["name"]: case for case in ElementTree.parse(report).getroot()[0]}
    assert cases["tests.test_needs_numpy"].attrib["classname"] == ""
    assert cases["tests.test_needs_numpy"].find("skipped") is not None
    known_bug = cases["test_known_bug"].find("skipped")
    assert known_bug is not None and known_bug.attrib["type"] == "pytest.xfail"


def test_a_run_that_ends_without_tests_says_why_with_or_without_verbose(
    workspace: Path, env: dict[str, str]
) -> None:
    (workspace / "tests" / "test_empty.py").write_text("# no tests yet\n")
    for flags in ((), ("-v",)):
        run = podlink("test", *flags, "tests/test_empty.py", cwd=workspace, env=env)
        assert run.returncode == 1
        assert "no test matched tests/test_empty.py" in run.stdout
        # The reason is said outright: no hint to run again with -v.
        assert "shows why" not in run.stdout


def test_debug_prints_the_attach_configuration_and_the_run_waits_for_a_debugger(
    workspace: Path, env: dict[str, str]
) -> None:
    failing_line = break_greeting_test(workspace)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "podlink",
            "test",
            "--debug",
            "-C",
            str(workspace),
            "tests/test_greeting.py::test_greets_by_name",
        ],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = LineWatcher(process)
        start = output.wait_for("attach configuration", seconds=60)
        end = output.wait_for("}", after=output.wait_for('"subProcess": true', after=start))
        configuration = json.loads("\n".join(output.lines[start + 1 : end + 1]))
        test_file = workspace / "tests" / "test_greeting.py"
        stopped_at = asyncio.run(stop_once_at(configuration, test_file, failing_line))
        assert stopped_at == ("test_greets_by_name", failing_line, str(test_file))
        assert process.wait(timeout=60) == 1  # the test failed, after the debugger let it go
        output.wait_for("1 failed")
        assert any("Hello, Grace!" in line for line in output.lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def stop_once_at(
    configuration: dict[str, Any], source: Path, line: int
) -> tuple[str, int, str]:
    """Attach, stop at a breakpoint at ``line`` of ``source``, continue: where it stopped."""
    connect = configuration["connect"]
    client = await DapClient.connect(connect["host"], connect["port"])
    try:
        await client.request(
            "initialize",
            {"clientID": "podlink-tests", "adapterID": "debugpy", "pathFormat": "path"},
        )
        attached = client.send_request("attach", configuration)
        await client.wait_event("initialized", seconds=30)
        await client.request(
            "setBreakpoints", {"source": {"path": str(source)}, "breakpoints": [{"line": line}]}
        )
        await client.request("configurationDone")
        await asyncio.wait_for(attached, 30)
        stopped = await client.wait_event("stopped", seconds=60)
        frames = (await client.request("stackTrace", {"threadId": stopped["threadId"]}))[
            "stackFrames"
        ]
        await client.request("continue", {"threadId": stopped["threadId"]})
        top = frames[0]
        return top["name"], top["line"], top["source"]["path"]
    finally:
        await client.close()
