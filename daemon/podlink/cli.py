"""The ``podlink`` command line: ``up`` in a terminal, ``init``, ``status``, ``shell`` and
``logs`` to look inside a target, ``purge`` to clean up, and ``serve`` for editors.

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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from podlink import __version__
from podlink import protocol as wire
from podlink.cli_purge import purge_command
from podlink.cli_tests import build_command, test_command
from podlink.cli_why import why_command
from podlink.config import (
    ConfigError,
    DockerTargetConfig,
    LocalTargetConfig,
    load_config,
)
from podlink.diagnostics import Diagnostic, DiagnosticSource
from podlink.runtime import FolderServed, claim_folder, live_session_records, setup_logging
from podlink.sync_requests import SyncAction, answer_requests_on_signal, ask_running_session
from podlink.targets.base import ContainerLogs, Deploys, LogRequest, Target, TargetUnavailable
from podlink.terminal import plural

if TYPE_CHECKING:
    from podlink.targets.local import LocalTarget

EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
# Where a command after `--` is kept between parsing and the command (click's ctx.meta).
TRAILING_COMMAND = "podlink.trailing_command"
IGNORED_SHOWN = 5

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


main.add_command(test_command)
main.add_command(build_command)
main.add_command(why_command)
main.add_command(purge_command)


@main.command()
@FOLDER_ARGUMENT
@click.option("--config", "config_file", help="Config file, relative to FOLDER.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def up(folder: Path, config_file: str | None, verbose: bool) -> None:
    """Start a session for FOLDER here: sync it, watch it, run the app. Ctrl-C stops it."""
    setup_logging(verbose=verbose)
    console = _up_console()
    try:
        asyncio.run(_run_up(folder, config_file, console))
    except ConfigError as error:
        _fail(str(error), EXIT_BAD_CONFIG)
    except FolderServed as error:
        _fail(f"podlink: {error}", EXIT_FAILED)
    except TargetUnavailable as error:
        _fail(f"podlink: {error}", EXIT_FAILED)


@main.command()
@FOLDER_ARGUMENT
@click.option("--config", "config_file", help="Config file, relative to FOLDER.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def debug(folder: Path, config_file: str | None, verbose: bool) -> None:
    """Like `up`, with the app under debugpy: prints the VS Code attach configuration (JSON)
    once the debug server is ready, and keeps it there across restarts. Ctrl-C stops it."""
    from podlink.session.debug import DebugNotPossible

    setup_logging(verbose=verbose)
    console = _up_console()
    try:
        asyncio.run(_run_up(folder, config_file, console, debug=True))
    except ConfigError as error:
        _fail(str(error), EXIT_BAD_CONFIG)
    except FolderServed as error:
        _fail(f"podlink: {error}", EXIT_FAILED)
    except DebugNotPossible as error:
        _fail(f"podlink: {error}", EXIT_BAD_CONFIG)
    except TargetUnavailable as error:
        _fail(f"podlink: {error}", EXIT_FAILED)


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
        self.last: wire.Session | None = None
        # App output goes straight to the file, not through rich's rendering (which manages
        # about 1.6 MB/s): a dim prefix on a terminal, plain text in a pipe.
        styled = console.is_terminal and not console.no_color
        self._app_prefix = ("\x1b[2m{} app | \x1b[0m" if styled else "{} app | ").format
        self._clock_second = -1
        self._prefix = ""
        self._pending: list[str] = []

    def session_changed(self, session: wire.Session) -> None:
        if self.last is not None and session.state != self.last.state:
            self._line(("session", "bold"), str(session.state))
        self.last = session

    def log(self, session_id: str, source: wire.LogSource, text: str) -> None:
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
    sessions = [record["session"] for record in live_session_records()]
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
        for problem in (session["target"].get("detail") or {}).get("problems") or []:
            click.echo(f"  pod     {problem}")
        click.echo(
            f"  sync    {sync['state']}, {sync['filesSynced']} files synced, "
            f"{sync['pending']} pending"
            + (f", last change in {latency:.0f} ms" if latency is not None else "")
        )
        ignored = sync.get("ignored")
        if ignored and (ignored["files"] or ignored["folders"]):
            shown = ", ".join(ignored["examples"][:IGNORED_SHOWN])
            more = ", …" if len(ignored["examples"]) > IGNORED_SHOWN else ""
            click.echo(
                f"  ignored {plural(ignored['files'], 'file')} and "
                f"{plural(ignored['folders'], 'folder')} not synced by ignore rules "
                f"({shown}{more}); `podlink why PATH` says which rule"
            )
        for problem in sync.get("problems", []):
            click.echo(f"  problem {problem['path']}: {problem['message']}")
        app = session.get("app")
        if app:
            code = f" (exit code {app['exitCode']})" if app.get("exitCode") is not None else ""
            click.echo(f"  app     {app['state']}{code}: {' '.join(app['command'])}")
        for forward in session.get("ports", []):
            problem = f" ({forward['error']})" if forward.get("error") else ""
            click.echo(
                f"  port    127.0.0.1:{forward['localPort']} -> {forward['remotePort']}: "
                f"{forward['state']}, {forward['connections']} connection(s){problem}"
            )
        if session.get("error"):
            click.echo(f"  error   {session['error']}")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path), default=".")
def resume(folder: Path) -> None:
    """Resume a sync that a safety halt paused, applying what it held back."""
    _ask_session(folder, "resume")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path), default=".")
def reset(folder: Path) -> None:
    """Forget the last synced state and sync afresh: the workspace is the truth."""
    _ask_session(folder, "reset")


def _ask_session(folder: Path, action: SyncAction) -> None:
    wanted = folder.resolve().as_uri()
    records = [r for r in live_session_records() if r["session"].get("folder") == wanted]
    if not records:
        _fail(
            f"no running podlink session for {folder.resolve()}: start one with "
            f"`podlink up {folder}` (a paused sync is resumed in the session that paused it)",
            1,
        )
    for record in records:
        ask_running_session(record["session"]["id"], int(record["pid"]), action)
    click.echo(f"asked the session for {folder.resolve()} to {action} its sync")


class _CommandAfterDashes(click.Command):
    """A command that takes every word after ``--`` as a command line to run, unparsed."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            ctx.meta[TRAILING_COMMAND] = tuple(args[split + 1 :])
            args = args[:split]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- COMMAND...]"]


