"""``podlink why PATH``: whether a path is synced into the target, and which rule keeps it out.

It reads the ignore files and podlink.yaml as they are on disk, as a session's next scan
would; no session needs to run.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import msgspec

from podlink.cli.common import CONFIG_OPTION, EXIT_BAD_CONFIG, FOLDER_OPTION, fail
from podlink.config import ConfigError, load_config


@click.command("why")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@FOLDER_OPTION
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the answers as JSON.")
def why_command(
    paths: tuple[Path, ...], folder: Path, config_file: str | None, as_json: bool
) -> None:
    """Say whether each PATH is synced into the target and, if not, which rule of which file
    (.gitignore, .podlinkignore, sync[].exclude in podlink.yaml) keeps it out.

    PATHs are relative to the current folder; they need not exist.
    """
    from podlink.ignored import explain_path

    try:
        config = load_config(folder.resolve(), config_file)
    except ConfigError as error:
        fail(str(error), EXIT_BAD_CONFIG)
    answers = [explain_path(config, path.absolute()) for path in paths]
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(answers), indent=2))
        return
    for answer in answers:
        click.echo(answer.message)
