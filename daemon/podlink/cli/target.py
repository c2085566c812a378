"""``podlink shell``, ``logs`` and ``deploy``: a look inside a target, or a hand on it,
without a session. They ask the target for what they need (``targets.capabilities``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from podlink.cli.common import (
    CONFIG_OPTION,
    EXIT_BAD_CONFIG,
    FOLDER_ARGUMENT,
    exit_on_known_errors,
    fail,
    log_to_stderr,
)
from podlink.config import load_config
from podlink.targets.base import Target, TargetUnavailable
from podlink.targets.capabilities import (
    ContainerLogs,
    Deploys,
    LogRequest,
    OnThisMachine,
    Releases,
)

# Where a command after `--` is kept between parsing and the command (click's ctx.meta).
TRAILING_COMMAND = "podlink.trailing_command"


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


@click.command("shell", cls=_CommandAfterDashes)
@FOLDER_ARGUMENT
@CONFIG_OPTION
@click.pass_context
def shell(ctx: click.Context, folder: Path, config_file: str | None) -> None:
    """Open a shell in FOLDER's target, in the first sync entry's remote folder.

    After `--`, COMMAND runs instead of the shell (bash if the target has it, else sh).
    With a terminal, the session gets one (raw keys, window size); with pipes it reads stdin
    to its end. Exits with the command's exit code. Nothing is synced: `podlink up` does that.
    """
    from podlink.targets.factory import make_target
    from podlink.terminal import DEFAULT_SHELL

    command: Sequence[str] = ctx.meta.get(TRAILING_COMMAND) or DEFAULT_SHELL
    with exit_on_known_errors():
        config = load_config(folder, config_file)
        target = make_target(config, log_to_stderr)
        remote = config.sync[0].remote
        if isinstance(target, OnThisMachine):
            code = _shell_on_this_machine(target, target, remote, command)
        else:
            code = asyncio.run(_shell_in_target(target, remote, command))
    sys.exit(code)


def _shell_on_this_machine(
    target: Target, here: OnThisMachine, remote: str, command: Sequence[str]
) -> int:
    from podlink.terminal import run_local

    asyncio.run(target.connect())
    folder = target.target_path(remote)
    if not Path(folder).is_dir():
        _note_missing_folder(remote, str(here.root))
        folder = str(here.root)
    return run_local(command, folder)


async def _shell_in_target(target: Target, remote: str, command: Sequence[str]) -> int:
    from podlink.terminal import raw_mode, relay, stdio_is_terminal

    # A dev container podlink created is stopped by close(); one that was already running
    # may be serving a session (`podlink up`, an editor), so it is left running.
    shared = target if isinstance(target, Releases) else None
    was_running = shared is not None and await shared.is_running()
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
        if was_running and shared is not None:
            await shared.release()
        else:
            await target.close()


def _note_missing_folder(remote: str, instead: str) -> None:
    click.echo(
        f"podlink: {remote} is not in the target yet (`podlink up` syncs the workspace there); "
        f"starting in {instead}",
        err=True,
    )


@click.command("logs")
@FOLDER_ARGUMENT
@CONFIG_OPTION
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

    with exit_on_known_errors():
        config = load_config(folder, config_file)
        target = make_target(config, log_to_stderr)
        request = LogRequest(follow=follow, tail=tail, previous=previous, every_pod=every_pod)
        asyncio.run(_print_container_logs(target, request))


async def _print_container_logs(target: Target, request: LogRequest) -> None:
    from podlink.terminal import iterate_in_thread, write_all

    if not isinstance(target, ContainerLogs):
        await target.close()
        if isinstance(target, OnThisMachine):
            raise TargetUnavailable(
                "the local target has no container logs: the app runs as a local process, "
                "and `podlink up` shows its output"
            )
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


@click.command("deploy")
@FOLDER_ARGUMENT
@CONFIG_OPTION
def deploy(folder: Path, config_file: str | None) -> None:
    """Apply FOLDER's deploy: manifests to its cluster and wait for the rollouts.

    `podlink up` does the same before it picks the pod; this only deploys.
    """
    from podlink.targets.factory import make_target

    with exit_on_known_errors():
        config = load_config(folder, config_file)
        if config.deploy is None:
            fail(
                f"podlink: {config.path}: there is no deploy: section to apply "
                "(for example `deploy: {manifests: [k8s/]}`)",
                EXIT_BAD_CONFIG,
            )
        target = make_target(config, log_to_stderr)
        if not isinstance(target, Deploys):
            fail(f"podlink: a {config.target_kind} target cannot deploy", EXIT_BAD_CONFIG)
        asyncio.run(_deploy(target, target))
    click.echo("deployed", err=True)


async def _deploy(target: Target, deployer: Deploys) -> None:
    try:
        await asyncio.to_thread(deployer.deploy)
    finally:
        await target.close()
