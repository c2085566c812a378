"""What only some targets can do: optional capabilities, asked for with ``isinstance``.

Each is a small runtime-checkable protocol, so a command or the session asks a target
whether it can do a thing rather than which kind it is; only ``targets/`` knows the kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec


class LogRequest(msgspec.Struct, frozen=True):
    """What ``podlink logs`` asks for: ``tail`` None is everything; ``previous`` the
    container's instance before its last restart; ``every_pod`` every pod of the workload,
    each line prefixed with the pod's name."""

    follow: bool = False
    tail: int | None = None
    previous: bool = False
    every_pod: bool = False


@runtime_checkable
class ContainerLogs(Protocol):
    """A target whose container keeps a log of its main process (Docker, Kubernetes).

    An optional capability: the terminal command asks a target for it rather than knowing
    target kinds.
    """

    def container_logs(self, request: LogRequest) -> Iterator[bytes]:
        """The log, as chunks of bytes. Blocking, like the iterator: call and iterate it in a
        worker thread. Needs no ``connect``. With ``follow`` the iterator ends when the
        container stops; its ``close()`` (when it has one) ends it earlier. Raises
        TargetUnavailable with what to do when the log cannot be read, or when the target
        cannot serve a part of the request."""


@runtime_checkable
class Deploys(Protocol):
    """A target that can put the workload in place first (Kubernetes: ``deploy:``).

    An optional capability, like ``ContainerLogs``; such a target also deploys when it
    connects for the first time.
    """

    def deploy(self) -> None:
        """Apply what the configuration says to deploy and wait for it to be rolled out.
        Blocking: call it in a worker thread. Raises ConfigError for a file that cannot be
        read, TargetUnavailable for what the target refuses."""


@runtime_checkable
class OnThisMachine(Protocol):
    """A target whose processes run on this machine (the local target).

    Its 127.0.0.1 is this machine's, so a forwarded port's own number is the app's; a shell
    in it is a local process on the user's own terminal. An optional capability, like
    ``ContainerLogs``.
    """

    @property
    def root(self) -> Path:
        """The folder on this machine under which the target's paths lie."""


@runtime_checkable
class Releases(Protocol):
    """A target that may be serving a session elsewhere (a Docker container).

    An optional capability: ``podlink shell`` asks whether it was running before it
    connected, and then lets go of it with ``release`` instead of stopping it with ``close``.
    """

    async def is_running(self) -> bool:
        """Whether it runs now. Works before ``connect``, which may start it."""

    async def release(self) -> None:
        """Like ``close``, but leave it running even if podlink started it."""


@dataclass
class LeftoversRemoved:
    """What removing a target's leftovers did: counts for the summary, failures as messages."""

    files: int = 0
    restored: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Leftovers:
    """What podlink left in a target, found for ``podlink purge``; this base finds nothing.

    ``notes`` say what could not be looked at, and why. The methods block: call them in a
    worker thread.
    """

    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line for each thing found, as the listing shows it."""
        return []

    @property
    def restores(self) -> bool:
        """Whether some of it is put back as it was rather than removed."""
        return False

    def keep_in_use(self, user: str) -> list[str]:
        """Drop what a running session (``user``, named for messages) uses from what will be
        removed; one "kept …" line for each thing dropped."""
        return []

    def remove(self, say: Callable[[str], None]) -> LeftoversRemoved:
        """Remove (or restore) what was found, saying one line for each one done."""
        return LeftoversRemoved()

    def close(self) -> None:
        """Release the connections finding it opened."""


@runtime_checkable
class LeavesLeftovers(Protocol):
    """A target that can find what podlink left in it: the agent's temporary files, a
    Deployment left in dev mode. An optional capability, for ``podlink purge``."""

    def find_leftovers(self, remotes: Sequence[str]) -> Leftovers:
        """Look for them; ``remotes`` are the sync entries' remote folders. Blocking: call it
        in a worker thread. What cannot be looked at becomes a note, not an error."""
