"""The file that leaves a session's state where ``podlink status`` in another terminal reads it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import msgspec

from podlink import protocol
from podlink.runtime import sessions_dir

log = logging.getLogger(__name__)


class StatusFile:
    def __init__(self, session_id: str) -> None:
        self._session_id = session_id

    @property
    def path(self) -> Path:
        return sessions_dir() / f"{self._session_id}.json"

    def write(self, snapshot: protocol.Session) -> None:
        path = self.path
        record = {"pid": os.getpid(), "session": msgspec.to_builtins(snapshot)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record), encoding="utf-8")
            temporary.replace(path)
        except OSError as error:
            log.debug("cannot write the session status file %s: %s", path, error)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
