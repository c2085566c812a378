"""The content tag of ``build.image``: the same inputs give the same tag, any change another."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlink.config import ImageBuildConfig
from podlink.targets.kubernetes.build import TAG_PREFIX, content_tag

IMAGE = ImageBuildConfig(name="127.0.0.1:5000/web")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM python\nCOPY . /app\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('hi')\n")
    (tmp_path / "notes.log").write_text("ignored\n")
    (tmp_path / ".dockerignore").write_text("# not sent\n*.log\n")
    return tmp_path


def test_the_same_tree_gives_the_same_tag(context: Path) -> None:
    tag = content_tag(context, IMAGE)

    assert tag.startswith(TAG_PREFIX) and len(tag) == len(TAG_PREFIX) + 16
    assert content_tag(context, IMAGE) == tag


def test_a_file_the_dockerignore_leaves_out_does_not_change_the_tag(context: Path) -> None:
    tag = content_tag(context, IMAGE)
    (context / "notes.log").write_text("changed\n")
    (context / "more.log").write_text("new\n")

    assert content_tag(context, IMAGE) == tag


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: (c / "app" / "main.py").write_text("print('bye')\n"), id="content"),
        pytest.param(lambda c: (c / "app" / "new.py").write_text(""), id="new-file"),
        pytest.param(lambda c: (c / "app" / "main.py").chmod(0o755), id="mode"),
        pytest.param(lambda c: (c / "app" / "main.py").rename(c / "main.py"), id="moved"),
        pytest.param(lambda c: (c / "Dockerfile").write_text("FROM x\n"), id="dockerfile"),
    ],
)
def test_a_change_the_build_sees_changes_the_tag(context: Path, change: object) -> None:
    tag = content_tag(context, IMAGE)
    change(context)  # type: ignore[operator]

    assert content_tag(context, IMAGE) != tag


def test_build_arguments_and_the_target_stage_are_part_of_the_tag(context: Path) -> None:
    tags = {
        content_tag(context, IMAGE),
        content_tag(context, ImageBuildConfig(name=IMAGE.name, args={"BASE": "a"})),
        content_tag(context, ImageBuildConfig(name=IMAGE.name, args={"BASE": "b"})),
        content_tag(context, ImageBuildConfig(name=IMAGE.name, target="dev")),
    }

    assert len(tags) == 4
