"""``podlink purge``: remove what podlink left behind, and nothing else.

Containers podlink created and images it built on the Docker Engine (label
``podlink.managed=1``), the agent's temporary files in the current folder's target, and
Deployments dev mode left patched. It lists them and asks first unless given ``--yes``.
A container a running session uses (``podlink up``, an editor's, a test run), and the image
it runs, are kept unless ``--all``: its status file in the state folder names it.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from podlink.cli.common import EXIT_BAD_CONFIG, EXIT_FAILED, fail, log_to_stderr
from podlink.config import CONFIG_FILE_NAME, Config, ConfigError, load_config
from podlink.runtime import live_session_records
from podlink.targets.base import TargetUnavailable
from podlink.targets.capabilities import LeavesLeftovers, Leftovers
from podlink.terminal import plural

LeftoverT = TypeVar("LeftoverT")

if TYPE_CHECKING:
    from podlink.targets.docker.admin import ManagedContainer, ManagedImage


@dataclass
class _PurgePlan:
    """What ``podlink purge`` found to remove, and what it could not look at."""

    engine: Any = None
    containers: list[ManagedContainer] = field(default_factory=list)
    images: list[ManagedImage] = field(default_factory=list)
    # What the current folder's target holds: temporary files, Deployments left in dev mode.
    in_target: Leftovers = field(default_factory=Leftovers)
    notes: list[str] = field(default_factory=list)
    # What a running session uses: not removed without --all; each with the reason.
    kept: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            *(str(container) for container in self.containers),
            *(str(image) for image in self.images),
            *self.in_target.lines(),
        ]


@click.command("purge")
@click.option("--yes", is_flag=True, help="Remove without asking.")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also remove the containers (and their images) that running sessions use.",
)
@click.option(
    "--folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Only what podlink made for this workspace folder, and its target's files.",
)
def purge_command(yes: bool, everything: bool, folder: Path | None) -> None:
    """Remove what podlink left behind, and nothing else.

    That is the containers podlink created and the images it built on the Docker Engine
    (label podlink.managed=1), and the agent's temporary files (.podlink-tmp-*) in the target
    of the podlink.yaml in the current folder (or --folder), if there is one; for a
    kubernetes target with devMode, the Deployments in its namespace that dev mode left
    patched, which are restored. A container a running podlink session uses, and its image,
    stay unless --all. Without --yes it lists them and asks first.
    """
    workspace = (folder or Path.cwd()).resolve()
    config = None
    if (workspace / CONFIG_FILE_NAME).exists():
        try:
            config = load_config(workspace)
        except ConfigError as error:
            fail(str(error), EXIT_BAD_CONFIG)
    plan = asyncio.run(
        _find_leftovers(config, only_folder=workspace if folder else None, everything=everything)
    )
    try:
        _purge(plan, yes)
    finally:
        plan.in_target.close()


def _purge(plan: _PurgePlan, yes: bool) -> None:
    for note in plan.notes:
        click.echo(f"podlink: {note}", err=True)
    for line in plan.kept:
        click.echo(line)
    found = plan.lines()
    if not found:
        click.echo("nothing to purge")
        return
    if not yes:
        click.echo(
            f"podlink purge would {'remove or restore' if plan.in_target.restores else 'remove'}:"
        )
        for line in found:
            click.echo(f"  {line}")
        if not sys.stdin.isatty():
            fail("podlink: nothing was removed; pass --yes to remove these", EXIT_FAILED)
        if not click.confirm(f"Remove {plural(len(found), 'item')}?", default=False):
            fail("podlink: nothing was removed", EXIT_FAILED)
    failures = asyncio.run(_remove_leftovers(plan))
    if failures:
        for failure in failures:
            click.echo(f"podlink: {failure}", err=True)
        sys.exit(EXIT_FAILED)


async def _find_leftovers(
    config: Config | None, *, only_folder: Path | None = None, everything: bool = False
) -> _PurgePlan:
    from podlink.targets.docker import admin as docker_admin

    plan = _PurgePlan()
    try:
        plan.engine = await asyncio.to_thread(docker_admin.open_engine)
    except TargetUnavailable as error:
        plan.notes.append(f"{error}; containers and images were not looked for")
    if plan.engine is not None:
        plan.containers = await asyncio.to_thread(docker_admin.managed_containers, plan.engine)
        plan.images = await asyncio.to_thread(docker_admin.managed_images, plan.engine)
        if only_folder is not None:
            wanted = str(only_folder)
            plan.containers = [c for c in plan.containers if c.folder == wanted]
            plan.images = [image for image in plan.images if image.folder == wanted]
        if not everything:
            _keep_what_sessions_use(plan)
    if config is None:
        return plan
    from podlink.targets.factory import make_target

    target = make_target(config, on_log=log_to_stderr)
    if isinstance(target, LeavesLeftovers):
        remotes = [entry.remote for entry in config.sync]
        plan.in_target = await asyncio.to_thread(target.find_leftovers, remotes)
        plan.notes.extend(plan.in_target.notes)
        user = None if everything else _running_session_for(config.folder)
        if user is not None:
            plan.kept.extend(plan.in_target.keep_in_use(user))
    return plan


def _running_session_for(folder: Path) -> str | None:
    """The running session of ``folder`` on this machine, named for messages, if any."""
    for record in live_session_records():
        session = record.get("session") or {}
        if session.get("state") == "stopped":
            continue
        if _folder_of(str(session.get("folder", ""))).resolve() == folder.resolve():
            return f"the running session for {folder} (pid {record.get('pid')})"
    return None


def _keep_what_sessions_use(plan: _PurgePlan) -> None:
    """Move the containers running sessions use, and the images they run, to ``plan.kept``."""
    users = _sessions_by_container()
    kept_images: dict[str, str] = {}
    containers = []
    for container in plan.containers:
        user = users.get(container.id[:12]) or users.get(container.name)
        if user is None:
            containers.append(container)
            continue
        plan.kept.append(f"kept {container}: {user} uses it; --all removes it too")
        kept_images[container.image_id] = container.name
    plan.containers = containers
    images = []
    for image in plan.images:
        if image.id in kept_images:
            plan.kept.append(
                f"kept {image}: container {kept_images[image.id]} of a running session runs it"
            )
        else:
            images.append(image)
    plan.images = images


def _sessions_by_container() -> dict[str, str]:
    """The running sessions on a docker target, by container id (12 digits) and by name.

    A session that has not reached its container yet is known by its folder: the dev
    container podlink creates for a folder has a name made from it.
    """
    from podlink.targets.docker.containers import container_name_for

    users: dict[str, str] = {}
    for record in live_session_records():
        session = record.get("session") or {}
        target = session.get("target") or {}
        if target.get("kind") != "docker" or session.get("state") == "stopped":
            continue
        folder = _folder_of(str(session.get("folder", "")))
        user = f"the running session for {folder} (pid {record.get('pid')})"
        detail = target.get("detail") or {}
        for key in (detail.get("id"), target.get("name"), container_name_for(folder)):
            if key:
                users[str(key)] = user
    return users


def _folder_of(uri: str) -> Path:
    parsed = urllib.parse.urlparse(uri)
    return Path(urllib.parse.unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)


async def _remove_each(
    leftovers: Sequence[LeftoverT], remove: Callable[[LeftoverT], object], failures: list[str]
) -> int:
    """Remove each leftover in a worker thread, printing one line each; how many went.
    What could not be removed is added to ``failures``."""
    from podlink.targets.docker import admin as docker_admin

    removed = 0
    for leftover in leftovers:
        try:
            await asyncio.to_thread(remove, leftover)
        except docker_admin.RemovalFailed as error:
            failures.append(str(error))
            continue
        click.echo(f"removed {leftover}")
        removed += 1
    return removed


async def _remove_leftovers(plan: _PurgePlan) -> list[str]:
    """Remove what the plan lists, printing one line each; the failures, as messages."""
    from podlink.targets.docker import admin as docker_admin

    in_target = await asyncio.to_thread(plan.in_target.remove, click.echo)
    failures = list(in_target.failures)
    removed_containers = await _remove_each(
        plan.containers, functools.partial(docker_admin.remove_container, plan.engine), failures
    )
    removed_images = await _remove_each(
        plan.images, functools.partial(docker_admin.remove_image, plan.engine), failures
    )
    summary = (
        f"purged {plural(removed_containers, 'container')}, {plural(removed_images, 'image')} "
        f"and {plural(in_target.files, 'temporary file')}"
    )
    if plan.in_target.restores:
        summary += f"; restored {plural(in_target.restored, 'deployment')}"
    click.echo(summary)
    return failures
