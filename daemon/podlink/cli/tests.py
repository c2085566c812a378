"""``podlink test`` and ``podlink build``: one run in the target, from a terminal or CI.

Each starts a session of its own for the folder (sync, no app), flushes, runs, and stops
the session again, so it leaves nothing running; a session of ``podlink up`` or an editor
may go on beside it. Exit codes as for every command: 0 success, 1 the tests or the build
failed (or the target did), 2 the configuration or the command line is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
import msgspec
from rich.console import Console
from rich.markup import escape

from podlink import protocol
from podlink.cli.common import (
    CONFIG_OPTION,
    EXIT_BAD_CONFIG,
    EXIT_FAILED,
    FOLDER_ARGUMENT,
    FOLDER_OPTION,
    exit_on_known_errors,
    fail,
)
from podlink.config import load_config
from podlink.diagnostics import Diagnostic, DiagnosticSource

if TYPE_CHECKING:
    from podlink.session import Session
    from podlink.testing.report import ReportedTest


class _TerminalListener:
    """Shows the sources asked for as they come; errors always."""

    def __init__(self, console: Console, sources: set[str]) -> None:
        self._console = console
        self._sources = sources

    def session_changed(self, session: protocol.Session) -> None:
        pass

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None:
        if source in self._sources:
            self._console.print(escape(text), soft_wrap=True, highlight=False)

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        pass  # each command prints its own results

    def show_error(self, message: str) -> None:
        self._console.print(f"[bold red]error[/] {escape(message)}", soft_wrap=True)


@contextlib.asynccontextmanager
async def _session(
    folder: Path, config_file: str | None, listener: _TerminalListener
) -> AsyncIterator[Session]:
    from podlink.session import Session

    config = await asyncio.to_thread(load_config, folder, config_file)
    # The app is `podlink up`'s business; a test run must not start a second one.
    session = Session(msgspec.structs.replace(config, run=None), listener)
    await session.start()
    try:
        yield session
    finally:
        await session.stop()


@click.command("test")
@click.argument("ids", nargs=-1)
@FOLDER_OPTION
@CONFIG_OPTION
@click.option(
    "--junit-xml",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the results as JUnit XML, for CI systems.",
)
@click.option("-v", "--verbose", is_flag=True, help="Also print pytest's own output.")
@click.option(
    "--debug",
    is_flag=True,
    help="Run pytest under debugpy: print the attach configuration and wait for a debugger.",
)
def test_command(
    ids: tuple[str, ...],
    folder: Path,
    config_file: str | None,
    junit_xml: Path | None,
    verbose: bool,
    debug: bool,
) -> None:
    """Run the tests in the target (all, or IDS such as tests/test_api.py::test_create).

    The workspace is synced first, so the run sees every saved file. Failures are printed with
    the local file and line as they happen; the exit code is 1 when a test failed. With
    --debug, pytest waits under debugpy until a debugger attaches with the printed
    configuration (a VS Code launch.json entry).
    """
    from podlink.runtime import setup_logging

    setup_logging()
    console = Console(highlight=False)
    with exit_on_known_errors():
        code = asyncio.run(
            _run_tests(folder, config_file, ids, junit_xml, console, verbose, debug=debug)
        )
    sys.exit(code)


async def _run_tests(
    folder: Path,
    config_file: str | None,
    ids: Sequence[str],
    junit_path: Path | None,
    console: Console,
    verbose: bool,
    *,
    debug: bool = False,
) -> int:
    from podlink.testing.junit import junit_xml
    from podlink.testing.report import InvalidTestRequest

    listener = _TerminalListener(console, {"test", "sync", "daemon"} if verbose else set())
    results: list[protocol.TestResultParams] = []
    counts = dict.fromkeys(("passed", "failed", "errored", "skipped", "xfailed", "xpassed"), 0)
    started = time.monotonic()

    def summary_line() -> str:
        shown = [f"{count} {outcome}" for outcome, count in counts.items() if count]
        took = time.monotonic() - started
        return f"{', '.join(shown) or 'no tests'} in {took:.1f} s"

    with console.status("syncing the workspace into the target…") as status:

        def on_result(reported: ReportedTest) -> None:
            result = reported.params
            results.append(result)
            counts[result.outcome] += 1
            status.update(summary_line())
            if result.outcome in ("failed", "errored"):
                _print_problem(console, reported)

        async with _session(folder, config_file, listener) as session:
            status.update("running tests…")
            try:
                if debug:
                    _, configuration, running = await session.debug_tests(ids, None, on_result)
                    console.print("attach configuration (a VS Code launch.json entry):")
                    console.print(json.dumps(configuration, indent=2), soft_wrap=True, markup=False)
                    status.update("pytest waits for a debugger to attach…")
                    summary = await running
                else:
                    summary = await session.tests.run(ids, on_result=on_result)
            except InvalidTestRequest as error:
                fail(f"podlink: {error}", EXIT_BAD_CONFIG)
    style = "green" if summary.succeeded else "red"
    console.print(f"[bold {style}]{escape(summary_line())}[/]")
    if summary.problem is not None and not summary.succeeded:
        console.print(escape(summary.problem), soft_wrap=True, highlight=False)
    if junit_path is not None:
        seconds = summary.duration_ms / 1000
        junit_path.write_bytes(
            junit_xml(results, suite=folder.resolve().name, duration_seconds=seconds)
        )
    return 0 if summary.succeeded else EXIT_FAILED


def _print_problem(console: Console, reported: ReportedTest) -> None:
    result = reported.params
    label = "FAILED" if result.outcome == "failed" else "ERROR"
    console.print(f"[bold red]{label}[/] {escape(result.id)}", soft_wrap=True)
    message = result.message or ""
    problem = reported.problem
    if problem is not None:
        where = f"{problem.path}:{problem.diagnostic.line}"
        first, _, rest = message.partition("\n")
        console.print(f"  {escape(where)}: {escape(first)}", soft_wrap=True)
        for line in rest.splitlines():
            console.print(f"    {escape(line)}", soft_wrap=True)
        for related in problem.diagnostic.related:
            console.print(
                f"  [dim]{escape(f'{related.path}:{related.line}: {related.message}')}[/]",
                soft_wrap=True,
            )
    elif message:
        console.print(f"  {escape(message)}", soft_wrap=True)
    if result.output:
        for line in result.output.splitlines():
            console.print(f"  [dim]{escape(line)}[/]", soft_wrap=True)


@click.command("build")
@FOLDER_ARGUMENT
@CONFIG_OPTION
def build_command(folder: Path, config_file: str | None) -> None:
    """Run the build command (`build:` in podlink.yaml) in FOLDER's target.

    The workspace is synced first. The build's output is printed as it comes, then its
    errors with local file and line; the exit code is 1 when the build failed.
    """
    from podlink.runtime import setup_logging

    setup_logging()
    console = Console(highlight=False)
    with exit_on_known_errors():
        code = asyncio.run(_run_build(folder, config_file, console))
    sys.exit(code)


async def _run_build(folder: Path, config_file: str | None, console: Console) -> int:
    from podlink.build import NoBuildCommand

    listener = _TerminalListener(console, {"build"})
    async with _session(folder, config_file, listener) as session:
        try:
            outcome = await session.builds.run()
        except NoBuildCommand as error:
            fail(f"podlink: {error}", EXIT_BAD_CONFIG)
    for path, diagnostic in outcome.each():
        where = f"{path}:{diagnostic.line}:{diagnostic.column}"
        console.print(
            f"{escape(where)}: {diagnostic.severity}: {escape(diagnostic.message)}",
            soft_wrap=True,
        )
    return 0 if outcome.exit_code == 0 else EXIT_FAILED
