"""The plugin's events -> local test ids, results, diagnostics and the tree; pure, table-driven.

The events are shaped as ``podlink/pytest_plugin.py`` writes them; the target's sync root is
``/app``, the local workspace a temporary folder.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import msgspec
import pytest

from podlink import protocol
from podlink.diagnostics import Diagnostic, RelatedLocation
from podlink.pathmap import MappedRoot, PathMap
from podlink.testing.junit import junit_names, junit_xml
from podlink.testing.report import (
    CollectErrorEvent,
    DiagnosticBook,
    FinishEvent,
    InvalidTestRequest,
    ItemEvent,
    LocatedProblem,
    ResultEvent,
    TestPaths,
    build_tree,
    decode_event,
    report_collect_error,
    report_result,
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    for name in ("tests/test_api.py", "tests/unit/test_model.py", "app/model.py", "conftest.py"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n" * 50)
    return tmp_path


@pytest.fixture
def test_paths(workspace: Path) -> TestPaths:
    return TestPaths(workspace, PathMap([MappedRoot(workspace, "/app")]), "/app")


def event(line: str) -> Any:
    decoded = decode_event(line)
    assert decoded is not None
    return decoded


def result_event(**fields: Any) -> ResultEvent:
    base = {"event": "result", "nodeid": "tests/test_api.py::test_create", "outcome": "passed"}
    decoded = event(msgspec.json.encode({**base, **fields}).decode())
    assert isinstance(decoded, ResultEvent)
    return decoded


def test_events_decode_and_unknown_lines_are_skipped() -> None:
    assert event('{"event": "finish", "exitstatus": 1}') == FinishEvent(exitstatus=1)
    assert decode_event('{"event": "progress", "done": 3}') is None  # a newer plugin's event
    assert decode_event("not json") is None


ID_CASES = {
    "same layout as the workspace": ("tests/test_api.py::test_a", "/app/tests/test_api.py"),
    "rootdir above the sync root": ("app/tests/test_api.py::test_a", "/app/tests/test_api.py"),
    "relative to the run's folder": ("test_api.py::TestX::test_a[1-2]", "tests/test_api.py"),
}


@pytest.mark.parametrize("nodeid, path", ID_CASES.values(), ids=ID_CASES.keys())
def test_ids_are_relative_to_the_workspace(test_paths: TestPaths, nodeid: str, path: str) -> None:
    _, _, rest = nodeid.partition("::")
    assert test_paths.local_id(nodeid, path) == f"tests/test_api.py::{rest}"


def test_ids_outside_the_sync_stay_as_pytest_gave_them(test_paths: TestPaths) -> None:
    nodeid = "site/test_x.py::test_a"
    assert test_paths.local_id(nodeid, "/usr/lib/site/test_x.py") == nodeid
    assert test_paths.local_id(nodeid, None) == nodeid


def test_ids_become_target_paths_for_pytest(test_paths: TestPaths) -> None:
    assert test_paths.target_argument("tests/test_api.py::TestX::test_a[1]") == (
        "/app/tests/test_api.py::TestX::test_a[1]"
    )
    assert test_paths.target_argument("tests/unit") == "/app/tests/unit"
    for outside in ("../elsewhere/test_x.py", "", "::test_a"):
        with pytest.raises(InvalidTestRequest):
            test_paths.target_argument(outside)


def test_a_failure_is_reported_at_its_innermost_workspace_frame(
    workspace: Path, test_paths: TestPaths
) -> None:
    failure = {
        "message": "ValueError: bad value 3",
        "frames": [
            ["/usr/lib/python3/dist-packages/_pytest/python.py", 195, "pytest_pyfunc_call"],
            ["/app/tests/test_api.py", 12, "test_create"],
            ["/app/app/model.py", 30, "save"],
            ["/usr/lib/python3.11/json/__init__.py", 346, "dumps"],
        ],
    }
    reported = report_result(
        result_event(
            outcome="failed",
            duration=0.25,
            path="/app/tests/test_api.py",
            line=10,
            failure=failure,
            output="----- Captured stdout call -----\nsaving\n",
        ),
        "run-1",
        test_paths,
    )
    model = workspace / "app" / "model.py"
    assert reported.params == protocol.TestResultParams(
        run_id="run-1",
        id="tests/test_api.py::test_create",
        outcome="failed",
        duration_ms=250.0,
        message="ValueError: bad value 3",
        location=protocol.Location(
            uri=model.as_uri(),
            range=protocol.Range(
                start=protocol.Position(line=29, character=0),
                end=protocol.Position(line=30, character=0),
            ),
        ),
        output="----- Captured stdout call -----\nsaving\n",
    )
    assert reported.problem == LocatedProblem(
        model,
        Diagnostic(
            line=30,
            message="ValueError: bad value 3",
            related=(RelatedLocation(workspace / "tests/test_api.py", 12, "in test_create"),),
        ),
    )


OUTCOME_CASES = {
    "passed: located at the test, no problem": ("passed", None, 10, False),
    "skipped: the reason, no diagnostic": ("skipped", {"message": "not on Linux"}, 10, False),
    "failed without workspace frames: at the test's line": (
        "failed",
        {"message": "Failed: timeout", "frames": [["/usr/lib/x.py", 3, "f"]]},
        10,
        True,
    ),
    "errored in a fixture": (
        "errored",
        {"message": "RuntimeError: no db", "frames": [["/app/conftest.py", 7, "db"]]},
        7,
        True,
    ),
}


@pytest.mark.parametrize(
    "outcome, failure, line, has_problem", OUTCOME_CASES.values(), ids=OUTCOME_CASES.keys()
)
def test_outcomes(
    test_paths: TestPaths,
    outcome: str,
    failure: dict[str, Any] | None,
    line: int,
    has_problem: bool,
) -> None:
    reported = report_result(
        result_event(outcome=outcome, path="/app/tests/test_api.py", line=10, failure=failure),
        "r",
        test_paths,
    )
    assert reported.params.outcome == outcome
    assert reported.params.message == (failure["message"] if failure else None)
    assert reported.params.location is not None
    assert reported.params.location.range.start.line == line - 1
    assert (reported.problem is not None) == has_problem


def test_a_syntax_error_is_a_collection_problem_at_its_line_and_column(
    workspace: Path, test_paths: TestPaths
) -> None:
    collect_error = event(
        msgspec.json.encode(
            {
                "event": "collecterror",
                "nodeid": "tests/test_api.py",
                "path": "/app/tests/test_api.py",
                "failure": {
                    "message": "SyntaxError: invalid syntax",
                    "frames": [
                        ["<frozen importlib._bootstrap>", 1206, "_gcd_import"],
                        ["/usr/lib/python3.11/ast.py", 50, "parse"],
                        ["/app/tests/test_api.py", 4, "<module>"],
                    ],
                    "column": 12,
                },
            }
        ).decode()
    )
    assert isinstance(collect_error, CollectErrorEvent)
    reported = report_collect_error(collect_error, "r", test_paths)
    assert reported.params.id == "tests/test_api.py"
    assert reported.params.outcome == "errored"
    assert reported.problem == LocatedProblem(
        workspace / "tests/test_api.py",
        Diagnostic(line=4, column=12, message="SyntaxError: invalid syntax"),
    )


def item(nodeid: str, **fields: Any) -> ItemEvent:
    name = nodeid.rsplit("::", 1)[-1]
    function = name.split("[", 1)[0]
    base = {
        "event": "item",
        "nodeid": nodeid,
        "path": "/app/" + nodeid.split("::", 1)[0],
        "name": name,
        "function": function,
        "parametrized": "[" in name,
        "line": 5,
        "endLine": 7,
        "classes": [],
    }
    decoded = event(msgspec.json.encode({**base, **fields}).decode())
    assert isinstance(decoded, ItemEvent)
    return decoded


def shape(items: tuple[protocol.TestItem, ...] | None) -> list[Any]:
    """(id, label, children) of a tree, to compare in one assertion."""
    return [(node.id, node.label, shape(node.children)) for node in items or ()]


def test_the_tree_has_folders_files_classes_and_parametrised_cases(
    workspace: Path, test_paths: TestPaths
) -> None:
    classes = [["tests/unit/test_model.py::TestModel", "TestModel", 3, 20]]
    tree = build_tree(
        [
            item("tests/test_api.py::test_create"),
            item("tests/test_api.py::test_sizes[1]", line=9, endLine=11),
            item("tests/test_api.py::test_sizes[2]", line=9, endLine=11),
            item("tests/unit/test_model.py::TestModel::test_save", classes=classes),
        ],
        test_paths,
    )
    assert shape(tree) == [
        (
            "tests",
            "tests",
            [
                (
                    "tests/test_api.py",
                    "test_api.py",
                    [
                        ("tests/test_api.py::test_create", "test_create", []),
                        (
                            "tests/test_api.py::test_sizes",
                            "test_sizes",
                            [
                                ("tests/test_api.py::test_sizes[1]", "[1]", []),
                                ("tests/test_api.py::test_sizes[2]", "[2]", []),
                            ],
                        ),
                    ],
                ),
                (
                    "tests/unit",
                    "unit",
                    [
                        (
                            "tests/unit/test_model.py",
                            "test_model.py",
                            [
                                (
                                    "tests/unit/test_model.py::TestModel",
                                    "TestModel",
                                    [
                                        (
                                            "tests/unit/test_model.py::TestModel::test_save",
                                            "test_save",
                                            [],
                                        )
                                    ],
                                )
                            ],
                        )
                    ],
                ),
            ],
        )
    ]
    api = tree[0].children[0]  # type: ignore[index]
    assert api.uri == (workspace / "tests/test_api.py").as_uri()
    create, sizes = api.children  # type: ignore[misc]
    assert create.range == protocol.Range(
        start=protocol.Position(line=4, character=0), end=protocol.Position(line=7, character=0)
    )
    assert sizes.range is not None and sizes.range.start.line == 8
    model_class = tree[0].children[1].children[0].children[0]  # type: ignore[index]
    assert model_class.range is not None
    assert (model_class.range.start.line, model_class.range.end.line) == (2, 20)


def test_diagnostics_belong_to_tests_and_are_published_per_file(workspace: Path) -> None:
    api, model = workspace / "tests/test_api.py", workspace / "app/model.py"
    book = DiagnosticBook()
    first = LocatedProblem(api, Diagnostic(line=3, message="assert 1 == 2"))
    second = LocatedProblem(api, Diagnostic(line=9, message="assert 'a' == 'b'"))
    in_model = LocatedProblem(model, Diagnostic(line=30, message="ValueError: x"))

    assert book.replace("tests/test_api.py::test_a", [first]) == {api}
    assert book.replace("tests/test_api.py::test_b", [second]) == {api}
    assert book.replace("tests/test_api.py::test_c", [in_model]) == {model}
    assert book.diagnostics_for(api) == [first.diagnostic, second.diagnostic]
    assert book.replace("tests/test_api.py::test_a", [first]) == set()  # nothing new to send

    # test_a passes now: only its own diagnostic goes.
    assert book.replace("tests/test_api.py::test_a", []) == {api}
    assert book.diagnostics_for(api) == [second.diagnostic]

    # A full run saw only test_b: test_c no longer exists, its diagnostic goes too.
    book.replace("collect:tests/test_broken.py", [first])
    assert book.keep_only({"tests/test_api.py::test_b"}, collect=False) == {model}
    assert book.diagnostics_for(model) == []
    assert book.diagnostics_for(api) == [second.diagnostic, first.diagnostic]
    assert book.keep_only(set(), collect=True) == {api}
    assert book.diagnostics_for(api) == [second.diagnostic]


def test_junit_xml_names_cases_like_pytest() -> None:
    location = protocol.Location(
        uri="file:///w/tests/test_api.py",
        range=protocol.Range(
            start=protocol.Position(line=11, character=0),
            end=protocol.Position(line=12, character=0),
        ),
    )
    results = [
        protocol.TestResultParams(run_id="r", id="tests/test_api.py::test_a", outcome="passed"),
        protocol.TestResultParams(
            run_id="r",
            id="tests/test_api.py::TestX::test_b[1]",
            outcome="failed",
            duration_ms=1500,
            message="assert 1 == 2\n  where 1 = f()",
            location=location,
            output="printed\n",
        ),
        protocol.TestResultParams(
            run_id="r", id="tests/test_api.py::test_c", outcome="skipped", message="later"
        ),
        protocol.TestResultParams(
            run_id="r", id="tests/test_broken.py", outcome="errored", message="SyntaxError: x"
        ),
    ]
    root = ElementTree.fromstring(junit_xml(results, suite="hello", duration_seconds=2.5))
    [suite] = root
    assert suite.attrib == {
        "name": "hello",
        "tests": "4",
        "failures": "1",
        "errors": "1",
        "skipped": "1",
        "time": "2.500",
    }
    cases = {case.attrib["name"]: case for case in suite}
    failed = cases["test_b[1]"]
    assert failed.attrib["classname"] == "tests.test_api.TestX"
    assert (failed.attrib["line"], failed.attrib["time"]) == ("12", "1.500")
    failure = failed.find("failure")
    assert failure is not None
    assert failure.attrib["message"] == "assert 1 == 2"
    assert failure.text == "assert 1 == 2\n  where 1 = f()"
    assert failed.findtext("system-out") == "printed\n"
    assert cases["test_c"].find("skipped") is not None
    broken = cases["tests.test_broken"]  # a file's own id, named as pytest names it
    assert (broken.attrib["classname"], broken.find("error") is not None) == ("", True)


JUNIT_NAME_CASES = {
    "function": ("t/test_a.py::test_b", ("t.test_a", "test_b")),
    "method": ("t/test_a.py::TestX::test_b", ("t.test_a.TestX", "test_b")),
    "nested class": ("test_a.py::TestX::TestY::test_b", ("test_a.TestX.TestY", "test_b")),
    ":: inside the parameters": ("test_a.py::test_p[::c::]", ("test_a", "test_p[::c::]")),
    "brackets and slashes inside": (
        "test_a.py::T::test_p[a/b[1]::x]",
        ("test_a.T", "test_p[a/b[1]::x]"),
    ),
    "a file alone": ("tests/test_skipped.py", ("", "tests.test_skipped")),
    "a doctest": ("pkg/mod.py::pkg.mod.f", ("pkg.mod", "pkg.mod.f")),
}


@pytest.mark.parametrize("test_id, names", JUNIT_NAME_CASES.values(), ids=JUNIT_NAME_CASES.keys())
def test_junit_names_split_ids_as_pytest_does(test_id: str, names: tuple[str, str]) -> None:
    classname, name, _file = junit_names(test_id)
    assert (classname, name) == names


def test_junit_xml_writes_control_characters_visibly_and_stays_well_formed() -> None:
    results = [
        protocol.TestResultParams(
            run_id="r",
            id="tests/test_api.py::test_colour[\x1b]",
            outcome="failed",
            message="AssertionError: \x1b[31mred\x1b[0m\a\f\x7f\ud800",
            output="\x1b[1mbold\x1b[0m\x00 done\n",
        )
    ]
    data = junit_xml(results, suite="s\x07", duration_seconds=0)
    [case] = ElementTree.fromstring(data)[0]
    failure = case.find("failure")
    assert failure is not None
    assert failure.attrib["message"] == "AssertionError: #x1B[31mred#x1B[0m#x07#x0C#x7F#xD800"
    assert case.findtext("system-out") == "#x1B[1mbold#x1B[0m#x00 done\n"


def test_junit_xml_marks_expected_failures_like_pytest() -> None:
    skip_line = protocol.Location(
        uri="file:///w/tests/test_api.py",
        range=protocol.Range(
            start=protocol.Position(line=6, character=0), end=protocol.Position(line=7, character=0)
        ),
    )
    results = [
        protocol.TestResultParams(
            run_id="r", id="t.py::test_x", outcome="xfailed", message="bug 7"
        ),
        protocol.TestResultParams(
            run_id="r", id="t.py::test_p", outcome="xpassed", message="bug 8"
        ),
        protocol.TestResultParams(
            run_id="r", id="t.py::test_s", outcome="skipped", message="no db", location=skip_line
        ),
    ]
    [suite] = ElementTree.fromstring(junit_xml(results, suite="s", duration_seconds=0))
    assert (suite.attrib["tests"], suite.attrib["skipped"], suite.attrib["failures"]) == (
        "3",
        "2",
        "0",
    )
    cases = {case.attrib["name"]: case for case in suite}
    xfailed = cases["test_x"].find("skipped")
    assert xfailed is not None
    assert xfailed.attrib == {"type": "pytest.xfail", "message": "bug 7"}
    assert list(cases["test_p"]) == []  # an unexpected pass is a pass in pytest's report
    skipped = cases["test_s"].find("skipped")
    assert skipped is not None
    assert skipped.attrib == {"type": "pytest.skip", "message": "no db"}
    assert skipped.text == "/w/tests/test_api.py:7: no db"


def test_a_skip_is_located_at_the_line_that_skipped_without_a_diagnostic(
    workspace: Path, test_paths: TestPaths
) -> None:
    reported = report_result(
        result_event(
            outcome="skipped",
            path="/app/tests/test_api.py",
            line=10,
            failure={"message": "no db", "frames": [["/app/tests/test_api.py", 14, ""]]},
        ),
        "r",
        test_paths,
    )
    assert reported.problem is None
    assert reported.params.location is not None
    assert reported.params.location.range.start.line == 13


def test_a_file_skipped_at_collection_is_an_item_of_the_tree(test_paths: TestPaths) -> None:
    skipped = result_event(
        nodeid="tests/unit/test_model.py",
        outcome="skipped",
        path="/app/tests/unit/test_model.py",
        failure={"message": "no numpy", "frames": []},
    )
    tree = build_tree([item("tests/test_api.py::test_create")], test_paths, [skipped])
    assert shape(tree) == [
        (
            "tests",
            "tests",
            [
                ("tests/unit", "unit", [("tests/unit/test_model.py", "test_model.py", [])]),
                (
                    "tests/test_api.py",
                    "test_api.py",
                    [("tests/test_api.py::test_create", "test_create", [])],
                ),
            ],
        )
    ]
