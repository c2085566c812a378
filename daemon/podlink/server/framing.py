"""LSP framing (``Content-Length`` headers, then a JSON body) read defensively.

A client that sends a bad header, a body that is not JSON or a message that is not a
JSON-RPC 2.0 object gets the JSON-RPC error for it (``id: null`` when the message has no
usable id), and the daemon looks for the next ``Content-Length`` header and goes on: one bad
message never leaves it deaf. A message may be at most ``MAX_MESSAGE_BYTES`` long; a longer
one is refused without being read into memory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, BinaryIO

from podlink import protocol

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A header line longer than this is not a header; reads while looking for one take this much.
MAX_HEADER_LINE = 64 * 1024
HEADER_NAME = b"content-length"
HEADER_TOKEN = b"Content-Length:"
HEADER_NAME_SHAPE = re.compile(rb"[A-Za-z0-9-]+")


@dataclass(frozen=True)
class FrameError:
    """A framing problem: the error to answer with, ``id: null``."""

    code: protocol.ErrorCode
    message: str
    data: dict[str, Any]
    id: int | str | None = None


class FrameReader:
    """Reads one framed message at a time from a blocking binary stream (run it in a thread)."""

    def __init__(self, stream: BinaryIO, limit: int = MAX_MESSAGE_BYTES) -> None:
        self._stream = stream
        self._limit = limit
        self._carry = b""
        self._skip_from: bytes | None = None

    def next_frame(self) -> bytes | FrameError | None:
        """The next message's body, a FrameError, or None at the end of the stream.

        After an error, the next call first skips what belongs to the bad message: the error
        is answered at once, not when the client sends its next message.
        """
        if self._skip_from is not None:
            start, self._skip_from = self._skip_from, None
            if not self._resync(start):
                return None
        length: int | None = None
        error: FrameError | None = None
        seen_header = False
        while True:
            line = self._readline()
            if not line:
                return None
            stripped = line.rstrip(b"\r\n")
            if not stripped:
                if not seen_header:
                    continue  # blank lines between messages are harmless
                break
            seen_header = True
            name, colon, value = stripped.partition(b":")
            if not colon or not line.endswith(b"\n") or not HEADER_NAME_SHAPE.fullmatch(name):
                error = parse_error("expected a `Name: value` header line", stripped)
            elif name.strip().lower() == HEADER_NAME:
                length, error = self._length(value.strip())
            if error is not None:
                # Whatever followed belongs to the bad message: skip to the next header, which
                # may even start inside this line (a body sent without its own header).
                self._skip_from = line[1:]
                return error
        if length is None:
            self._skip_from = b""
            return parse_error("the headers have no Content-Length", b"")
        body = self._stream.read(length) if length else b""
        if len(body) < length:
            return None
        return body

    def _length(self, value: bytes) -> tuple[int | None, FrameError | None]:
        if not value.isdigit():
            return None, parse_error("Content-Length is not a number of bytes", value)
        length = int(value)
        if length > self._limit:
            return None, FrameError(
                protocol.ErrorCode.INVALID_REQUEST,
                f"a message of {length} bytes is longer than the limit of {self._limit} bytes",
                {
                    "reason": protocol.ERROR_REASONS[protocol.ErrorCode.INVALID_REQUEST],
                    "detail": {"limit": self._limit, "length": length},
                },
            )
        return length, None

    def _readline(self) -> bytes:
        if self._carry:
            carried, self._carry = self._carry, b""
            if carried.endswith(b"\n"):
                return carried
            return carried + self._stream.readline(MAX_HEADER_LINE)
        return self._stream.readline(MAX_HEADER_LINE)

    def _resync(self, start: bytes) -> bool:
        """Skip to the next ``Content-Length:`` header; False at the end of the stream."""
        data = start
        while True:
            found = data.find(HEADER_TOKEN)
            if found >= 0:
                self._carry = data[found:]
                return True
            # Keep what could be the start of a header cut off at the end of this read.
            tail = b"" if data.endswith(b"\n") else data[-(len(HEADER_TOKEN) - 1) :]
            chunk = self._readline()
            if not chunk:
                return False
            data = tail + chunk


def parse_error(message: str, near: bytes) -> FrameError:
    shown = near[:80].decode("utf-8", errors="replace")
    return FrameError(
        protocol.ErrorCode.PARSE_ERROR,
        f"{message} (near {shown!r}); skipped to the next Content-Length header",
        {"reason": protocol.ERROR_REASONS[protocol.ErrorCode.PARSE_ERROR]},
    )


def decode(body: bytes) -> dict[str, Any] | FrameError:
    """The body as a JSON-RPC 2.0 object, or the error to answer with."""
    try:
        data = json.loads(body)
    except ValueError as error:  # not UTF-8 or not JSON
        return FrameError(
            protocol.ErrorCode.PARSE_ERROR,
            f"the message is not JSON: {error}",
            {"reason": protocol.ERROR_REASONS[protocol.ErrorCode.PARSE_ERROR]},
        )
    if not isinstance(data, dict):
        kind = "an array (batches are not supported)" if isinstance(data, list) else "not an object"
        return invalid_request(f"the message is {kind}", None)
    message_id = data.get("id")
    if not is_id(message_id):
        return invalid_request('"id" is not a string, an integer or null', None)
    if data.get("jsonrpc") != "2.0":
        return invalid_request('the message lacks "jsonrpc": "2.0"', message_id)
    if "method" in data and not isinstance(data["method"], str):
        return invalid_request('"method" is not a string', message_id)
    if "method" not in data and "id" not in data:
        return invalid_request('the message has neither "method" nor "id"', None)
    return data


def is_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    )


def invalid_request(message: str, message_id: int | str | None) -> FrameError:
    return FrameError(
        protocol.ErrorCode.INVALID_REQUEST,
        message,
        {"reason": protocol.ERROR_REASONS[protocol.ErrorCode.INVALID_REQUEST]},
        message_id,
    )
