"""Locating a failed build step in its Dockerfile."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlink.targets.docker.build import BuildFailure, follow_build, instruction_lines

DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM python:3.12-slim

# dependencies
RUN apt-get update \\
    # a comment inside a continued instruction
    && apt-get install -y curl
COPY . /app
RUN false
"""


def test_instruction_lines_skip_comments_blanks_and_continuations() -> None:
    assert instruction_lines(DOCKERFILE) == [2, 5, 8, 9]


def test_a_failed_step_points_at_its_instruction(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE)
    messages = [
        {"stream": "Step 1/4 : FROM python:3.12-slim\n"},
        {"stream": "Step 2/4 : RUN apt-get update ...\n"},
        {"stream": "Step 3/4 : COPY . /app\n"},
        {"stream": "Step 4/4 : RUN false\n"},
        {"errorDetail": {"message": "The command '/bin/sh -c false' returned a non-zero code: 1"}},
    ]
    lines: list[str] = []
    with pytest.raises(BuildFailure) as raised:
        follow_build(messages, dockerfile, lines.append)
    assert raised.value.line == 9
    assert raised.value.step == 4
    assert "non-zero code" in raised.value.message
    assert lines[-1] == "Step 4/4 : RUN false"


def test_a_successful_build_gives_the_image_id(tmp_path: Path) -> None:
    messages = [{"stream": "Step 1/1 : FROM x\n"}, {"aux": {"ID": "sha256:abc"}}]
    assert follow_build(messages, tmp_path / "Dockerfile", lambda _: None) == "sha256:abc"
