"""Every process the local target starts, found again however it detached itself.

A command started by the local target gets ``PODLINK_PROCESS=<root>.<daemon pid>.<daemon
start>.<serial>`` in its environment, and everything it starts inherits it, including a child
that moved to a session of its own with ``setsid`` (which leaves the process group that
stopping signals). Stopping a command therefore signals its process group and every process
carrying its mark; closing the target ends every process carrying the daemon's; and a new
target over the same root ends the processes of a daemon that is gone (killed with
``kill -9``, say). A process that clears its environment is not found: it is the one way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

MARK = "PODLINK_PROCESS"
PROC = Path("/proc")
# How often to look again whether processes ended where a pidfd cannot tell (old kernels).
POLL_SECONDS = 0.02


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when it is gone: with the
    pid, this names a process even after its pid is reused."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None  # ended; only its exit status is left
    return fields[19]


@dataclass(frozen=True)
class Owner:
    """Who started a process: the daemon (pid and start time) and the target root."""

    root: str
    pid: int
    start: str

    @classmethod
    def this_daemon(cls, root: Path) -> Owner:
        token = hashlib.sha256(str(root).encode()).hexdigest()[:16]
        return cls(token, os.getpid(), start_time(os.getpid()) or "0")

    @property
    def prefix(self) -> str:
        return f"{self.root}.{self.pid}.{self.start}."

    def mark(self, serial: int) -> str:
        return f"{self.prefix}{serial}"

    def alive(self) -> bool:
        return start_time(self.pid) == self.start


def marked_processes() -> dict[int, str]:
    """Every living process with a mark, and its mark."""
    found: dict[int, str] = {}
    needle = f"{MARK}=".encode()
    for entry in os.listdir(PROC):
        if not entry.isdigit():
            continue
        try:
            environment = (PROC / entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        for variable in environment.split(b"\0"):
            if variable.startswith(needle):
                found[int(entry)] = variable[len(needle) :].decode(errors="replace")
                break
    return found


def processes_marked(mark: str) -> list[int]:
    """Living processes carrying ``mark`` exactly, or under it when it ends with a dot."""
    exact = not mark.endswith(".")
    return sorted(
        pid
        for pid, value in marked_processes().items()
        if (value == mark if exact else value.startswith(mark)) and pid != os.getpid()
    )


def orphans_of(root: str) -> dict[int, str]:
    """Processes started for the target root ``root`` by a daemon that no longer runs."""
    gone: dict[int, str] = {}
    owners: dict[tuple[str, str], bool] = {}
    for pid, value in marked_processes().items():
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != root or not parts[1].isdigit():
            continue
        key = (parts[1], parts[2])
        if key not in owners:
            owners[key] = Owner(root, int(parts[1]), parts[2]).alive()
        if not owners[key]:
            gone[pid] = value
    return gone


def signal_processes(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def process_label(pid: int) -> str:
    """A pid with the start of its command line, for messages."""
    try:
        command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").strip()
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({command.decode(errors='replace')[:80]})"


async def wait_ended(pids: list[int], seconds: float) -> list[int]:
    """Wait until the processes have ended, for at most ``seconds``; those still alive."""
    starts = {pid: start_time(pid) for pid in pids}
    living = [pid for pid, start in starts.items() if start is not None]
    if not living:
        return []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await asyncio.gather(*(_ended(pid) for pid in living))
    return [pid for pid in living if start_time(pid) == starts[pid]]


async def _ended(pid: int) -> None:
    loop = asyncio.get_running_loop()
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:
        # No pidfd on this kernel: nothing to wait on but time.
        while start_time(pid) is not None:  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)
        return
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(descriptor, readable)
    try:
        await ended
    finally:
        loop.remove_reader(descriptor)
        os.close(descriptor)


async def end_processes(pids: list[int], grace_seconds: float) -> list[int]:
    """SIGTERM, then SIGKILL what is left after the grace period; what still lives then."""
    signal_processes(pids, signal.SIGTERM)
    left = await wait_ended(pids, grace_seconds)
    if left:
        signal_processes(left, signal.SIGKILL)
        left = await wait_ended(left, KILL_WAIT_SECONDS)
    return left


# How long a SIGKILLed process may take to be gone (a process in uninterruptible sleep takes
# longer; it is then reported, not waited for).
KILL_WAIT_SECONDS = 2.0
