"""The level the daemon gives each podlink/log message."""

from __future__ import annotations

import pytest

from podlink import protocol
from podlink.server.log_levels import log_level

CASES: list[tuple[protocol.LogSource, str, protocol.LogLevel]] = [
    ("app", "hello app listening on http://127.0.0.1:8000", "info"),
    ("app", "Traceback (most recent call last):", "error"),
    ("app", "ValueError: bad greeting", "error"),
    ("app", "WARNING: slow request", "warning"),
    ("app", "DeprecationWarning: old API", "warning"),
    ("test", "E       assert 'a' == 'b'", "error"),
    ("build", "$ python -m compileall -q .", "info"),
    ("sync", "synced 1 file (120 B) in 6 ms", "debug"),
    ("sync", "initial sync of . -> /app: 8 file(s)", "info"),
    ("daemon", "cannot forward port 8000: in use", "warning"),
    ("daemon", "reconnected to the target and resynced", "info"),
]


@pytest.mark.parametrize(("source", "text", "level"), CASES)
def test_level_of_one_line(source: protocol.LogSource, text: str, level: protocol.LogLevel) -> None:
    assert log_level(source, text) == level


def test_a_message_of_several_lines_takes_its_most_severe_line() -> None:
    traceback = "Traceback (most recent call last):\n  File \"x\"\nKeyError: 'a'\n"
    assert log_level("app", traceback) == "error"
    assert log_level("app", "starting\nWARNING: no cache\nready\n") == "warning"
    assert log_level("app", "") == "info"
