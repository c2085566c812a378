"""How the daemon moves files into a target: the agent, or tar over ``sh`` where it cannot run.

``FileTransport`` is what the sync engine and the session need from either. The Python agent
(``client.Agent``) is the normal transport. A target without a usable Python 3.8+ gets
``tar_fallback.TarTransport``: slower, upload only, no digests. ``start_transport`` picks one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from podlink.agent.client import Agent, AgentGone, ScanResult, WriteManyResult
from podlink.agent.tar_fallback import TarTransport, probe_tools
from podlink.targets.base import Target, TargetUnavailable

FALLBACK_WARNING = "no Python 3.8+ in the target: syncing with tar over sh (upload only, slower)"
NO_TRANSPORT_MESSAGE = (
    "the target has neither python3 nor tar/sh: podlink cannot sync into it; "
    "use an image with python3 (or at least sh and tar)"
)


class FileTransport(Protocol):
    """File work in one target, on paths relative to a sync root (an absolute target path).

    Failures on single paths raise ``AgentError``; ``AgentGone`` means the transport can no
    longer be used and a new one must be started.
    """

    @property
    def alive(self) -> bool: ...

    async def close(self) -> None: ...

    async def ensure_root(self, root: str, *, owner: str | None = None) -> bool:
        """Make the folder ``root`` and its parents; whether it had to be made.

        ``owner``: who should own what is written below ``root`` (where supported).
        """

    async def scan(self, root: str, *, hash: bool = False) -> ScanResult:
        """Everything below ``root``, not following symlinks; digests only where supported."""

    async def hash(self, root: str, paths: Sequence[str]) -> dict[str, str | None]:
        """sha256 of each path's content; None where it is unknown or not a regular file."""

    async def write_file(
        self,
        root: str,
        path: str,
        source: Path,
        mode: int | None = None,
        *,
        expected_size: int | None = None,
    ) -> str:
        """Send the local file ``source`` to ``path``; the sha256 of what was sent."""

    async def write_many(self, root: str, files: Sequence[tuple[str, Path]]) -> WriteManyResult:
        """Send many small local files (``(path, source)`` pairs) together."""

    async def delete(self, root: str, path: str, *, recursive: bool = False) -> bool:
        """Remove ``path`` (a symlink as a link); whether something was there."""

    async def mkdir(self, root: str, path: str, mode: int = 0o755) -> None: ...

    async def symlink(self, root: str, path: str, target: str) -> None: ...

    async def chmod(self, root: str, path: str, mode: int) -> None: ...


async def start_transport(target: Target, warn: Callable[[str], None]) -> FileTransport:
    """The agent when the target can run it, else tar over ``sh`` (after ``warn``).

    AgentGone when the agent failed for another reason than a missing or too old Python;
    TargetUnavailable when the target has neither Python nor tar and sh.
    """
    try:
        return await Agent.start(target)
    except AgentGone as agent_failure:
        # Only a missing Python justifies the slower fallback: any other failure (a broken
        # target, a crashing agent) must surface as it is, not be papered over.
        try:
            tools = await probe_tools(target)
        except TargetUnavailable as probe_failure:
            raise TargetUnavailable(
                f"{agent_failure.message}; and sh cannot run there either ({probe_failure}), "
                "so podlink cannot sync into it"
            ) from probe_failure
        if tools.python:
            raise
        if not tools.tar:
            raise TargetUnavailable(NO_TRANSPORT_MESSAGE) from agent_failure
    transport = await TarTransport.start(target, tools)
    warn(FALLBACK_WARNING)
    return transport
