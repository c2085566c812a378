"""Tests in the target: discovery, runs that stream one result per test, cancellation.

pytest runs in the target with podlink's plugin (``pytest_plugin.py``, copied there through
the session's file channel and loaded with ``-p``). A small ``sh`` wrapper gives the plugin
descriptor 3 (the exec's stdout) for its JSON events and sends everything pytest itself
prints to stderr, which becomes the session's ``test`` log. Nothing human-readable is parsed.

The events become results, ``podlink-test`` diagnostics and the tree of tests in
``report.py``. Each test owns its diagnostics, so running one test replaces only that
test's, and a full run also drops those of tests that no longer exist.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import importlib.resources
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from podlink import protocol
from podlink.command_host import CommandHost, Connected, connected
from podlink.command_run import plan_command, read_lines, tail_text
from podlink.config import CommandConfig
from podlink.ignored import note_left_out, paths_in
from podlink.targets.base import ExecStream, TargetUnavailable
from podlink.testing.report import (
    COLLECT_KEY,
    CollectedEvent,
    CollectErrorEvent,
    DiagnosticBook,
    Event,
    FinishEvent,
    InvalidTestRequest,
    ItemEvent,
    LocatedProblem,
    ReportedTest,
    ResultEvent,
    StartEvent,
    TestPaths,
    build_tree,
    decode_event,
    report_collect_error,
    report_result,
)

DEFAULT_TEST_COMMAND = CommandConfig(command=("python3", "-m", "pytest"))
PLUGIN_MODULE = "podlink_pytest_plugin"
EVENTS_FD = 3
# A SIGTERM stops pytest at once; a test that ignores it gets SIGKILL after this.
CANCEL_GRACE_SECONDS = 1.0
DISCOVERY_LOG_LINES = 40
NO_TESTS_COLLECTED = 5  # pytest's exit code

# Descriptor 3 is the exec's stdout, reserved for the plugin's events; pytest's own stdout
# joins stderr. The plugin's folder goes in front of any PYTHONPATH the target already has.
WRAPPER = (
    "sh",
    "-c",
    f"exec {EVENTS_FD}>&1 1>&2; "
    'PYTHONPATH="$PODLINK_PLUGIN_PATH${PYTHONPATH:+:$PYTHONPATH}"; export PYTHONPATH; '
    'exec "$@"',
    "podlink-test",
)


# -- runs ----------------------------------------------------------------------------------


@dataclass
class RunSummary:
    run_id: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errored: int = 0
    xfailed: int = 0
    xpassed: int = 0
    duration_ms: float = 0.0
    exit_code: int | None = None
    cancelled: bool = False
    # Why the run went wrong beyond failing tests, in words (an id that matched nothing).
    problem: str | None = None

    def count(self, outcome: protocol.TestOutcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    @property
    def reported(self) -> int:
        return self.passed + self.failed + self.skipped + self.errored + self.xfailed + self.xpassed

    @property
    def succeeded(self) -> bool:
        if self.failed or self.errored:
            return False
        # pytest exits with 5 ("no tests collected") when every file it was given was skipped
        # at collection, though it reports those skips: that run did not fail.
        return self.exit_code == 0 or (self.exit_code == NO_TESTS_COLLECTED and self.reported > 0)

    def to_protocol(self) -> protocol.RunTestsResult:
        return protocol.RunTestsResult(
            run_id=self.run_id,
            passed=self.passed,
            failed=self.failed,
            skipped=self.skipped,
            errored=self.errored,
            xfailed=self.xfailed,
            xpassed=self.xpassed,
            duration_ms=round(self.duration_ms, 1),
            problem=self.problem,
        )


@dataclass
class _ActiveRun:
    execution: ExecStream | None = None
    cancelled: bool = False
    stopping: asyncio.Task[int] | None = None
    # The last lines the command wrote to stderr.
    stderr_tail: list[str] = field(default_factory=list)


ResultCallback = Callable[[ReportedTest], None]


class RunsUnder(Protocol):
    """What a run's pytest runs under (the debugger): it may change the command and its
    environment before the start, hears when the command has started and when pytest
    reported the end of its session."""

    async def launch(
        self, argv: tuple[str, ...], env: Mapping[str, str], cwd: str
    ) -> tuple[tuple[str, ...], dict[str, str]]: ...

    def started(self) -> None: ...

    async def finishing(self) -> None:
        """pytest reported the end of its session: stop, once it exits, what would outlive
        it holding its output open (the run ends only when its output does)."""


PytestPass = Literal["run", "discover"]


class TestRunner:
    """A session's tests: discovery, runs, cancellation and the diagnostics they leave."""

    __test__ = False

    def __init__(self, host: CommandHost) -> None:
        self._host = host
        self._runs: dict[str, _ActiveRun] = {}
        self._book = DiagnosticBook()

    async def discover(self) -> protocol.DiscoverTestsResult:
        """Collect the tests (after a flush); collection errors become diagnostics."""
        await self._host.flush()
        link = connected(self._host)
        test_paths = self._test_paths(link)
        items: list[ItemEvent] = []
        skipped: list[ResultEvent] = []
        errors: dict[str, LocatedProblem | None] = {}

        def handle(event: Event) -> None:
            if isinstance(event, ItemEvent):
                items.append(event)
            elif isinstance(event, ResultEvent) and event.outcome == "skipped":
                skipped.append(event)  # a file skipped as a whole while it was collected
            elif isinstance(event, CollectErrorEvent):
                reported = report_collect_error(event, "", test_paths)
                errors[COLLECT_KEY + reported.params.id] = reported.problem

        # Registered like a run, so that stopping the session stops it too.
        discovery_id = f"discovery-{uuid.uuid4().hex[:8]}"
        run = self._runs[discovery_id] = _ActiveRun()
        try:
            await self._execute(link, run, "discover", ["--collect-only", "-q"], handle)
        finally:
            del self._runs[discovery_id]
        # Discovery collects everything: a file without an error now has none left.
        changed = self._book.keep_only(set(errors), collect=True)
        for key, problem in errors.items():
            changed |= self._book.replace(key, [problem] if problem else [])
        self._publish(changed)
        return protocol.DiscoverTestsResult(tests=build_tree(items, test_paths, skipped))

    async def run(
        self,
        ids: Sequence[str] | None = None,
        run_id: str | None = None,
        on_result: ResultCallback | None = None,
        under: RunsUnder | None = None,
    ) -> RunSummary:
        """Flush, run the tests (all, or ``ids``), report each as it ends; the summary.

        ``under``: what pytest runs under (the debugger), when anything."""
        run_id = run_id or uuid.uuid4().hex[:12]
        if run_id in self._runs:
            raise InvalidTestRequest(f"a run with id {run_id!r} is still going")
        run = self._runs[run_id] = _ActiveRun()
        summary = RunSummary(run_id)
        started = time.monotonic()
        try:
            await self._host.flush()
            link = connected(self._host)
            test_paths = self._test_paths(link)
            arguments = [test_paths.target_argument(test_id) for test_id in ids or ()]
            seen: set[str] = set()

            def handle(event: Event) -> None:
                if isinstance(event, CollectedEvent):
                    key = COLLECT_KEY + test_paths.local_id(event.nodeid, event.path)
                    self._publish(self._book.replace(key, []))
                    return
                if isinstance(event, ResultEvent):
                    reported = report_result(event, run_id, test_paths)
                    reported = self._note_left_out(reported, test_paths)
                    key = reported.params.id
                elif isinstance(event, CollectErrorEvent):
                    reported = report_collect_error(event, run_id, test_paths)
                    key = COLLECT_KEY + reported.params.id
                else:
                    return
                seen.add(key)
                summary.count(reported.params.outcome)
                problems = [reported.problem] if reported.problem else []
                self._publish(self._book.replace(key, problems))
                if on_result is not None:
                    on_result(reported)

            if not run.cancelled:
                options = ["--continue-on-collection-errors", *arguments]
                summary.exit_code = await self._execute(link, run, "run", options, handle, under)
            summary.cancelled = run.cancelled
            # A run of only module-level skips exits 5 and yet succeeded: nothing to explain.
            if not run.cancelled and not summary.succeeded:
                summary.problem = _run_problem(
                    summary.exit_code, list(zip(ids or (), arguments, strict=True)), run
                )
                if summary.problem is not None:
                    self._host.log("test", summary.problem)
            if not ids and not run.cancelled:
                # Everything ran: what did not report any more (a deleted test) is gone.
                self._publish(self._book.keep_only(seen, collect=False))
        finally:
            del self._runs[run_id]
            summary.duration_ms = (time.monotonic() - started) * 1000
        return summary

    def _note_left_out(self, reported: ReportedTest, test_paths: TestPaths) -> ReportedTest:
        """A failure that names a path the sync leaves out says so: the file is missing in
        the target because an ignore rule keeps it there, not because the code is wrong."""
        params = reported.params
        if params.outcome not in ("failed", "errored") or not params.message:
            return reported
        named = [
            test_paths.paths.to_local(text, cwd=test_paths.cwd, must_exist=False, synced_only=False)
            for text in paths_in(params.message)
        ]
        note = note_left_out(
            [path for path in named if path is not None],
            [(engine.local_root, engine.rules) for engine in self._host.engines],
            test_paths.folder,
        )
        if note is None:
            return reported
        message = f"{params.message}\n{note}"
        problem = reported.problem
        if problem is not None:
            diagnostic = msgspec.structs.replace(problem.diagnostic, message=message)
            problem = LocatedProblem(problem.path, diagnostic)
        return ReportedTest(msgspec.structs.replace(params, message=message), problem)

    async def cancel(self, run_id: str) -> bool:
        """Stop a run and everything it started; False when no such run is going."""
        run = self._runs.get(run_id)
        if run is None:
            return False
        run.cancelled = True
        if run.execution is not None:
            await self._terminate(run)
        return True

    async def stop(self) -> None:
        """Cancel every run (the session is stopping)."""
        await asyncio.gather(*(self.cancel(run_id) for run_id in list(self._runs)))

    # -- in the target ---------------------------------------------------------------------

    def _test_paths(self, link: Connected) -> TestPaths:
        plan = plan_command(self._section, self._host.config, link.target)
        return TestPaths(self._host.config.folder, link.paths, plan.cwd)

    @property
    def _section(self) -> CommandConfig:
        return self._host.config.test or DEFAULT_TEST_COMMAND

    async def _execute(
        self,
        link: Connected,
        run: _ActiveRun,
        mode: PytestPass,
        options: Sequence[str],
        handle: Callable[[Event], None],
        under: RunsUnder | None = None,
    ) -> int:
        """Run pytest with the plugin; every event goes to ``handle``; pytest's exit code."""
        plugin_folder = await install_plugin(link)
        plan = plan_command(self._section, self._host.config, link.target)
        env = {
            **plan.env,
            "PODLINK_EVENTS_FD": str(EVENTS_FD),
            "PODLINK_PLUGIN_PATH": plugin_folder,
            "PODLINK_PYTEST_MODE": mode,
        }
        # A run of a few ids would otherwise root itself at their folder and miss the
        # conftest.py files above it, unlike a run of everything.
        rootdir = (
            [] if any(a.startswith("--rootdir") for a in plan.argv) else ["--rootdir", plan.cwd]
        )
        command = tuple(plan.argv)
        if under is not None:
            command, env = await under.launch(command, env, plan.cwd)
        argv = [*WRAPPER, *command, "-p", PLUGIN_MODULE, *rootdir, *options]
        execution = await link.target.exec(argv, env=env, cwd=plan.cwd)
        run.execution = execution
        if under is not None:
            under.started()
        if run.cancelled:
            await self._terminate(run)
        output: collections.deque[str] = collections.deque(maxlen=DISCOVERY_LOG_LINES)
        started = finished = False

        async def forward_output() -> None:
            if execution.stderr is None:
                return
            async for line in read_lines(execution.stderr):
                output.append(line)
                if mode == "run":
                    self._host.log("test", line)

        forwarding = asyncio.create_task(forward_output())
        exit_code: int | None = None
        try:
            async for line in read_lines(execution.stdout):
                event = decode_event(line)
                if isinstance(event, StartEvent):
                    started = True
                elif isinstance(event, FinishEvent):
                    finished = True
                    if under is not None:
                        await under.finishing()
                elif event is not None:
                    handle(event)
            await forwarding
            exit_code = await execution.wait()
        finally:
            if exit_code is None:
                forwarding.cancel()
                await asyncio.shield(self._terminate(run))
        run.stderr_tail = list(output)
        if run.cancelled:
            return exit_code
        assert exit_code is not None
        if not started or (mode == "discover" and not finished):
            if mode == "discover":  # a run's lines went to the log as they came
                for line in output:
                    self._host.log("test", line)
            raise TargetUnavailable(
                f"`{plan.display}` did not run pytest with podlink's plugin in the target "
                f"(exit code {exit_code}); the test command must start pytest, which must be "
                f"installed there: {tail_text(list(output)) or 'no output'}"
            )
        return exit_code

    async def _terminate(self, run: _ActiveRun) -> None:
        """Stop the run's command; a second caller waits for the first stop."""
        execution = run.execution
        if execution is None:
            return
        if run.stopping is None:
            run.stopping = asyncio.ensure_future(execution.terminate(CANCEL_GRACE_SECONDS))
        with contextlib.suppress(Exception):
            await asyncio.shield(run.stopping)

    def _publish(self, paths: Iterable[Path]) -> None:
        for path in sorted(paths):
            self._host.publish_diagnostics("podlink-test", path, self._book.diagnostics_for(path))


