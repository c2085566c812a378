"""The ``podlink`` command line: ``up`` in a terminal, ``init``, ``status``, and ``serve``
for editors.

Exit codes: 0 success, 1 the target or the work failed, 2 the configuration (or the command
line) is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from podlink import __version__
from podlink import protocol as wire
from podlink.config import ConfigError
from podlink.diagnostics import Diagnostic, DiagnosticSource
from podlink.runtime import sessions_dir, setup_logging
from podlink.targets.base import TargetUnavailable

EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2

FOLDER_ARGUMENT = click.argument(
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    required=False,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="podlink")
def main() -> None:
    """podlink: your workspace, synced into a dev container or pod, driven from your editor."""


@main.command()
@FOLDER_ARGUMENT
@click.option("--config", "config_file", help="Config file, relative to FOLDER.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def up(folder: Path, config_file: str | None, verbose: bool) -> None:
    """Start a session for FOLDER here: sync it, watch it, run the app. Ctrl-C stops it."""
    setup_logging(verbose=verbose)
    console = Console(highlight=False)
    try:
        asyncio.run(_run_up(folder, config_file, console))
    except ConfigError as error:
        _fail(str(error), EXIT_BAD_CONFIG)
    except TargetUnavailable as error:
        _fail(f"podlink: {error}", EXIT_FAILED)


class ConsoleListener:
    """Prints a session's log lines; the state goes to ``podlink status``."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self.last: wire.Session | None = None

    def session_changed(self, session: wire.Session) -> None:
        if self.last is not None and session.state != self.last.state:
            self._console.print(f"[dim]{_clock()}[/] [bold]session[/] {session.state}")
        self.last = session

    def log(self, session_id: str, source: wire.LogSource, text: str) -> None:
        if source == "app":
            self._console.print(f"[dim]{_clock()} app |[/] {text}", markup=True, soft_wrap=True)
        else:
            self._console.print(f"[dim]{_clock()}[/] [cyan]{source}[/] {text}", soft_wrap=True)

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        for each in diagnostics:
            self._console.print(
                f"[dim]{_clock()}[/] [bold red]{source}[/] {path}:{each.line}: {each.message}",
                soft_wrap=True,
                markup=True,
            )

    def show_error(self, message: str) -> None:
        self._console.print(f"[dim]{_clock()}[/] [bold red]error[/] {message}", soft_wrap=True)


async def _run_up(folder: Path, config_file: str | None, console: Console) -> None:
    from podlink.registry import SessionRegistry

    listener = ConsoleListener(console)
    registry = SessionRegistry(listener)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    with Progress(
        TextColumn("initial sync"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("sync", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        session = await registry.start(folder, config_file, progress=report)
    status = session.sync_status()
    console.print(
        f"[green]ready[/]: {folder.resolve()} -> {session.to_protocol().target.name} "
        f"({status.files_synced} files synced); watching for changes, Ctrl-C to stop"
    )
    await stop.wait()
    console.print("stopping…")
    await registry.stop_all()


@main.command()
@FOLDER_ARGUMENT
@click.option("--force", is_flag=True, help="Overwrite an existing podlink.yaml.")
def init(folder: Path, force: bool) -> None:
    """Write a commented podlink.yaml for FOLDER, guessed from what the project holds."""
    from podlink.scaffold import write_starter_config

    try:
        written = write_starter_config(folder, force=force)
    except FileExistsError as error:
        _fail(str(error), EXIT_BAD_CONFIG)
    click.echo(f"wrote {written}; edit it, then run `podlink up`")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the sessions as JSON.")
def status(as_json: bool) -> None:
    """Show the sessions running on this machine (from `podlink up` or an editor)."""
    sessions = [record["session"] for record in _live_session_records()]
    if as_json:
        click.echo(json.dumps(sessions, indent=2))
        return
    if not sessions:
        click.echo("no podlink sessions are running")
        return
    for session in sessions:
        sync = session["sync"]
        latency = sync.get("lastLatencyMs")
        click.echo(f"{session['folder']}  [{session['state']}]")
        click.echo(f"  target  {session['target']['kind']}: {session['target']['name']}")
        click.echo(
            f"  sync    {sync['state']}, {sync['filesSynced']} files synced, "
            f"{sync['pending']} pending"
            + (f", last change in {latency:.0f} ms" if latency is not None else "")
        )
        for problem in sync.get("problems", []):
            click.echo(f"  problem {problem['path']}: {problem['message']}")
        app = session.get("app")
        if app:
            code = f" (exit code {app['exitCode']})" if app.get("exitCode") is not None else ""
            click.echo(f"  app     {app['state']}{code}: {' '.join(app['command'])}")
        if session.get("error"):
            click.echo(f"  error   {session['error']}")


def _live_session_records() -> list[dict[str, Any]]:
    records = []
    folder = sessions_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if _process_alive(int(record.get("pid", 0))):
            records.append(record)
        else:
            with contextlib.suppress(OSError):
                path.unlink()  # left by a daemon that was killed
    return records


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@main.command()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to the log file.")
def serve(verbose: bool) -> None:
    """Serve one editor over stdio (JSON-RPC with LSP framing). Logs go to a file, not stdout."""
    setup_logging(verbose=verbose)
    from podlink.server.lsp import serve_stdio

    serve_stdio()


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)
