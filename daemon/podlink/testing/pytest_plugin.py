"""podlink's pytest plugin: runs inside the target and reports collection and results as data.

podlink copies this file into the target (as ``podlink_pytest_plugin.py``, outside the
user's project), puts its folder on ``PYTHONPATH`` and loads it with ``-p``. It writes one
JSON object per line to the file descriptor named by ``PODLINK_EVENTS_FD``, which is kept
apart from pytest's own output, so nothing human-readable is ever parsed. Without that
variable it does nothing.

Events:

* ``start``: ``{pytest, python}``, once pytest is configured (first).
* ``item`` (``PODLINK_PYTEST_MODE=discover`` only): a collected test with its absolute path,
  line range, its classes and whether it is parametrised.
* ``collected``: a test file was collected without error.
* ``collecterror``: a file or class that could not be collected, with the failure.
* ``result``: one test's outcome after its teardown: ``passed``, ``failed``, ``skipped``,
  ``xfailed`` (failed as its xfail mark expected), ``xpassed`` (passed despite a non-strict
  xfail mark; a strict one fails) or ``errored`` (a failing setup or teardown), duration,
  captured output, and for problems the message and the traceback's frames (absolute path,
  1-based line, function). A skip's single frame is where ``pytest.skip()`` was called (or
  the test, for a skip mark), as pytest reports it. A file or class skipped as a whole
  (``pytest.importorskip``, ``pytest.skip(allow_module_level=True)``) is one ``skipped``
  result under its own node id, as pytest's summary and JUnit report count it.
* ``finish``: ``{exitstatus}`` (last).

Bytecode caches: Python and pytest trust a cached module while the source's size and
mtime (in whole seconds) are unchanged. Two saves of the same size within one second, with
a run between them, would leave the second run on the first version's cache; podlink
promises that a run sees the saved files, so the plugin removes a cache written so close to
its source's mtime that the source may have changed after it.

It runs on the target's Python (3.8 or newer) and pytest (7 or newer), with nothing else
but the standard library: keep its syntax and APIs that old.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import inspect
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

EVENTS_FD_VARIABLE = "PODLINK_EVENTS_FD"
MODE_VARIABLE = "PODLINK_PYTEST_MODE"
# Captured output is for reading in an editor; a test that prints megabytes is cut here.
MAX_OUTPUT_CHARS = 64 * 1024
MAX_FRAMES = 100
# A cache written less than this after the start of its source's mtime second may predate a
# later save in that second; one second more allows for a clock a little off the editor's.
CACHE_WINDOW_SECONDS = 2.0

if TYPE_CHECKING:
    from collections.abc import Generator

    # Aliases only for the checker: the target's Python may be older than these spellings.
    Failure = dict[str, Any]


def remove_ambiguous_cache(source: str, cached: str) -> None:
    try:
        source_mtime = os.stat(source).st_mtime
        cache_mtime = os.stat(cached).st_mtime
    except OSError:
        return
    if cache_mtime < int(source_mtime) + CACHE_WINDOW_SECONDS:
        with contextlib.suppress(OSError):
            os.unlink(cached)


class FreshBytecodeFinder:
    """Sits just before the standard path finder: removes a module's possibly stale cache,
    then lets the standard finder find and load the module as usual."""

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> None:
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        origin = spec.origin if spec is not None and spec.has_location else None
        if spec is not None and spec.cached and origin and origin.endswith(".py"):
            remove_ambiguous_cache(origin, spec.cached)

    @classmethod
    def invalidate_caches(cls) -> None:
        pass


def _install_bytecode_check() -> None:
    finders: list[Any] = sys.meta_path
    if FreshBytecodeFinder in finders:
        return
    try:
        position = finders.index(importlib.machinery.PathFinder)
    except ValueError:
        position = len(finders)
    finders.insert(position, FreshBytecodeFinder)


def _rewritten_cache(source: Path) -> Path | None:
    """Where pytest keeps a test file's rewritten bytecode (its own naming, not Python's)."""
    try:
        from _pytest.assertion.rewrite import PYC_TAIL, get_cache_dir
    except ImportError:
        return None
    return get_cache_dir(source) / (source.name[:-3] + PYC_TAIL)


if os.environ.get(EVENTS_FD_VARIABLE):
    # Now, before conftest files and test modules are imported.
    _install_bytecode_check()


def pytest_configure(config: pytest.Config) -> None:
    descriptor = os.environ.get(EVENTS_FD_VARIABLE)
    if not descriptor:
        return
    reporter = EventReporter(int(descriptor), os.environ.get(MODE_VARIABLE) == "discover")
    config.pluginmanager.register(reporter, "podlink-events")
    reporter.emit(
        {"event": "start", "pytest": pytest.__version__, "python": sys.version.split()[0]}
    )


class EventReporter:
    def __init__(self, descriptor: int, discover: bool) -> None:
        # The descriptor leads to podlink; the test's own subprocesses must not hold it open.
        os.set_inheritable(descriptor, False)
        self._descriptor = descriptor
        self._discover = discover
        self._failures: dict[str, dict[str, Failure]] = {}
        self._reports: dict[str, list[pytest.TestReport]] = {}
        self._paths: dict[str, str | None] = {}

    def emit(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event, default=str) + "\n").encode("utf-8", "replace")
        while data:
            written = os.write(self._descriptor, data)
            data = data[written:]

    # -- collection ---------------------------------------------------------------------

    def pytest_collect_file(self, file_path: Path) -> None:
        if file_path.suffix == ".py":
            cached = _rewritten_cache(file_path)
            if cached is not None:
                remove_ambiguous_cache(str(file_path), str(cached))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Generator[None, Any, None]:
        outcome = yield
        report = outcome.get_result()
        if not report.failed:
            if isinstance(collector, pytest.File):
                event = {"event": "collected", "nodeid": collector.nodeid}
                self.emit({**event, "path": _node_path(collector)})
            if report.skipped:
                # pytest counts a file (or class) skipped at collection as one skipped test.
                skip = _skip_failure(report)
                self.emit(
                    {
                        "event": "result",
                        "nodeid": collector.nodeid,
                        "outcome": "skipped",
                        "duration": 0.0,
                        "path": _node_path(collector),
                        "line": skip["frames"][0][1] if skip["frames"] else None,
                        "failure": skip,
                    }
                )
            return
        # pytest keeps the call on the report until the report is logged (collect_one_node).
        call = getattr(report, "call", None)
        excinfo = getattr(call, "excinfo", None)
        failure = describe_exception(_original_cause(excinfo.value)) if excinfo else None
        self.emit(
            {
                "event": "collecterror",
                "nodeid": collector.nodeid,
                "path": _node_path(collector),
                "failure": failure or {"message": str(report.longrepr), "frames": []},
            }
        )

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self._discover:
            return
        for item in session.items:
            self.emit(_describe_item(item))

    # -- runs ---------------------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        report = outcome.get_result()
        # The item's own path: report locations are relative to a rootdir podlink never sees.
        self._paths[item.nodeid] = _node_path(item)
        failure: Failure | None = None
        if report.failed and call.excinfo is not None:
            failure = describe_exception(call.excinfo.value)
        elif report.skipped and hasattr(report, "wasxfail"):
            failure = _xfail_failure(report, call)
        elif report.skipped:
            failure = _skip_failure(report)
        if failure is not None:
            self._failures.setdefault(item.nodeid, {})[call.when] = failure

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, Any, str]) -> None:
        reports = self._reports.pop(nodeid, [])
        failures = self._failures.pop(nodeid, {})
        path = self._paths.pop(nodeid, None)
        if not reports:
            return
        outcome, problem = _outcome(reports)
        event: dict[str, Any] = {
            "event": "result",
            "nodeid": nodeid,
            "outcome": outcome,
            "duration": sum(report.duration for report in reports),
            "path": path,
            "line": location[1] + 1 if isinstance(location[1], int) else None,
        }
        if problem is not None:
            failure = failures.get(problem.when)
            event["failure"] = failure or {"message": _text(problem), "frames": []}
        output = _captured_output(reports[-1])
        if output:
            event["output"] = output
        self.emit(event)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.emit({"event": "finish", "exitstatus": int(exitstatus)})


def _outcome(reports: list[pytest.TestReport]) -> tuple[str, pytest.TestReport | None]:
    """One outcome from a test's phases, and the report that explains it (None: passed).

    As pytest's own summary reads them: a strict xfail that passed is a failed call; an
    xfail that failed (or called ``pytest.xfail()``, in the test or a fixture) is skipped
    with ``wasxfail``; a non-strict one that passed is passed with ``wasxfail``.
    """
    by_phase = {report.when: report for report in reports}
    setup, call, teardown = by_phase.get("setup"), by_phase.get("call"), by_phase.get("teardown")
    if setup is not None and setup.failed:
        return "errored", setup
    if call is not None and call.failed:
        return "failed", call
    if teardown is not None and teardown.failed:
        return "errored", teardown
    for report in (setup, call):
        if report is not None and report.skipped:
            return ("xfailed" if hasattr(report, "wasxfail") else "skipped"), report
    if call is not None and hasattr(call, "wasxfail"):
        return "xpassed", call
    return "passed", None


def _skip_reason(text: str) -> str:
    return text[len("Skipped: ") :] if text.startswith("Skipped: ") else text


def _skip_failure(report: Any) -> Failure:
    """A skip's reason and, as pytest reports it, the line that skipped."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, line, reason = longrepr
        frames = [(_absolute(str(path)), int(line), "")] if isinstance(line, int) else []
        return {"message": _skip_reason(str(reason)), "frames": frames}
    return {"message": str(longrepr or ""), "frames": []}


