"""``podlink purge``: remove what podlink left behind, and nothing else.

Containers podlink created and images it built on the Docker Engine (label
``podlink.managed=1``), the agent's temporary files in the current folder's target, and
Deployments dev mode left patched. It lists them and asks first unless given ``--yes``.
A container a running session uses (``podlink up``, an editor's, a test run), and the image
it runs, are kept unless ``--all``: its status file in the state folder names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from podlink.config import (
    CONFIG_FILE_NAME,
    Config,
    ConfigError,
    DockerTargetConfig,
    KubernetesTargetConfig,
    LocalTargetConfig,
    load_config,
)
from podlink.runtime import live_session_records
from podlink.targets.base import TargetUnavailable
from podlink.terminal import plural

if TYPE_CHECKING:
    from podlink.targets.docker_admin import ManagedContainer, ManagedImage
    from podlink.targets.kubernetes_admin import Namespace
    from podlink.targets.kubernetes_devmode import PatchedDeployment

EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


@dataclass
class _PurgePlan:
    """What ``podlink purge`` found to remove, and what it could not look at."""

    engine: Any = None
    containers: list[ManagedContainer] = field(default_factory=list)
    images: list[ManagedImage] = field(default_factory=list)
    # A container podlink attaches to (``docker.container``), its sync folders, the temp files.
    attached: str | None = None
    attached_folders: tuple[str, ...] = ()
    attached_files: list[str] = field(default_factory=list)
    local_files: list[Path] = field(default_factory=list)
    # The namespace of a kubernetes target with devMode, and the Deployments left patched.
    namespace: Namespace | None = None
    deployments: list[PatchedDeployment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What a running session uses: not removed without --all; each with the reason.
    kept: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            *(str(container) for container in self.containers),
            *(str(image) for image in self.images),
            *(f"file {self.attached}:{path}" for path in self.attached_files),
            *(f"file {path}" for path in self.local_files),
            *(f"restore {deployment}" for deployment in self.deployments),
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
            _fail(str(error), EXIT_BAD_CONFIG)
    plan = asyncio.run(
        _find_leftovers(config, only_folder=workspace if folder else None, everything=everything)
    )
    try:
        _purge(plan, yes)
    finally:
        if plan.namespace is not None:
            plan.namespace.close()


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
        click.echo(f"podlink purge would {'remove or restore' if plan.deployments else 'remove'}:")
        for line in found:
            click.echo(f"  {line}")
        if not sys.stdin.isatty():
            _fail("podlink: nothing was removed; pass --yes to remove these", EXIT_FAILED)
        if not click.confirm(f"Remove {plural(len(found), 'item')}?", default=False):
            _fail("podlink: nothing was removed", EXIT_FAILED)
    failures = asyncio.run(_remove_leftovers(plan))
    if failures:
        for failure in failures:
            click.echo(f"podlink: {failure}", err=True)
        sys.exit(EXIT_FAILED)


async def _find_leftovers(
    config: Config | None, *, only_folder: Path | None = None, everything: bool = False
) -> _PurgePlan:
    from podlink.targets import docker_admin

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
    target = config.target
    if isinstance(target, LocalTargetConfig):
        root = (config.folder / target.root).resolve()
        plan.local_files = await asyncio.to_thread(_local_temp_files, root)
    elif isinstance(target, DockerTargetConfig) and target.container is not None:
        # A dev container podlink created goes with the containers above, files and all.
        plan.attached = target.container
        plan.attached_folders = tuple(entry.remote for entry in config.sync)
        if plan.engine is None:
            plan.notes.append(
                f"temporary files in container {target.container} were not looked for"
            )
            return plan
        try:
            plan.attached_files = await asyncio.to_thread(
                docker_admin.temp_files_in_container,
                plan.engine,
                target.container,
                plan.attached_folders,
                delete=False,
            )
        except TargetUnavailable as error:
            plan.notes.append(f"{error}; its temporary files were not looked for")
            plan.attached = None
    elif isinstance(target, KubernetesTargetConfig):
        plan.notes.append("temporary files in a kubernetes target are not looked for")
        if target.dev_mode is not None:
            await _find_patched_deployments(target, config.folder, plan)
    return plan


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
    from podlink.targets.docker import container_name_for

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


async def _find_patched_deployments(
    target: KubernetesTargetConfig, folder: Path, plan: _PurgePlan
) -> None:
    from podlink.targets.kubernetes_admin import Namespace

    try:
        plan.namespace = await asyncio.to_thread(Namespace, target, folder)
        plan.deployments = await asyncio.to_thread(plan.namespace.patched_deployments)
    except TargetUnavailable as error:
        plan.notes.append(f"{error}; Deployments left in dev mode were not looked for")


async def _remove_leftovers(plan: _PurgePlan) -> list[str]:
    """Remove what the plan lists, printing one line each; the failures, as messages."""
    from podlink.targets import docker_admin

    failures: list[str] = []
    files = 0
    if plan.attached is not None and plan.attached_files:
        try:
            removed_paths = await asyncio.to_thread(
                docker_admin.temp_files_in_container,
                plan.engine,
                plan.attached,
                plan.attached_folders,
                delete=True,
            )
        except TargetUnavailable as error:
            failures.append(str(error))
            removed_paths = []
        for path in removed_paths:
            click.echo(f"removed file {plan.attached}:{path}")
        files += len(removed_paths)
    removed_containers = 0
    for container in plan.containers:
        try:
            await asyncio.to_thread(docker_admin.remove_container, plan.engine, container)
        except docker_admin.RemovalFailed as error:
            failures.append(str(error))
            continue
        click.echo(f"removed {container}")
        removed_containers += 1
    removed_images = 0
    for image in plan.images:
        try:
            await asyncio.to_thread(docker_admin.remove_image, plan.engine, image)
        except docker_admin.RemovalFailed as error:
            failures.append(str(error))
            continue
        click.echo(f"removed {image}")
        removed_images += 1
    for local_path in plan.local_files:
        try:
            local_path.unlink(missing_ok=True)
        except OSError as error:
            failures.append(f"cannot remove {local_path}: {error.strerror}")
            continue
        click.echo(f"removed file {local_path}")
        files += 1
    restored = 0
    for deployment in plan.deployments:
        assert plan.namespace is not None
        try:
            if not await asyncio.to_thread(plan.namespace.restore, deployment):
                continue  # its session restored it meanwhile
        except TargetUnavailable as error:
            failures.append(str(error))
            continue
        click.echo(f"restored deployment {deployment.name} in namespace {deployment.namespace}")
        restored += 1
    summary = (
        f"purged {plural(removed_containers, 'container')}, {plural(removed_images, 'image')} "
        f"and {plural(files, 'temporary file')}"
    )
    if plan.deployments:
        summary += f"; restored {plural(restored, 'deployment')}"
    click.echo(summary)
    return failures


def _local_temp_files(root: Path) -> list[Path]:
    """The agent's temporary files under a local target root (symbolic links not followed)."""
    from podlink.sync.core.names import TEMP_PREFIX

    found: list[Path] = []
    for folder, _folders, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                if name.startswith(TEMP_PREFIX) and stat.S_ISREG(path.lstat().st_mode):
                    found.append(path)
    return sorted(found)


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)