@contextlib.contextmanager
def _exit_on_known_errors() -> Iterator[None]:
    """Turn the errors a user can fix into a message and the documented exit code."""
    from podlink.targets.docker_build import BuildFailure

    try:
        yield
    except ConfigError as error:
        _fail(str(error), EXIT_BAD_CONFIG)
    except (TargetUnavailable, BuildFailure) as error:
        _fail(f"podlink: {error}", EXIT_FAILED)


@main.command(cls=_CommandAfterDashes)
@FOLDER_ARGUMENT
@click.option("--config", "config_file", help="Config file, relative to FOLDER.")
@click.pass_context
def shell(ctx: click.Context, folder: Path, config_file: str | None) -> None:
    """Open a shell in FOLDER's target, in the first sync entry's remote folder.

    After `--`, COMMAND runs instead of the shell (bash if the target has it, else sh).
    With a terminal, the session gets one (raw keys, window size); with pipes it reads stdin
    to its end. Exits with the command's exit code. Nothing is synced: `podlink up` does that.
    """
    from podlink.targets.factory import make_target
    from podlink.targets.local import LocalTarget
    from podlink.terminal import DEFAULT_SHELL

    command: Sequence[str] = ctx.meta.get(TRAILING_COMMAND) or DEFAULT_SHELL
    with _exit_on_known_errors():
        config = load_config(folder, config_file)
        target = make_target(config, _log_to_stderr)
        remote = config.sync[0].remote
        if isinstance(target, LocalTarget):
            code = _shell_in_local_target(target, remote, command)
        else:
            code = asyncio.run(_shell_in_target(target, remote, command))
    sys.exit(code)


def _shell_in_local_target(target: LocalTarget, remote: str, command: Sequence[str]) -> int:
    from podlink.terminal import run_local

    asyncio.run(target.connect())
    folder = target.target_path(remote)
    if not Path(folder).is_dir():
        _note_missing_folder(remote, str(target.root))
        folder = str(target.root)
    return run_local(command, folder)


async def _shell_in_target(target: Target, remote: str, command: Sequence[str]) -> int:
    from podlink.targets.docker import DockerTarget
    from podlink.terminal import raw_mode, relay, stdio_is_terminal

    # A dev container podlink created is stopped by close(); one that was already running
    # may be serving a session (`podlink up`, an editor), so it is left running.
    was_running = isinstance(target, DockerTarget) and await target.container_status() == "running"
    with_terminal = stdio_is_terminal()
    try:
        await target.connect()
        folder = target.target_path(remote)
        probe = await target.exec(["test", "-d", folder])
        working_folder = folder if await probe.wait() == 0 else None
        if working_folder is None:
            _note_missing_folder(remote, "the container's working folder")
        env = {"TERM": os.environ.get("TERM") or "xterm"} if with_terminal else None
        execution = await target.exec(
            command, stdin=True, tty=with_terminal, env=env, cwd=working_folder
        )
        if not with_terminal:
            return await relay(execution, tty=False)
        with raw_mode(sys.stdin.fileno()):
            return await relay(execution, tty=True)
    finally:
        if was_running and isinstance(target, DockerTarget):
            await target.release()
        else:
            await target.close()


