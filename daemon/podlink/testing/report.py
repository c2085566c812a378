"""The plugin's events, read in local terms: test ids, results, diagnostics, the tree of tests.

Pure: the events of ``pytest_plugin.py`` and a path mapping in; ``podlink/testResult``
params, diagnostics on local files and ``TestItem`` trees out. ``runner.py`` runs pytest and
feeds its events through here.

Ids are local: the file relative to the workspace folder, then pytest's own part of the node
id (``tests/test_api.py::TestApi::test_create[1]``), whatever rootdir pytest chose in the
target. A failure belongs at its innermost frame inside the workspace. Each test (and each
file that failed to collect) owns its diagnostics, which are published per local file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from podlink import protocol
from podlink.diagnostics import Diagnostic
from podlink.errors import InvalidParams
from podlink.pathmap import Frame, PathMap


class InvalidTestRequest(InvalidParams):
    """A test id that names nothing podlink syncs, or a run id already in use."""


# -- the plugin's events -------------------------------------------------------------------


class FailureInfo(msgspec.Struct, frozen=True):
    message: str
    frames: list[tuple[str, int, str]] = []
    column: int | None = None


class _Event(msgspec.Struct, frozen=True, tag_field="event"):
    pass


class StartEvent(_Event, frozen=True, tag="start"):
    pytest: str = ""
    python: str = ""


class ItemEvent(_Event, frozen=True, tag="item", kw_only=True):
    nodeid: str
    path: str | None = None
    name: str
    function: str
    parametrized: bool = False
    line: int | None = None
    end_line: int | None = msgspec.field(default=None, name="endLine")
    # [node id, name, first line, last line] of each enclosing class, outermost first.
    classes: list[tuple[str, str, int | None, int | None]] = []


class CollectErrorEvent(_Event, frozen=True, tag="collecterror", kw_only=True):
    nodeid: str
    path: str | None = None
    failure: FailureInfo


class ResultEvent(_Event, frozen=True, tag="result", kw_only=True):
    nodeid: str
    outcome: protocol.TestOutcome
    duration: float = 0.0
    path: str | None = None
    line: int | None = None
    failure: FailureInfo | None = None
    output: str | None = None


class CollectedEvent(_Event, frozen=True, tag="collected", kw_only=True):
    """A test file was collected without error."""

    nodeid: str
    path: str | None = None


class FinishEvent(_Event, frozen=True, tag="finish"):
    exitstatus: int = 0


Event = StartEvent | ItemEvent | CollectErrorEvent | CollectedEvent | ResultEvent | FinishEvent
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def decode_event(line: str) -> Event | None:
    """An event, or None for a line that is not one (a newer plugin's, a stray write)."""
    try:
        return _decoder.decode(line)
    except msgspec.DecodeError:
        return None


# -- ids, locations, results ---------------------------------------------------------------


@dataclass(frozen=True)
class TestPaths:
    """Test ids and locations between pytest in the target and the local workspace."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    folder: Path
    paths: PathMap
    cwd: str
    # target path -> (local file, its path relative to the folder): a run asks once per test.
    _files: dict[str, tuple[Path | None, str | None]] = field(default_factory=dict, compare=False)

    def _lookup(self, target_path: str) -> tuple[Path | None, str | None]:
        found = self._files.get(target_path)
        if found is None:
            local = self.paths.to_local(target_path, cwd=self.cwd)
            relative = None
            if local is not None and local.is_relative_to(self.folder):
                relative = local.relative_to(self.folder).as_posix()
            found = self._files[target_path] = (local, relative)
        return found

    def local_file(self, target_path: str | None) -> Path | None:
        return self._lookup(target_path)[0] if target_path is not None else None

    def local_id(self, nodeid: str, target_path: str | None) -> str:
        """``nodeid`` with its file part relative to the workspace folder."""
        relative = self._lookup(target_path)[1] if target_path is not None else None
        if relative is None:
            return nodeid
        _file, separator, rest = nodeid.partition("::")
        return relative + separator + rest

    def target_argument(self, test_id: str) -> str:
        """A local id as pytest in the target takes it: the file as an absolute target path."""
        file_part, separator, rest = test_id.partition("::")
        target = self.paths.to_target(self.folder / file_part)
        if target is None or not file_part:
            raise InvalidTestRequest(
                f"{test_id!r} is not in a folder podlink syncs into the target; ids are "
                "paths relative to the workspace folder, like tests/test_api.py::test_create"
            )
        return target + separator + rest


def line_range(first: int, last: int | None = None) -> protocol.Range:
    """1-based lines, both included, as an LSP range over whole lines."""
    return protocol.Range(
        start=protocol.Position(line=first - 1, character=0),
        end=protocol.Position(line=max(first, last or first), character=0),
    )


@dataclass(frozen=True)
class LocatedProblem:
    path: Path
    diagnostic: Diagnostic


def locate_failure(
    failure: FailureInfo, test_paths: TestPaths, fallback: tuple[Path, int] | None
) -> LocatedProblem | None:
    """A failure's diagnostic at its innermost workspace frame (else at ``fallback``)."""
    frames = [Frame(path, line, name) for path, line, name in failure.frames]
    placed = test_paths.paths.place_frames(frames, cwd=test_paths.cwd)
    if placed is not None:
        is_innermost = placed.frame_index == len(frames) - 1
        column = failure.column if failure.column and is_innermost else 1
        diagnostic = Diagnostic(
            line=placed.line, column=column, message=failure.message, related=placed.related
        )
        return LocatedProblem(placed.path, diagnostic)
    if fallback is not None:
        return LocatedProblem(fallback[0], Diagnostic(line=fallback[1], message=failure.message))
    return None


@dataclass(frozen=True)
class ReportedTest:
    """One test's end: the notification's params and the problem it reported, if any."""

    params: protocol.TestResultParams
    problem: LocatedProblem | None = None


def report_result(event: ResultEvent, run_id: str, test_paths: TestPaths) -> ReportedTest:
    test_id = test_paths.local_id(event.nodeid, event.path)
    local = test_paths.local_file(event.path)
    fallback = (local, event.line) if local is not None and event.line else None
    problem = located = None
    if event.failure is not None:
        located = locate_failure(event.failure, test_paths, fallback)
        if event.outcome in ("failed", "errored"):
            problem = located
        # Otherwise (the line that skipped, where an expected failure failed) only a location:
        # nothing there is wrong.
    where = located.path if located else (fallback[0] if fallback else None)
    line = located.diagnostic.line if located else (fallback[1] if fallback else None)
    location = (
        protocol.Location(uri=where.as_uri(), range=line_range(line))
        if where is not None and line is not None
        else None
    )
    params = protocol.TestResultParams(
        run_id=run_id,
        id=test_id,
        outcome=event.outcome,
        duration_ms=round(event.duration * 1000, 3),
        message=event.failure.message if event.failure else None,
        location=location,
        output=event.output or None,
    )
    return ReportedTest(params, problem)


def report_collect_error(
    event: CollectErrorEvent, run_id: str, test_paths: TestPaths
) -> ReportedTest:
    local = test_paths.local_file(event.path)
    fallback = (local, 1) if local is not None else None
    problem = locate_failure(event.failure, test_paths, fallback)
    location = (
        protocol.Location(uri=problem.path.as_uri(), range=line_range(problem.diagnostic.line))
        if problem
        else None
    )
    params = protocol.TestResultParams(
        run_id=run_id,
        id=test_paths.local_id(event.nodeid, event.path),
        outcome="errored",
        message=event.failure.message,
        location=location,
    )
    return ReportedTest(params, problem)


# -- the tree of tests ---------------------------------------------------------------------


@dataclass
class _Node:
    id: str
    label: str
    uri: str | None = None
    range: protocol.Range | None = None
    children: dict[str, _Node] = field(default_factory=dict)

    def child(self, node_id: str, label: str, uri: str | None = None) -> _Node:
        found = self.children.get(node_id)
        if found is None:
            found = self.children[node_id] = _Node(node_id, label, uri)
        return found

    def freeze(self) -> protocol.TestItem:
        children = tuple(child.freeze() for child in self.children.values())
        return protocol.TestItem(
            id=self.id, label=self.label, uri=self.uri, range=self.range, children=children or None
        )


def build_tree(
    items: Iterable[ItemEvent], test_paths: TestPaths, skipped: Iterable[ResultEvent] = ()
) -> tuple[protocol.TestItem, ...]:
    """Folders, files, classes and tests (parametrised cases under their function).

    ``skipped``: files (or classes) skipped as a whole at collection; each is an item of its
    own, without children, so a client has a place to show that skip.
    """
    top = _Node("", "")
    for event in skipped:
        local = test_paths.local_file(event.path)
        uri = local.as_uri() if local is not None else None
        node_id = test_paths.local_id(event.nodeid, event.path)
        file_id, separator, rest = node_id.partition("::")
        parent = _file_node(top, file_id, uri, test_paths)
        if separator:
            parent.child(node_id, rest.rpartition("::")[2], uri)
    for item in items:
        local = test_paths.local_file(item.path)
        uri = local.as_uri() if local is not None else None
        test_id = test_paths.local_id(item.nodeid, item.path)
        file_id, _, _ = test_id.partition("::")
        parent = _file_node(top, file_id, uri, test_paths)
        for class_nodeid, class_name, first, last in item.classes:
            node = parent.child(test_paths.local_id(class_nodeid, item.path), class_name, uri)
            if first is not None and uri is not None:
                node.range = line_range(first, last)
            parent = node
        label = item.name
        lines = None
        if item.line is not None and uri is not None:
            lines = line_range(item.line, item.end_line)
        if item.parametrized and item.name.startswith(item.function):
            function_id = test_id[: len(test_id) - len(item.name)] + item.function
            parent = parent.child(function_id, item.function, uri)
            parent.range = lines  # the cases share their function's lines
            label = item.name[len(item.function) :]
        parent.child(test_id, label, uri).range = lines
    return tuple(child.freeze() for child in top.children.values())


def _file_node(top: _Node, file_id: str, uri: str | None, test_paths: TestPaths) -> _Node:
    """The node of a test file, under a node for each of its folders."""
    parent = top
    parts = file_id.split("/")
    for depth in range(1, len(parts)):
        folder_id = "/".join(parts[:depth])
        folder_uri = (test_paths.folder / folder_id).as_uri() if uri is not None else None
        parent = parent.child(folder_id, parts[depth - 1], folder_uri)
    return parent.child(file_id, parts[-1], uri)


# -- diagnostics owned by tests ------------------------------------------------------------

COLLECT_KEY = "collect:"


class DiagnosticBook:
    """Each test's (or collected file's) diagnostics; publishing is per local file."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[LocatedProblem, ...]] = {}

    def replace(self, key: str, problems: Sequence[LocatedProblem]) -> set[Path]:
        """Replace what ``key`` reported; the files whose diagnostics changed."""
        before = self._entries.pop(key, ())
        if problems:
            self._entries[key] = tuple(problems)
        if tuple(before) == tuple(problems):
            return set()
        return {problem.path for problem in (*before, *problems)}

    def keep_only(self, keys: set[str], *, collect: bool) -> set[Path]:
        """Forget the test (or collection) entries not in ``keys``; the files that changed."""
        changed: set[Path] = set()
        for key in list(self._entries):
            if key.startswith(COLLECT_KEY) == collect and key not in keys:
                changed.update(problem.path for problem in self._entries.pop(key))
        return changed

    def diagnostics_for(self, path: Path) -> list[Diagnostic]:
        return [
            problem.diagnostic
            for problems in self._entries.values()
            for problem in problems
            if problem.path == path
        ]
