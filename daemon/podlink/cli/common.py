"""What the commands share: exit codes, the FOLDER argument, and turning the errors a user
can fix into a message and an exit code.

Exit codes: 0 success, 1 the target or the work failed, 2 the configuration (or the command
line) is wrong.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import click

from podlink.config import ConfigError
from podlink.targets.base import TargetUnavailable

EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2

FOLDER_ARGUMENT = click.argument(
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    required=False,
)
# For commands whose arguments are something else (test ids, paths to explain).
FOLDER_OPTION = click.option(
    "-C",
    "--folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The workspace folder.",
)
CONFIG_OPTION = click.option(
    "--config", "config_file", help="Config file, relative to the workspace folder."
)


def fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


@contextlib.contextmanager
def exit_on_known_errors() -> Iterator[None]:
    """Turn the errors a user can fix into a message and the documented exit code
    (a failed image build is a TargetUnavailable too)."""
    try:
        yield
    except ConfigError as error:
        fail(str(error), EXIT_BAD_CONFIG)
    except TargetUnavailable as error:
        fail(f"podlink: {error}", EXIT_FAILED)


def log_to_stderr(line: str) -> None:
    click.echo(line, err=True)
