"""Daemon → client traffic: session changes, logs, and daemon warnings as window messages."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from lsprotocol import types

from podlink import protocol
from podlink.diagnostics import Diagnostic, DiagnosticSource
from podlink.server.log_levels import log_level

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer


class ClientNotifier:
    """The sessions' listener when an editor is attached: everything becomes notifications."""

    def __init__(self, server: PodlinkServer) -> None:
        self._server = server

    def session_changed(self, session: protocol.Session) -> None:
        self._server.protocol.notify(protocol.SESSION_CHANGED, msgspec.to_builtins(session))

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None:
        params = protocol.LogParams(
            session_id=session_id, source=source, text=text, level=log_level(source, text)
        )
        self._server.protocol.notify(protocol.LOG, msgspec.to_builtins(params))

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        self._server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=path.as_uri(), diagnostics=[to_lsp(source, each) for each in diagnostics]
            )
        )

    def show_error(self, message: str) -> None:
        self._server.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Error, message=message)
        )

    def install_log_forwarding(self) -> None:
        """Send the daemon's own INFO and above to the client's log (``window/logMessage``)."""
        handler = _WindowLogHandler(self._server)
        handler.setLevel(logging.INFO)
        logging.getLogger("podlink").addHandler(handler)


_SEVERITIES = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}

# A diagnostic without an end column covers the rest of its line; LSP clamps to the line end.
WHOLE_LINE = 10_000


def to_lsp(source: DiagnosticSource, diagnostic: Diagnostic) -> types.Diagnostic:
    """podlink's 1-based lines and columns to LSP's 0-based range."""
    start = types.Position(line=diagnostic.line - 1, character=diagnostic.column - 1)
    end_line = (diagnostic.end_line or diagnostic.line) - 1
    end_character = (diagnostic.end_column - 1) if diagnostic.end_column else WHOLE_LINE
    related = [
        types.DiagnosticRelatedInformation(
            location=types.Location(
                uri=item.path.as_uri(),
                range=types.Range(
                    start=types.Position(line=item.line - 1, character=0),
                    end=types.Position(line=item.line - 1, character=WHOLE_LINE),
                ),
            ),
            message=item.message,
        )
        for item in diagnostic.related
    ]
    return types.Diagnostic(
        range=types.Range(start=start, end=types.Position(line=end_line, character=end_character)),
        message=diagnostic.message,
        severity=_SEVERITIES[diagnostic.severity],
        source=source,
        code=diagnostic.code,
        related_information=related or None,
    )


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