# pytest's exit codes for "the command line was wrong" (an id not found) and "no tests".
PYTEST_USAGE_ERROR = 4
_NOT_FOUND = re.compile(r"^ERROR: (?:file or directory )?not found: (.+?)\s*$")


def _run_problem(
    exit_code: int | None, requested: Sequence[tuple[str, str]], run: _ActiveRun
) -> str | None:
    """What to tell the user when pytest ended other than passed or failed.

    ``requested``: each id as the user gave it, with the argument it became in the target.
    """
    if exit_code in (None, 0, 1):
        return None
    if requested and exit_code in (PYTEST_USAGE_ERROR, NO_TESTS_COLLECTED):
        missing = [m.group(1) for line in run.stderr_tail if (m := _NOT_FOUND.match(line))]
        named = [
            test_id
            for test_id, argument in requested
            if any(found == argument or found.endswith(f"/{argument}") for found in missing)
        ]
        if named or missing or exit_code == NO_TESTS_COLLECTED:
            unmatched = named or [test_id for test_id, _ in requested]
            return f"no test matched {', '.join(unmatched)}"
    why = tail_text(run.stderr_tail, 5)
    return f"pytest exited with code {exit_code}" + (f": {why}" if why else "")


async def install_plugin(link: Connected) -> str:
    """Put the plugin into the target, in a folder named by its content; that folder.

    Written on every run (one round trip): a target's /tmp may have been emptied since.
    """
    plugin = importlib.resources.files("podlink.testing").joinpath("pytest_plugin.py")
    digest = hashlib.sha256(plugin.read_bytes()).hexdigest()[:16]
    folder = link.target.target_path(f"/tmp/podlink-pytest-{digest}")
    await link.transport.ensure_root(folder)
    with importlib.resources.as_file(plugin) as local_copy:
        await link.transport.write_file(folder, f"{PLUGIN_MODULE}.py", local_copy)
    return folder
