"""How ``test`` and ``build`` commands run in the target.

They run with the first sync entry's remote folder as their working folder (or their own
``cwd:``, a remote path), and with the target's environment plus their ``env:``. Their
output is read line by line as it comes, with no limit on a line's length.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from podlink.config import CommandConfig, Config
from podlink.targets.base import Target

READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class CommandPlan:
    """A configured command, ready for ``Target.exec``."""

    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def display(self) -> str:
        return " ".join(self.argv)


def plan_command(section: CommandConfig, config: Config, target: Target) -> CommandPlan:
    remote = section.cwd or config.sync[0].remote
    return CommandPlan(tuple(section.command), target.target_path(remote), dict(section.env))


async def read_lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Decoded lines without their line ends, as they arrive; a last unended line too."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while chunk := await stream.read(READ_CHUNK):
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line.removesuffix("\r")
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending.removesuffix("\r")


def tail_text(lines: Sequence[str], count: int = 20) -> str:
    """The last ``count`` non-empty lines, for an error message that must say why."""
    kept = [line for line in lines if line.strip()][-count:]
    return "\n".join(kept)
