"""Housekeeping on the Docker Engine for ``podlink purge``.

podlink leaves three kinds of things behind on an engine: the dev containers it created and
the images it built (both labelled ``podlink.managed=1``), and the agent's temporary files in
a container it attached to (``.podlink-tmp-*``, left when a write was cut short). This module
finds and removes exactly those, and nothing unlabelled. Every call blocks: run it in a
worker thread.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import docker
import docker.errors

from podlink.sync.core.names import TEMP_PREFIX
from podlink.targets.base import TargetUnavailable
from podlink.targets.capabilities import Leftovers, LeftoversRemoved
from podlink.targets.docker import exec as docker_exec
from podlink.targets.docker.containers import FOLDER_LABEL, MANAGED_LABEL, look_up_container
from podlink.targets.docker.exec import EngineUnavailable

MANAGED_FILTER = {"label": f"{MANAGED_LABEL}=1"}
# `find` exits 1 when a remote folder does not exist: then there is nothing to remove there.
NO_SUCH_FOLDER = "No such file or directory"


class RemovalFailed(Exception):
    """The Engine refused to remove something; the message says what and why."""


@dataclass(frozen=True)
class ManagedContainer:
    id: str
    name: str
    status: str
    image_id: str = ""
    # The workspace folder it was made for (label podlink.folder), when it says.
    folder: str | None = None

    def __str__(self) -> str:
        return f"container {self.name} ({self.id[:12]}, {self.status})"


@dataclass(frozen=True)
class ManagedImage:
    id: str
    tags: tuple[str, ...]
    folder: str | None = None

    def __str__(self) -> str:
        short_id = self.id.removeprefix("sha256:")[:12]
        return f"image {', '.join(self.tags)} ({short_id})" if self.tags else f"image {short_id}"


def open_engine() -> docker.DockerClient:
    """A client for the engine ``DOCKER_HOST`` names; TargetUnavailable when it does not answer."""
    try:
        _, client = docker_exec.open_engine()
    except EngineUnavailable as error:
        raise TargetUnavailable(str(error)) from error
    return client


def managed_containers(client: docker.DockerClient) -> list[ManagedContainer]:
    """Every container podlink created, running or not."""
    found = client.containers.list(all=True, filters=MANAGED_FILTER)
    return sorted(
        (
            ManagedContainer(
                c.id,
                c.name or c.id[:12],
                str(c.status),
                str(c.attrs.get("Image", "")),
                (c.labels or {}).get(FOLDER_LABEL),
            )
            for c in found
        ),
        key=lambda container: container.name,
    )


def managed_images(client: docker.DockerClient) -> list[ManagedImage]:
    """Every image podlink built, including older builds that lost their tag to a newer one."""
    found = client.images.list(filters=MANAGED_FILTER)
    return sorted(
        (
            ManagedImage(str(image.id), tuple(image.tags), (image.labels or {}).get(FOLDER_LABEL))
            for image in found
        ),
        key=lambda image: (image.tags, image.id),
    )


def remove_container(client: docker.DockerClient, container: ManagedContainer) -> None:
    try:
        client.api.remove_container(container.id, force=True, v=True)
    except docker.errors.NotFound:
        return  # already gone: what was asked for holds
    except docker.errors.APIError as error:
        raise RemovalFailed(
            f"cannot remove {container}: {docker_exec.engine_error_text(error)}"
        ) from error


def remove_image(client: docker.DockerClient, image: ManagedImage) -> None:
    """Remove the image without force, so one still used by another container is kept.

    An image with several tags is removed tag by tag (the last one deletes it): removing it
    by id would need force, which would also take it from under a container using it.
    """
    try:
        for reference in image.tags or (image.id,):
            client.images.remove(reference)
    except docker.errors.ImageNotFound:
        return
    except docker.errors.APIError as error:
        raise RemovalFailed(
            f"cannot remove {image}: {docker_exec.engine_error_text(error)}"
        ) from error


def temp_files_in_container(
    client: docker.DockerClient, container_name: str, folders: Sequence[str], *, delete: bool
) -> list[str]:
    """The agent's temporary files under ``folders`` in a running container, one ``find`` exec
    per folder; with ``delete`` they are removed by that same ``find``. Paths in the container.
    """
    container = look_up_container(client, container_name)
    if container is None:
        raise TargetUnavailable(f"there is no container {container_name!r}")
    if container.status != "running":
        raise TargetUnavailable(
            f"container {container_name!r} is {container.status}, not running; "
            "its temporary files stay until it runs again"
        )
    found: list[str] = []
    for folder in folders:
        argv = ["find", folder, "-name", f"{TEMP_PREFIX}*", "-type", "f", "-print"]
        if delete:
            argv.append("-delete")
        try:
            code, output = container.exec_run(argv, demux=True)
        except docker.errors.APIError as error:
            raise TargetUnavailable(
                f"cannot run `{shlex.join(argv)}` in container {container_name!r}: "
                f"{docker_exec.engine_error_text(error)}"
            ) from error
        stdout, stderr = output
        problem = (stderr or b"").decode(errors="replace").strip()
        if code != 0 and NO_SUCH_FOLDER not in problem:
            raise TargetUnavailable(
                f"`{shlex.join(argv)}` failed in container {container_name!r} "
                f"(exit code {code}): {problem}"
            )
        found.extend(line for line in (stdout or b"").decode(errors="replace").splitlines() if line)
    return found


@dataclass
class AttachedContainerFiles(Leftovers):
    """The agent's temporary files in a container podlink attached to (``docker.container``).

    A dev container podlink created is not here: it goes with the managed containers, files
    and all.
    """

    container: str = ""
    folders: tuple[str, ...] = ()
    files: list[str] = field(default_factory=list)
    engine: docker.DockerClient | None = None

    @classmethod
    def find(cls, container: str, folders: Sequence[str]) -> AttachedContainerFiles:
        found = cls(container=container, folders=tuple(folders))
        try:
            found.engine = open_engine()
        except TargetUnavailable:
            found.notes.append(f"temporary files in container {container} were not looked for")
            return found
        try:
            found.files = temp_files_in_container(
                found.engine, container, found.folders, delete=False
            )
        except TargetUnavailable as error:
            found.notes.append(f"{error}; its temporary files were not looked for")
        return found

    def lines(self) -> list[str]:
        return [f"file {self.container}:{path}" for path in self.files]

    def remove(self, say: Callable[[str], None]) -> LeftoversRemoved:
        removed = LeftoversRemoved()
        if self.engine is None or not self.files:
            return removed
        try:
            paths = temp_files_in_container(self.engine, self.container, self.folders, delete=True)
        except TargetUnavailable as error:
            removed.failures.append(str(error))
            return removed
        for path in paths:
            say(f"removed file {self.container}:{path}")
        removed.files = len(paths)
        return removed

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
