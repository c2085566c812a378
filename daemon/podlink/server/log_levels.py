"""The level of each ``podlink/log`` message, decided once in the daemon for every client.

The daemon's own messages say trouble in words; the app's, the build's and the tests' output
is the user's programs', recognised by the well-known shapes of their error and warning lines.
A message of several lines takes the most severe level of any of them.
"""

from __future__ import annotations

import re

from podlink import protocol

ERROR_LINE = re.compile(
    r"^(Traceback \(most recent call last\)|E\s{2,}|\S*(Error|Exception)\b:|FATAL|CRITICAL|ERROR\b)"
)
WARNING_LINE = re.compile(r"^(WARN(ING)?\b|\S*Warning:)")
DAEMON_TROUBLE = re.compile(r"\b(cannot|could not|failed|lost|unavailable|refused)\b", re.I)

SEVERITY: tuple[protocol.LogLevel, ...] = ("debug", "info", "warning", "error")


def line_level(source: protocol.LogSource, line: str) -> protocol.LogLevel:
    trimmed = line.lstrip()
    if ERROR_LINE.match(trimmed):
        return "error"
    if WARNING_LINE.match(trimmed):
        return "warning"
    if source == "daemon":
        return "warning" if DAEMON_TROUBLE.search(trimmed) else "info"
    if source == "sync" and trimmed.startswith("synced "):
        # One line per synced batch: useful when looking into the sync, noise otherwise.
        return "debug"
    return "info"


def log_level(source: protocol.LogSource, text: str) -> protocol.LogLevel:
    """The most severe level of the message's lines."""
    lines = text.rstrip("\r\n").splitlines() or [""]
    return max((line_level(source, line) for line in lines), key=SEVERITY.index)