def _xfail_reason(report: Any) -> str:
    reason = str(getattr(report, "wasxfail", "") or "")
    return reason[len("reason: ") :] if reason.startswith("reason: ") else reason


def _xfail_failure(report: Any, call: Any) -> Failure:
    """An expected failure: its reason, and where the test failed as it was expected to."""
    reason = _xfail_reason(report)
    excinfo = call.excinfo
    if excinfo is None:
        return {"message": reason, "frames": []}
    failure = describe_exception(excinfo.value)
    if reason and not excinfo.errisinstance(pytest.xfail.Exception):
        failure["message"] = f"{reason}\n{failure['message']}"
    elif reason:
        failure["message"] = reason
    return failure


def _text(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return _xfail_reason(report)
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return _skip_reason(str(longrepr[2]))
    return str(longrepr or "")


def describe_exception(error: BaseException) -> Failure:
    """The message a person reads first, and the frames where it happened, innermost last."""
    frames: list[tuple[str, int, str]] = []
    trace = error.__traceback__
    while trace is not None and len(frames) < MAX_FRAMES:
        frame = trace.tb_frame
        if not frame.f_locals.get("__tracebackhide__") and not frame.f_globals.get(
            "__tracebackhide__"
        ):
            frames.append(
                (_absolute(frame.f_code.co_filename), trace.tb_lineno, frame.f_code.co_name)
            )
        trace = trace.tb_next
    failure: Failure = {"message": exception_message(error), "frames": frames}
    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        # The frames lead to the compiler, not to the bad line: the error itself knows it.
        frames.append((_absolute(error.filename), error.lineno, "<module>"))
        if error.offset:
            failure["column"] = error.offset
    return failure


def exception_message(error: BaseException) -> str:
    """The exception's last line(s), as pytest's report shows them."""
    if isinstance(error, SyntaxError):
        return f"{type(error).__name__}: {error.msg}"
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    if isinstance(error, AssertionError) and str(error).startswith("assert "):
        # pytest's rewritten assertions explain themselves ("assert 2 == 3 ..."), and pytest
        # drops the type there; an AssertionError raised with a message of its own keeps it.
        prefix = type(error).__name__ + ": "
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text


def _original_cause(error: BaseException) -> BaseException:
    # pytest wraps import and syntax errors of a test file in a CollectError raised from them.
    while type(error).__name__ == "CollectError" and error.__cause__ is not None:
        error = error.__cause__
    return error


def _absolute(filename: str) -> str:
    if filename.startswith("<") or os.path.isabs(filename):
        return filename
    return os.path.abspath(filename)


def _node_path(node: Any) -> str | None:
    path = getattr(node, "path", None)
    return str(path) if path is not None else None


def _describe_item(item: pytest.Item) -> dict[str, Any]:
    classes = [node for node in item.listchain() if isinstance(node, pytest.Class)]
    start, end = _line_range(item)
    return {
        "event": "item",
        "nodeid": item.nodeid,
        "path": _node_path(item),
        "name": item.name,
        "function": getattr(item, "originalname", None) or item.name,
        "parametrized": hasattr(item, "callspec"),
        "line": start,
        "endLine": end,
        "classes": [[node.nodeid, node.name, *_line_range(node)] for node in classes],
    }


def _line_range(node: Any) -> tuple[int | None, int | None]:
    """1-based first and last line of a test function or class, where they can be known."""
    target: Any = getattr(node, "obj", None)
    try:
        lines, first = inspect.getsourcelines(target)
    except (TypeError, OSError):
        location = getattr(node, "location", None)
        if location and isinstance(location[1], int):
            return location[1] + 1, location[1] + 1
        return None, None
    return first, first + len(lines) - 1


def _captured_output(report: pytest.TestReport) -> str:
    # Each phase's report repeats the sections captured so far: the last one has them all.
    parts = [f"----- {title} -----\n{content}" for title, content in report.sections if content]
    text = "\n".join(parts)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + f"\n[... {len(text) - MAX_OUTPUT_CHARS} more characters]"
    return text
