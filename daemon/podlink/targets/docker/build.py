"""Build a dev image from a Dockerfile, streaming the log and locating a failed step.

The Engine's classic builder reports ``Step N/M : INSTRUCTION``; when a step fails, the
Nth instruction of the Dockerfile is where the user has to look, so the failure carries
that line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from podlink.targets.base import FileLine, TargetUnavailable

STEP = re.compile(r"^Step (\d+)/\d+ : ")


class BuildFailure(TargetUnavailable):
    """The image did not build; ``line`` is the Dockerfile line of the failed step (1-based)."""

    def __init__(
        self, dockerfile: Path, message: str, line: int | None = None, step: int | None = None
    ) -> None:
        where = f"{dockerfile}:{line}" if line else str(dockerfile)
        at = FileLine(dockerfile, line, message) if line is not None else None
        super().__init__(f"{where}: the image build failed: {message}", at=at)
        self.dockerfile = dockerfile
        self.message = message
        self.line = line
        self.step = step


def instruction_lines(text: str) -> list[int]:
    """The 1-based line where each instruction starts (comments, blanks and continuations skipped).

    Parser directives and comments are not instructions; a line ending in a backslash
    continues the instruction on the next line.
    """
    starts: list[int] = []
    continuing = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not continuing and line and not line.startswith("#"):
            starts.append(number)
        if line.startswith("#") and continuing:
            continue  # comments inside a continued instruction do not end it
        continuing = line.endswith("\\") if line else continuing
    return starts


def follow_build(
    messages: Iterable[dict[str, Any]], dockerfile: Path, on_line: Callable[[str], None]
) -> str:
    """Consume the Engine's build messages; the image id, or BuildFailure."""
    step: int | None = None
    image_id: str | None = None
    for message in messages:
        for text in _texts(message):
            on_line(text)
            matched = STEP.match(text)
            if matched:
                step = int(matched.group(1))
        if "aux" in message and isinstance(message["aux"], dict):
            image_id = message["aux"].get("ID", image_id)
        error = message.get("error") or (message.get("errorDetail") or {}).get("message")
        if error:
            raise _failure(dockerfile, str(error).strip(), step)
    if image_id is None:
        raise BuildFailure(dockerfile, "the Engine reported no image")
    return image_id


def _texts(message: dict[str, Any]) -> Iterator[str]:
    stream = message.get("stream")
    if isinstance(stream, str):
        yield from (line for line in stream.splitlines() if line.strip())


def _failure(dockerfile: Path, error: str, step: int | None) -> BuildFailure:
    line = None
    if step is not None:
        try:
            starts = instruction_lines(dockerfile.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            starts = []
        if 0 < step <= len(starts):
            line = starts[step - 1]
    return BuildFailure(dockerfile, error, line, step)
