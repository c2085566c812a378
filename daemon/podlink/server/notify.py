"""Daemon → client traffic: session changes, logs, and daemon warnings as window messages."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import msgspec
from lsprotocol import types

from podlink import protocol as wire

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer


class ClientNotifier:
    """The sessions' listener when an editor is attached: everything becomes notifications."""

    def __init__(self, server: PodlinkServer) -> None:
        self._server = server

    def session_changed(self, session: wire.Session) -> None:
        self._server.protocol.notify(wire.SESSION_CHANGED, msgspec.to_builtins(session))

    def log(self, session_id: str, source: wire.LogSource, text: str) -> None:
        params = wire.LogParams(session_id=session_id, source=source, text=text)
        self._server.protocol.notify(wire.LOG, msgspec.to_builtins(params))

    def show_error(self, message: str) -> None:
        self._server.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Error, message=message)
        )

    def install_log_forwarding(self) -> None:
        """Send the daemon's own INFO and above to the client's log (``window/logMessage``)."""
        handler = _WindowLogHandler(self._server)
        handler.setLevel(logging.INFO)
        logging.getLogger("podlink").addHandler(handler)


_LEVELS = {
    logging.ERROR: types.MessageType.Error,
    logging.WARNING: types.MessageType.Warning,
    logging.INFO: types.MessageType.Info,
}


class _WindowLogHandler(logging.Handler):
    def __init__(self, server: PodlinkServer) -> None:
        super().__init__()
        self._server = server

    def emit(self, record: logging.LogRecord) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # logged from a worker thread or before the loop runs: the file has it
        message_type = _LEVELS.get(record.levelno, types.MessageType.Log)
        params = types.LogMessageParams(type=message_type, message=self.format(record))
        loop.call_soon(self._server.window_log_message, params)
