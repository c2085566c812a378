"""The signal side channel: `podlink resume` / `reset` reach a running session without a socket.

The daemon speaks only over stdio, so a second terminal cannot call it. Instead the command
leaves a request file beside the session's status file and sends the daemon's process
SIGUSR1; the daemon looks for request files of its sessions when the signal arrives. Only
the user who runs the daemon can signal it or write into its state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from podlink.runtime import sessions_dir
from podlink.targets.base import TargetUnavailable

if TYPE_CHECKING:
    from podlink.session.registry import SessionRegistry

log = logging.getLogger(__name__)

SyncAction = Literal["resume", "reset"]
ACTIONS: tuple[SyncAction, ...] = ("resume", "reset")


def request_file(session_id: str, action: SyncAction) -> Path:
    return sessions_dir() / f"{session_id}.{action}"


def ask_running_session(session_id: str, pid: int, action: SyncAction) -> None:
    """Leave the request and wake the daemon that runs ``session_id``."""
    path = request_file(session_id, action)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(action, encoding="utf-8")
    os.kill(pid, signal.SIGUSR1)


def answer_requests_on_signal(
    registry: SessionRegistry, on_error: Callable[[str], None] | None = None
) -> None:
    """Make SIGUSR1 carry out the request files left for this process's sessions."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()

    async def carry_out() -> None:
        for session in registry.list():
            for action in ACTIONS:
                path = request_file(session.id, action)
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                log.info("%s requested for session %s", action, session.id)
                try:
                    if action == "resume":
                        await session.resume_sync()
                    else:
                        await session.reset_sync()
                except TargetUnavailable as error:
                    if on_error is not None:
                        on_error(f"cannot {action} the sync: {error}")

    def on_signal() -> None:
        task = loop.create_task(carry_out())
        running.add(task)
        task.add_done_callback(running.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, on_signal)
