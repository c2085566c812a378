"""How the daemon moves files into a target: the agent, or tar over ``sh`` where it cannot run.

``FileTransport`` is what the sync engine and the session need from either. The Python agent
(``client.Agent``) is the normal transport. A target without a usable Python 3.8+ gets
``tar_fallback.TarTransport``: slower, upload only, no digests. ``start_transport`` picks one.

What only the agent can do (preconditions, renames, reading files back, watching the
target) is ``TwoWayTransport``; a transport offers it through ``two_way``, so callers ask
for the capability instead of testing for the agent's class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

from podlink.agent.client import (
    NO_CHECK,
    Agent,
    AgentGone,
    Precondition,
    ReadResult,
    RemoteChanges,
    ScanResult,
    WatchStarted,
    WriteManyResult,
)
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

    @property
    def two_way(self) -> TwoWayTransport | None:
        """This transport where it can do what two-way sync needs, else None."""


class TwoWayTransport(FileTransport, Protocol):
    """A transport that checks preconditions, renames, reads files back and watches.

    Every change takes ``expect``: AgentError ``changed`` unless it holds right before the
    change (see ``two_way.Precondition``).
    """

    async def write_file(
        self,
        root: str,
        path: str,
        source: Path,
        mode: int | None = None,
        *,
        expected_size: int | None = None,
        expect: Precondition = NO_CHECK,
    ) -> str: ...

    async def write_many(
        self, root: str, files: Sequence[tuple[str, Path] | tuple[str, Path, Precondition]]
    ) -> WriteManyResult: ...

    async def delete(
        self, root: str, path: str, *, recursive: bool = False, expect: Precondition = NO_CHECK
    ) -> bool: ...

    async def mkdir(
        self, root: str, path: str, mode: int = 0o755, *, expect: Precondition = NO_CHECK
    ) -> None: ...

    async def symlink(
        self, root: str, path: str, target: str, *, expect: Precondition = NO_CHECK
    ) -> None: ...

    async def chmod(
        self, root: str, path: str, mode: int, *, expect: Precondition = NO_CHECK
    ) -> None: ...

    async def rename(
        self,
        root: str,
        src: str,
        dst: str,
        *,
        expect: Precondition = NO_CHECK,
        expect_dst: Precondition = NO_CHECK,
    ) -> None:
        """Move ``src`` onto ``dst``; ``expect`` holds at ``src``, ``expect_dst`` at ``dst``."""

    async def read_file(self, root: str, path: str, destination: Path) -> ReadResult:
        """Copy the target's regular file ``path`` into the new local file ``destination``."""

    async def watch(
        self,
        root: str,
        on_changes: Callable[[RemoteChanges], None],
        *,
        poll_interval_ms: int | None = None,
        method: Literal["auto", "polling"] = "auto",
        max_watches: int | None = None,
    ) -> WatchStarted:
        """Report changes below ``root`` to ``on_changes`` until ``unwatch``."""

    async def unwatch(self) -> None: ...


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
