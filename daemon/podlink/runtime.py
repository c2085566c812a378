"""Where podlink keeps its own files (logs, session status) and how it logs.

Stdout belongs to the protocol when the daemon serves an editor, so logging goes to a file
under the user's state directory and to stderr, never to stdout.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def state_dir() -> Path:
    """``$PODLINK_STATE_DIR``, else ``$XDG_STATE_HOME/podlink``, else ``~/.local/state/podlink``."""
    explicit = os.environ.get("PODLINK_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "podlink"


def sessions_dir() -> Path:
    return state_dir() / "sessions"


def live_session_records() -> list[dict[str, Any]]:
    """The status files of sessions whose process still runs: ``{"pid", "session"}`` each.

    A file whose process is gone was left by a daemon that was killed: it is removed.
    """
    records = []
    folder = sessions_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if process_alive(int(record.get("pid", 0))):
            records.append(record)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return records


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderServed(Exception):
    """Another process of this user already runs ``podlink up`` (or ``debug``) for the folder."""

    def __init__(self, folder: Path, pid: int | None) -> None:
        self.folder = folder
        self.pid = pid
        who = f"podlink (pid {pid}: {_command_line(pid)})" if pid else "another podlink"
        stop = f"Ctrl-C in its terminal, or `kill {pid}`" if pid else "Ctrl-C in its terminal"
        super().__init__(
            f"{folder} is already served by {who}; a second one would start the app twice. "
            f"Use that one (`podlink status` shows it), or stop it first ({stop})"
        )


def claim_folder(folder: Path) -> int:
    """Make this process the one that serves ``folder`` with its app, for as long as it runs.

    Returns a file descriptor to keep open (the claim ends with the process, however it
    ends: the kernel drops the lock). Raises FolderServed naming the process that holds it.
    """
    locks = state_dir() / "serving"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(os.fsencode(folder)).hexdigest()[:24]
    fd = os.open(locks / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise FolderServed(folder, int(text) if text.isdigit() else None) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "unknown command"
    words = raw.rstrip(b"\0").decode(errors="replace").split("\0")
    # `python -m podlink up …` reads better as `podlink up …`.
    if "podlink" in words[:3]:
        words = words[words.index("podlink") :]
    elif words and words[0].endswith("/podlink"):
        words[0] = "podlink"
    return " ".join(words)


def log_file() -> Path:
    return state_dir() / "daemon.log"


def setup_logging(*, verbose: bool = False, to_stderr: bool = True) -> Path | None:
    """Log to the state directory's rotating file (and stderr); returns the file if usable."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("pygls", "watchdog", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    formatter = logging.Formatter(LOG_FORMAT)
    if to_stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        stream.setLevel(logging.DEBUG if verbose else logging.WARNING)
        root.addHandler(stream)
    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=5 << 20, backupCount=2, encoding="utf-8"
        )
    except OSError:
        return None
    file_handler.setFormatter(formatter)
    root.addHandler(file_handler)
    return path