def _note_missing_folder(remote: str, instead: str) -> None:
    click.echo(
        f"podlink: {remote} is not in the target yet (`podlink up` syncs the workspace there); "
        f"starting in {instead}",
        err=True,
    )


def _log_to_stderr(line: str) -> None:
    click.echo(line, err=True)


@main.command()
@FOLDER_ARGUMENT
@click.option("--config", "config_file", help="Config file, relative to FOLDER.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output (Ctrl-C stops).")
@click.option("--tail", type=click.IntRange(min=0), help="Start with the last N lines only.")
@click.option(
    "-p", "--previous", is_flag=True, help="The pod's container before its last restart (pods)."
)
@click.option(
    "--all",
    "every_pod",
    is_flag=True,
    help="Every pod of the Deployment, each line prefixed with [pod] (pods).",
)
def logs(
    folder: Path,
    config_file: str | None,
    follow: bool,
    tail: int | None,
    previous: bool,
    every_pod: bool,
) -> None:
    """Print the log of the main process of FOLDER's container or pod (docker, kubernetes)."""
    from podlink.targets.factory import make_target

    with _exit_on_known_errors():
        config = load_config(folder, config_file)
        if isinstance(config.target, LocalTargetConfig):
            _fail(
                "podlink: the local target has no container logs: the app runs as a local "
                "process, and `podlink up` shows its output",
                EXIT_FAILED,
            )
        if isinstance(config.target, DockerTargetConfig) and config.target.container is None:
            click.echo(
                "podlink: this is the dev container podlink created; the app runs in it under "
                "`podlink up`, which shows its output; here is the container's own log",
                err=True,
            )
        target = make_target(config, _log_to_stderr)
        request = LogRequest(follow=follow, tail=tail, previous=previous, every_pod=every_pod)
        asyncio.run(_print_container_logs(target, request))


async def _print_container_logs(target: Target, request: LogRequest) -> None:
    from podlink.terminal import iterate_in_thread, write_all

    if not isinstance(target, ContainerLogs):
        raise TargetUnavailable(f"a {target.describe().kind} target has no container logs")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    async def copy(chunks: Iterable[bytes]) -> None:
        try:
            async for chunk in iterate_in_thread(chunks):
                write_all(sys.stdout.fileno(), chunk)
        except BrokenPipeError:
            pass  # the reader (`| head`) has seen enough
        except Exception as error:  # the SDK's and the connection's errors alike
            raise TargetUnavailable(f"lost the container's logs: {error}") from error

    try:
        chunks = await asyncio.to_thread(target.container_logs, request)
        copying = asyncio.create_task(copy(chunks))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({copying, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not copying.done():
            # Closing the response ends the blocking read of the thread that iterates it.
            close = getattr(chunks, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            copying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await copying
    finally:
        await target.close()


@main.command()
@FOLDER_ARGUMENT
@click.option("--config", "config_file", help="Config file, relative to FOLDER.")
def deploy(folder: Path, config_file: str | None) -> None:
    """Apply FOLDER's deploy: manifests to its cluster and wait for the rollouts.

    `podlink up` does the same before it picks the pod; this only deploys.
    """
    from podlink.targets.factory import make_target

    with _exit_on_known_errors():
        config = load_config(folder, config_file)
        if config.deploy is None:
            _fail(
                f"podlink: {config.path}: there is no deploy: section to apply "
                "(for example `deploy: {manifests: [k8s/]}`)",
                EXIT_BAD_CONFIG,
            )
        target = make_target(config, _log_to_stderr)
        if not isinstance(target, Deploys):
            _fail(f"podlink: a {config.target_kind} target cannot deploy", EXIT_BAD_CONFIG)
            return
        asyncio.run(_deploy(target, target))
    click.echo("deployed", err=True)


async def _deploy(target: Target, deployer: Deploys) -> None:
    try:
        await asyncio.to_thread(deployer.deploy)
    finally:
        await target.close()


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
