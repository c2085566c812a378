"""The ``podlink`` command line: ``up`` in a terminal, ``init``, ``status``, ``shell`` and
``logs`` to look inside a target, ``test`` and ``build``, ``why``, ``purge`` to clean up,
and ``serve`` for editors. One module per group of commands; this one gathers them.

Exit codes: 0 success, 1 the target or the work failed, 2 the configuration (or the command
line) is wrong (``common``).
"""

from __future__ import annotations

from pathlib import Path

import click

from podlink import __version__
from podlink.cli.common import EXIT_BAD_CONFIG, FOLDER_ARGUMENT, fail
from podlink.cli.purge import purge_command
from podlink.cli.sessions import reset, resume, status
from podlink.cli.target import deploy, logs, shell
from podlink.cli.tests import build_command, test_command
from podlink.cli.up import debug, up
from podlink.cli.why import why_command
from podlink.runtime import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="podlink")
def main() -> None:
    """podlink: your workspace, synced into a dev container or pod, driven from your editor."""


@click.command("init")
@FOLDER_ARGUMENT
@click.option("--force", is_flag=True, help="Overwrite an existing podlink.yaml.")
def init(folder: Path, force: bool) -> None:
    """Write a commented podlink.yaml for FOLDER, guessed from what the project holds."""
    from podlink.scaffold import write_starter_config

    try:
        written = write_starter_config(folder, force=force)
    except FileExistsError as error:
        fail(str(error), EXIT_BAD_CONFIG)
    click.echo(f"wrote {written}; edit it, then run `podlink up`")


@click.command("serve")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to the log file.")
def serve(verbose: bool) -> None:
    """Serve one editor over stdio (JSON-RPC with LSP framing). Logs go to a file, not stdout."""
    setup_logging(verbose=verbose)
    from podlink.server.lsp import serve_stdio

    serve_stdio()


for command in (
    init,
    serve,
    up,
    debug,
    status,
    resume,
    reset,
    shell,
    logs,
    deploy,
    test_command,
    build_command,
    why_command,
    purge_command,
):
    main.add_command(command)
