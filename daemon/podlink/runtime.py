"""Where podlink keeps its own files (logs, session status) and how it logs.

Stdout belongs to the protocol when the daemon serves an editor, so logging goes to a file
under the user's state directory and to stderr, never to stdout.
"""

from __future__ import annotations

import contextlib
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
