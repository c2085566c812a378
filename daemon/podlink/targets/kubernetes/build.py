"""``build.image``: the image a kubernetes session deploys, built on this machine's Docker Engine.

The tag is made from what goes into the build: every file of the context that
``.dockerignore`` lets through (path, mode, content), the Dockerfile's name, the build
arguments and the target stage. The same tree gives the same tag, so an image that is
already there is not built again, and a manifest that names it does not change. The base
image a ``FROM`` line names is not part of the tag: pass a build argument, or change the
Dockerfile, to rebuild on a new base.

An image built goes into the workspace's ledger (``ledger``), from which
``podlink purge`` removes it. Every call blocks.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podlink.config import ImageBuildConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.docker.build import BuildFailure, follow_build
from podlink.targets.kubernetes import ledger as kubernetes_ledger
from podlink.targets.kubernetes.ledger import LocalImage

TAG_PREFIX = "podlink-"
TAG_DIGITS = 16
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class BuiltImage:
    """An image on the local engine: ``reference`` is ``repository:tag``."""

    repository: str
    tag: str
    image_id: str
    # False when the engine already had the tag and nothing was built.
    built: bool

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


def dockerignore_patterns(context: Path) -> list[str]:
    """The patterns of the context's ``.dockerignore``, read as the Docker SDK reads them."""
    try:
        text = (context / ".dockerignore").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def content_tag(context: Path, image: ImageBuildConfig) -> str:
    """``podlink-`` and 16 hex digits of a hash over everything the build sends and sets."""
    from docker.utils.build import exclude_paths

    digest = hashlib.sha256()
    for key, value in (
        ("dockerfile", image.dockerfile),
        ("target", image.target or ""),
        *sorted(("arg " + name, value) for name, value in image.args.items()),
    ):
        digest.update(f"{key}\0{value}\0".encode())
    paths = exclude_paths(str(context), dockerignore_patterns(context), dockerfile=image.dockerfile)
    for relative in sorted(paths):
        path = context / relative
        info = path.lstat()
        digest.update(f"{relative}\0{info.st_mode & 0o777777:o}\0".encode())
        if stat.S_ISLNK(info.st_mode):
            digest.update(os.readlink(path).encode())
        elif stat.S_ISREG(info.st_mode):
            with path.open("rb") as file:
                while chunk := file.read(READ_CHUNK):
                    digest.update(chunk)
        digest.update(b"\0")
    return TAG_PREFIX + digest.hexdigest()[:TAG_DIGITS]


def build_image(
    engine: Any, folder: Path, image: ImageBuildConfig, on_log: Callable[[str], None]
) -> BuiltImage:
    """The image for the workspace's tree, built unless the engine already has its tag.

    Raises BuildFailure (with the Dockerfile line of a failed step) or TargetUnavailable."""
    import docker.errors

    context = (folder / image.context).resolve()
    dockerfile = context / image.dockerfile
    tag = content_tag(context, image)
    reference = f"{image.name}:{tag}"
    try:
        existing = engine.images.get(reference)
    except docker.errors.ImageNotFound:
        existing = None
    except docker.errors.DockerException as error:
        raise TargetUnavailable(f"asking the Docker Engine for {reference}: {error}") from error
    if existing is not None:
        on_log(f"image {reference} is up to date: nothing changed in {context}")
        return BuiltImage(image.name, tag, str(existing.id), built=False)
    on_log(f"building {reference} from {dockerfile} …")
    try:
        messages = engine.api.build(
            path=str(context),
            dockerfile=image.dockerfile,
            tag=reference,
            buildargs=dict(image.args),
            target=image.target,
            decode=True,
            rm=True,
            forcerm=True,
        )
        image_id = follow_build(messages, dockerfile, on_log)
    except docker.errors.APIError as error:
        raise BuildFailure(dockerfile, str(error.explanation or error)) from error
    except docker.errors.DockerException as error:
        raise TargetUnavailable(f"building {reference}: {error}") from error
    on_log(f"built {reference} ({image_id.removeprefix('sha256:')[:12]})")
    kubernetes_ledger.record(folder, LocalImage(reference, image_id))
    return BuiltImage(image.name, tag, image_id, built=True)
