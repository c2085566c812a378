"""``podlink up`` and ``podlink debug``: a session in this terminal, its log printed here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from podlink import protocol
from podlink.cli.common import (
    CONFIG_OPTION,
    EXIT_BAD_CONFIG,
    EXIT_FAILED,
    FOLDER_ARGUMENT,
    exit_on_known_errors,
    fail,
)
from podlink.config import ConfigError
from podlink.diagnostics import Diagnostic, DiagnosticSource
from podlink.runtime import FolderServed, claim_folder, setup_logging
from podlink.signal_channel import answer_requests_on_signal


@click.command("up")
@FOLDER_ARGUMENT
@CONFIG_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def up(folder: Path, config_file: str | None, verbose: bool) -> None:
    """Start a session for FOLDER here: sync it, watch it, run the app. Ctrl-C stops it."""
    _serve(folder, config_file, verbose=verbose, debug=False)


@click.command("debug")
@FOLDER_ARGUMENT
@CONFIG_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def debug(folder: Path, config_file: str | None, verbose: bool) -> None:
    """Like `up`, with the app under debugpy: prints the VS Code attach configuration (JSON)
    once the debug server is ready, and keeps it there across restarts. Ctrl-C stops it."""
    _serve(folder, config_file, verbose=verbose, debug=True)


def _serve(folder: Path, config_file: str | None, *, verbose: bool, debug: bool) -> None:
    """``up`` and ``debug``: run the session here until Ctrl-C; errors a user can fix become
    a message and the documented exit code."""
    from podlink.session.debug import DebugNotPossible

    setup_logging(verbose=verbose)
    console = _up_console()
    try:
        with exit_on_known_errors():
            asyncio.run(_run_up(folder, config_file, console, debug=debug))
    except FolderServed as error:
        fail(f"podlink: {error}", EXIT_FAILED)
    except DebugNotPossible as error:
        fail(f"podlink: {error}", EXIT_BAD_CONFIG)


def _up_console() -> Console:
    """Lines are never wrapped by podlink: in a pipe or a file a line stays one line (for
    grep and log collectors), and a terminal wraps long ones itself."""
    return Console(highlight=False, soft_wrap=True)


class ConsoleListener:
    """Prints a session's log lines; the state goes to ``podlink status``.

    What the app, the sync or the target wrote is printed verbatim: only podlink's own
    prefix is styled, so ``[info]`` or a file named ``w[/z]`` is text, never markup.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self.last: protocol.Session | None = None
        # App output goes straight to the file, not through rich's rendering (which manages
        # about 1.6 MB/s): a dim prefix on a terminal, plain text in a pipe.
        styled = console.is_terminal and not console.no_color
        self._app_prefix = ("\x1b[2m{} app | \x1b[0m" if styled else "{} app | ").format
        self._clock_second = -1
        self._prefix = ""
        self._pending: list[str] = []

    def session_changed(self, session: protocol.Session) -> None:
        if self.last is not None and session.state != self.last.state:
            self._line(("session", "bold"), str(session.state))
        self.last = session

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None:
        if source == "app":
            self._app_line(text)
        else:
            self._line((source, "cyan"), text)

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        for each in diagnostics:
            self._line((source, "bold red"), f"{path}:{each.line}: {each.message}")

    def show_error(self, message: str) -> None:
        self._line(("error", "bold red"), message)

    def _app_line(self, text: str) -> None:
        second = int(time.time())
        if second != self._clock_second:
            self._clock_second, self._prefix = second, self._app_prefix(_clock())
        # One write and flush per turn of the event loop (one piece of output read): prompt
        # in a pipe, cheap in a burst, and never more held than that piece.
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._write_pending)
        self._pending.append(f"{self._prefix}{text}\n")

    def _write_pending(self) -> None:
        text, self._pending = "".join(self._pending), []
        with contextlib.suppress(OSError, ValueError):
            self._console.file.write(text)
            self._console.file.flush()

    def _write_pending_now(self) -> None:
        if self._pending:
            self._write_pending()

    def _line(self, label: tuple[str, str], text: str) -> None:
        self._write_pending_now()  # the app's lines before it, in order
        self._console.print(Text.assemble((_clock(), "dim"), " ", label, " ", text), soft_wrap=True)


async def _run_up(
    folder: Path, config_file: str | None, console: Console, *, debug: bool = False
) -> None:

    # Held until this process ends: a second `up` for the folder would start the app twice
    # (and the copy would die on its port). Raises FolderServed. Editors' sessions and
    # `podlink test` start no app here, so they do not claim the folder.
    claim = claim_folder(folder.resolve())
    try:
        await _serve_up(folder, config_file, console, debug=debug)
    finally:
        os.close(claim)


async def _serve_up(
    folder: Path, config_file: str | None, console: Console, *, debug: bool
) -> None:
    _start_image_build(folder, config_file)
    from podlink.session.registry import SessionRegistry

    listener = ConsoleListener(console)
    registry = SessionRegistry(listener)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    answer_requests_on_signal(registry, listener.show_error)

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
        Text.assemble(
            ("ready", "green"),
            f": {folder.resolve()} -> {session.to_protocol().target.name} "
            f"({status.files_synced} files synced); watching for changes, Ctrl-C to stop",
        )
    )
    try:
        if debug:
            configuration = await session.start_debug()
            console.print("attach configuration (a VS Code launch.json entry):")
            click.echo(json.dumps(configuration, indent=2))
        await stop.wait()
        console.print("stopping…")
    finally:
        await registry.stop_all()


def _start_image_build(folder: Path, config_file: str | None) -> None:
    """Start a kubernetes session's image build before the session's modules are imported,
    so that the Docker Engine builds meanwhile (``image_steps.start_early``)."""
    from podlink.config import load_config

    try:
        config = load_config(folder, config_file)
    except ConfigError:
        return  # the session reads the file again and reports it
    if config.target_kind == "kubernetes" and config.build and config.build.image:
        from podlink.targets.kubernetes.image_steps import start_early_for

        start_early_for(config)


def _clock() -> str:
    return time.strftime("%H:%M:%S")
