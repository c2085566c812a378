"""`podlink test` reports what plain pytest reports, test case by test case.

The corpus (tests/pytest_corpus.py) is synced into a real target by `podlink test`, which
writes its JUnit report; then plain pytest runs on the same synced tree, in the same target,
with its own `--junit-xml`. Both reports must parse and name the same test cases with the
same outcomes. On the Docker target that is the image's own (Debian's) pytest; locally,
this environment's.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_podlink as podlink
from tests.pytest_corpus import CORPUS
from tests.targets import LOCAL_AND_DOCKER, container_for

# podlink always passes this (a broken file must not stop the others); so does the plain run.
PLAIN_OPTIONS = ["--continue-on-collection-errors"]

Case = tuple[str, str]


def outcome_of(case: ElementTree.Element) -> str:
    """A JUnit test case's outcome in pytest's words."""
    for child in case:
        if child.tag == "failure":
            return "failed"
        if child.tag == "error":
            return "errored"
        if child.tag == "skipped":
            return "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
    return "passed"


def read_cases(report: bytes) -> dict[Case, str]:
    """(classname, name) -> the test case's outcome; every name is there once.

    pytest writes a second test case for a test whose call failed and whose teardown then
    errored too; podlink reports that test once, as failed, as the first of the two says.
    """
    root = ElementTree.fromstring(report)
    cases: dict[Case, list[str]] = collections.defaultdict(list)
    for case in root.iter("testcase"):
        cases[case.get("classname", ""), case.get("name", "")].append(outcome_of(case))
    doubled = {name: outcomes for name, outcomes in cases.items() if len(outcomes) > 1}
    assert all(outcomes == ["failed", "errored"] for outcomes in doubled.values()), doubled
    return {name: outcomes[0] for name, outcomes in cases.items()}


@pytest.fixture(params=LOCAL_AND_DOCKER)
def target_kind(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    if request.param == "docker":
        request.applymarker(pytest.mark.docker)
    container = container_for(str(request.param))
    try:
        yield str(request.param), container
    finally:
        if container is not None:
            container.remove(force=True)


def write_corpus(folder: Path, target_section: str, python: str) -> None:
    for name, text in CORPUS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    command = json.dumps([python, "-m", "pytest"])
    (folder / "podlink.yaml").write_text(
        f"version: 1\n{target_section}sync:\n  - local: .\n    remote: /app\n"
        f"test:\n  command: {command}\n"
    )


def plain_pytest_report(kind: str, container: Any, workspace: Path) -> bytes:
    """Plain pytest's JUnit report, run on the tree podlink synced into the target."""
    if container is None:
        synced = workspace / ".podlink" / "target" / "app"
        report = workspace.parent / "plain.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", *PLAIN_OPTIONS, f"--junit-xml={report}"],
            cwd=synced,
            capture_output=True,
            timeout=120,
            check=False,
        )
        return report.read_bytes()
    options = " ".join(PLAIN_OPTIONS)
    code, output = container.exec_run(
        ["sh", "-c", f"cd /app && python3 -m pytest {options} --junit-xml=/tmp/plain.xml"]
    )
    assert code in (0, 1), output.decode(errors="replace")
    code, report = container.exec_run(["cat", "/tmp/plain.xml"], stderr=False)
    assert code == 0
    data: bytes = report
    return data


def test_podlink_reports_the_corpus_as_plain_pytest_does(
    target_kind: tuple[str, Any], tmp_path: Path, env: dict[str, str]
) -> None:
    kind, container = target_kind
    workspace = tmp_path / "workspace"
    if container is None:
        write_corpus(workspace, "", sys.executable)
    else:
        container.exec_run(["mkdir", "-p", "/app"])
        write_corpus(workspace, f"target:\n  docker:\n    container: {container.name}\n", "python3")
    podlink_report = tmp_path / "podlink.xml"
    result = podlink("test", "--junit-xml", str(podlink_report), cwd=workspace, env=env)
    assert result.returncode == 1, result.stdout + result.stderr  # the corpus has failures

    plain = read_cases(plain_pytest_report(kind, container, workspace))
    ours = read_cases(podlink_report.read_bytes())  # parses: well-formed, control chars and all
    assert set(ours) == set(plain), "the same test cases"
    differences = {
        name: (outcome, plain[name]) for name, outcome in ours.items() if outcome != plain[name]
    }
    assert differences == {}, "(podlink, pytest) outcomes that differ"
    # Every outcome and id shape of the corpus was there to compare.
    seen = collections.Counter(plain.values())
    assert set(seen) == {"passed", "failed", "errored", "skipped", "xfailed"}, seen
    assert len(plain) >= 60, len(plain)
    assert ("tests.test_ids", "test_strings[::c::]") in plain
    assert ("", "tests.test_module_importorskip") in plain
    assert ("", "tests.test_syntax_error") in plain
    assert ("shop.prices", "shop.prices.rounded") in plain
