"""Finding, creating and reusing the Docker target's container, and building its image.

Containers podlink creates carry the ``podlink.managed`` label (``podlink purge`` finds them
by it) and idle on a command that does nothing, so the app can be restarted inside them.
Every call blocks: run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from podlink.config import DockerTargetConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.docker.build import BuildFailure, follow_build
from podlink.targets.docker.exec import EngineAddress, engine_error_text

log = logging.getLogger(__name__)

MANAGED_LABEL = "podlink.managed"
FOLDER_LABEL = "podlink.folder"
SOURCE_LABEL = "podlink.source"
IDLE_COMMAND = ["sleep", "infinity"]


def container_name_for(folder: Path) -> str:
    """A stable, readable name for the dev container of a workspace folder."""
    slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", folder.name).strip("-.") or "workspace"
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    return f"podlink-{slug[:40]}-{digest}"


def look_up_container(client: docker.DockerClient, name: str) -> Container | None:
    """The container ``name``, or None when the Engine has none of that name; an Engine that
    cannot answer is TargetUnavailable."""
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as error:
        raise TargetUnavailable(
            f"cannot look up container {name!r}: {engine_error_text(error)}"
        ) from error


class ContainerFinder:
    """The container a Docker target configuration names, or the dev container it makes."""

    def __init__(
        self,
        client: docker.DockerClient,
        address: EngineAddress | None,
        config: DockerTargetConfig,
        folder: Path,
        on_log: Callable[[str], None],
    ) -> None:
        self._client = client
        self._address = address
        self._config = config
        self._folder = folder
        self._log_from_thread = on_log

    def attach(self, name: str) -> Container:
        container = look_up_container(self._client, name)
        if container is None:
            raise TargetUnavailable(
                f"no container named {name!r} on the Docker Engine at {self._address}; "
                "`docker ps -a` lists the containers there"
            )
        if container.status != "running":
            raise TargetUnavailable(
                f"container {name!r} is {container.status}, not running; "
                f"start it with `docker start {name}`"
            )
        return container

    def create_or_reuse(self) -> Container:
        client = self._client
        image = self._resolve_image()
        name = container_name_for(self._folder)
        with contextlib.suppress(docker.errors.NotFound):
            existing = client.containers.get(name)
            if existing.labels.get(MANAGED_LABEL) != "1":
                raise TargetUnavailable(
                    f"a container named {name!r} exists but podlink did not create it; "
                    "rename or remove it"
                )
            if existing.image is not None and existing.image.id == image:
                if existing.status != "running":
                    existing.start()
                    existing.reload()
                return existing
            log.info("recreating %s: its image changed", name)
            existing.remove(force=True)
        try:
            return client.containers.run(
                image,
                IDLE_COMMAND,
                name=name,
                detach=True,
                init=True,
                labels={
                    MANAGED_LABEL: "1",
                    FOLDER_LABEL: str(self._folder),
                    SOURCE_LABEL: self._config.image or "build",
                },
            )
        except docker.errors.APIError as error:
            raise TargetUnavailable(
                f"cannot create a dev container from {self._config.image or image!r}: "
                f"{engine_error_text(error)}"
            ) from error

    def _resolve_image(self) -> str:
        client = self._client
        if self._config.image is not None:
            try:
                return str(client.images.get(self._config.image).id)
            except docker.errors.ImageNotFound as error:
                raise TargetUnavailable(
                    f"image {self._config.image!r} is not on the Docker Engine at "
                    f"{self._address}; build or load it there first (`docker images` lists them)"
                ) from error
        build = self._config.build
        assert build is not None
        context = (self._folder / build.context).resolve()
        dockerfile = context / build.dockerfile
        self._log_from_thread(f"building {dockerfile} …")
        messages = client.api.build(
            path=str(context),
            dockerfile=build.dockerfile,
            tag=f"{container_name_for(self._folder)}:dev",
            labels={MANAGED_LABEL: "1", FOLDER_LABEL: str(self._folder)},
            decode=True,
            # Also after a failed step: a broken Dockerfile must not leave a stopped
            # container behind for every attempt.
            rm=True,
            forcerm=True,
        )
        try:
            return follow_build(messages, dockerfile, self._log_from_thread)
        except docker.errors.APIError as error:
            raise BuildFailure(dockerfile, engine_error_text(error)) from error
