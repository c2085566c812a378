"""The framed protocol between the daemon and the in-target agent, daemon side.

A frame is a 9-byte header, ``struct.pack(">IBI", payload_length, message_type, request_id)``,
then the payload. Control payloads are UTF-8 JSON objects; DATA payloads are raw file bytes
(never base64). No payload may exceed ``MAX_PAYLOAD``; the agent answers a larger frame with
a ``protocol`` error and exits.

The client picks a fresh request id for every request. The agent handles requests strictly
in order and answers each exactly once, with OK or ERROR; a SCAN's OK is preceded by zero or
more ENTRIES frames with the same id.

Requests and their OK results (every ``path``, ``src`` and ``dst`` is a relative POSIX path
confined to ``root``, an absolute path in the target; a path that could leave the root is
refused with ERROR ``escape``):

=============  ===================================  =======================================
HELLO          ``{}``                               ``{version, protocol, python, platform,
                                                    pid, uid}``
SCAN           ``{root, hash}``                     ENTRIES frames, then ``{count, missing,
                                                    problems}``
HASH           ``{root, paths}``                    ``{digests: {path: sha256 | null}}``
WRITE          ``{root, path, mode, size, mtime_ns?}`` + DATA  ``{digest}``
DELETE         ``{root, path, recursive}``          ``{existed}``
MKDIR          ``{root, path, mode}``               ``{}``
SYMLINK        ``{root, path, target}``             ``{}``
CHMOD          ``{root, path, mode}``               ``{}``
RENAME         ``{root, src, dst}``                 ``{}``
ENSURE_ROOT    ``{root}``                           ``{created}``
WRITE_MANY     ``{root, files}`` + DATA             ``{failed: [[path, code, message]]}``
=============  ===================================  =======================================

ERROR replies are ``{code, message, path}`` with ``code`` from ``ErrorCode``.

A WRITE is followed at once by DATA frames with its id that carry exactly ``size`` bytes in
all (none when ``size`` is 0). An empty DATA frame before that cancels the write: the agent
discards what it received and answers ERROR ``cancelled``. This lets a sender whose source
shrank, failed or was cancelled stop cleanly without desynchronising the stream.

A WRITE_MANY lists ``files`` as ``[[path, mode, size, mtime_ns], ...]``; its DATA frames
carry all their contents back to back. Each file is written like a WRITE (temp file, then
rename); one that fails is listed in ``failed`` and the rest are still written.

ENTRIES frames carry ``{"entries": [row, ...], "problems": [{"path", "message"}, ...]}``
(``problems`` is optional) where a row is ``[path, kind, mode, size, mtime_ns, inode,
link_target, digest]``; the SCAN's OK carries the problems not sent yet.

The agent (``agent.py``) must stay a single stdlib-only file, so it repeats the constants
below; a test keeps the two copies equal.
"""

from __future__ import annotations

import enum
import struct
from typing import Any, TypeVar

import msgspec

AGENT_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
HEADER_FORMAT = ">IBI"
HEADER = struct.Struct(HEADER_FORMAT)
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 4 * 1024 * 1024
# Temporary files the agent writes before renaming; scans never report them.
TEMP_PREFIX = ".podlink-tmp-"


class MessageType(enum.IntEnum):
    # Requests, daemon to agent.
    HELLO = 1
    SCAN = 2
    HASH = 3
    WRITE = 4
    DATA = 5
    DELETE = 6
    MKDIR = 7
    SYMLINK = 8
    CHMOD = 9
    RENAME = 10
    ENSURE_ROOT = 11
    WRITE_MANY = 12
    # Replies, agent to daemon.
    OK = 64
    ERROR = 65
    ENTRIES = 66


class ErrorCode:
    """The ``code`` values of ERROR replies (and of the client's own errors)."""

    ESCAPE = "escape"  # the path is malformed or could leave the sync root
    NOT_FOUND = "notFound"
    EXISTS = "exists"
    IS_DIRECTORY = "isDirectory"
    NOT_DIRECTORY = "notDirectory"
    NOT_EMPTY = "notEmpty"
    IS_SYMLINK = "isSymlink"
    PERMISSION_DENIED = "permissionDenied"
    NO_SPACE = "noSpace"
    READ_ONLY = "readOnly"
    NAME_TOO_LONG = "nameTooLong"
    CROSS_DEVICE = "crossDevice"
    INVALID = "invalid"
    BUSY = "busy"
    IO = "io"  # any other operating system error
    CANCELLED = "cancelled"  # the sender cancelled a write
    BAD_REQUEST = "badRequest"
    UNKNOWN_REQUEST = "unknownRequest"
    PROTOCOL = "protocol"  # the stream broke the framing rules; the agent exits
    INTERNAL = "internal"  # a bug in the agent
    # Raised by the client only.
    GONE = "gone"  # the agent ended or its stream broke
    CHANGED = "changed"  # the local source changed while it was being sent


def frame(kind: MessageType, request_id: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a {kind.name} payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(len(payload), kind, request_id) + payload


def encode_json(message: dict[str, Any]) -> bytes:
    return msgspec.json.encode(message)


# --- Reply payloads -----------------------------------------------------------------------


class ErrorReply(msgspec.Struct, frozen=True):
    code: str
    message: str
    path: str | None = None


class Problem(msgspec.Struct, frozen=True):
    path: str
    message: str


# [path, kind, mode, size, mtime_ns, inode, link_target, digest]
EntryRow = tuple[str, str, int, int, int, int, str | None, str | None]


class EntriesBatch(msgspec.Struct, frozen=True):
    entries: list[EntryRow]
    problems: list[Problem] = []


class ScanDone(msgspec.Struct, frozen=True):
    count: int
    missing: bool
    problems: list[Problem] = []


class HashReply(msgspec.Struct, frozen=True):
    digests: dict[str, str | None]


class WriteReply(msgspec.Struct, frozen=True):
    digest: str


class WriteManyReply(msgspec.Struct, frozen=True):
    failed: list[tuple[str, str, str]]


class DeleteReply(msgspec.Struct, frozen=True):
    existed: bool


class EnsureRootReply(msgspec.Struct, frozen=True):
    created: bool


class EmptyReply(msgspec.Struct, frozen=True):
    pass


ReplyT = TypeVar("ReplyT")


def decode_reply(payload: bytes, reply_type: type[ReplyT]) -> ReplyT:
    """Decode and validate an agent reply; msgspec.ValidationError when it does not fit."""
    return msgspec.json.decode(payload, type=reply_type)
