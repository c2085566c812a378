"""The image build ``podlink up`` starts before its session exists, on the real Docker Engine.

The session's ``ImageSteps`` takes the early build over: one build, its log lines handed on
in order, its failure raised where the session's own build would raise it. A section that
changed in between is built anew. The image names have no registry host, so nothing is
pushed: delivery to a cluster is not part of these.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podlink.config import ImageBuildConfig
from podlink.targets.docker.build import BuildFailure
from podlink.targets.kubernetes.build import content_tag
from podlink.targets.kubernetes.image_steps import ImageSteps, start_early
from tests.targets import TEST_IMAGE, docker_client


@pytest.fixture
def engine() -> Any:
    return docker_client()


@pytest.fixture
def repository(engine: Any) -> Iterator[str]:
    name = f"podlink-early-{uuid.uuid4().hex[:8]}"
    yield name
    for image in engine.images.list(name=name):
        for tag in image.tags:
            engine.images.remove(tag, force=True)


def workspace(folder: Path, dockerfile: str) -> Path:
    folder.mkdir()
    (folder / "Dockerfile").write_text(dockerfile)
    (folder / "app.py").write_text("print('hi')\n")
    return folder


def test_the_session_takes_over_the_early_build_and_its_lines(
    tmp_path: Path, engine: Any, repository: str
) -> None:
    folder = workspace(tmp_path / "w", f"FROM {TEST_IMAGE}\nCOPY app.py /app/\n")
    image = ImageBuildConfig(name=repository)
    start_early(folder, image)
    lines: list[str] = []

    built = ImageSteps(folder, image, lines.append).build()

    assert built.built
    assert built.tag == content_tag(folder, image)
    assert lines[0].startswith(f"building {built.reference} from ")
    assert lines[-1].startswith(f"built {built.reference} (")
    assert any("COPY app.py /app/" in line for line in lines)
    assert [tag for i in engine.images.list(name=repository) for tag in i.tags] == [built.reference]
    # Taken once: a later session's steps find the image and build nothing.
    again: list[str] = []
    assert not ImageSteps(folder, image, again.append).build().built
    assert again == [f"image {built.reference} is up to date: nothing changed in {folder}"]


def test_a_failed_early_build_fails_the_session_with_its_dockerfile_line(
    tmp_path: Path, engine: Any, repository: str
) -> None:
    folder = workspace(tmp_path / "w", f"FROM {TEST_IMAGE}\nRUN exit 3\n")
    image = ImageBuildConfig(name=repository)
    start_early(folder, image)

    with pytest.raises(BuildFailure) as caught:
        ImageSteps(folder, image, lambda line: None).build()

    assert caught.value.line == 2
    assert caught.value.dockerfile == folder / "Dockerfile"


def test_a_section_changed_since_the_early_start_is_built_as_it_is_now(
    tmp_path: Path, engine: Any, repository: str
) -> None:
    folder = workspace(tmp_path / "w", f"ARG MODE\nFROM {TEST_IMAGE}\nCOPY app.py /app/\n")
    old = ImageBuildConfig(name=repository, args={"MODE": "old"})
    start_early(folder, old)
    changed = ImageBuildConfig(name=repository, args={"MODE": "new"})

    built = ImageSteps(folder, changed, lambda line: None).build()

    assert built.tag == content_tag(folder, changed)
    assert engine.images.get(built.reference).id == built.image_id
    # The early build goes on unused; waited for so that the cleanup removes its image too.
    old_reference = f"{repository}:{content_tag(folder, old)}"
    deadline = time.monotonic() + 120
    while old_reference not in {t for i in engine.images.list(name=repository) for t in i.tags}:
        assert time.monotonic() < deadline, "the early build never finished"
        time.sleep(0.1)
