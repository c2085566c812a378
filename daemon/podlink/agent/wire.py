"""The framed protocol between the daemon and the in-target agent, daemon side.

A frame is a 9-byte header, ``struct.pack(">IBI", payload_length, message_type, request_id)``,
then the payload. Control payloads are UTF-8 JSON objects; DATA payloads are raw file bytes
(never base64). No payload may exceed ``MAX_PAYLOAD``; the agent answers a larger frame with
a ``protocol`` error and exits.

The client picks a fresh request id for every request. The agent handles requests strictly
in order and answers each exactly once, with OK or ERROR; a SCAN's OK is preceded by zero or
more ENTRIES frames with the same id, a READ's by DATA frames. After a WATCH's OK, CHANGES
frames with its id may come at any time, between any other frames, until an UNWATCH (or a
new WATCH) is answered.

Requests and their OK results (every ``path``, ``src`` and ``dst`` is a relative POSIX path
confined to ``root``, an absolute path in the target; a path that could leave the root is
refused with ERROR ``escape``):

=============  ===================================  =======================================
HELLO          ``{}``                               ``{version, protocol, python, platform,
                                                    pid, uid}``
SCAN           ``{root, hash}``                     ENTRIES frames, then ``{count, missing,
                                                    problems}``
HASH           ``{root, paths}``                    ``{digests: {path: sha256 | null}}``
WRITE          ``{root, path, mode, size,           ``{digest}``
               mtime_ns?, expect?}`` + DATA
DELETE         ``{root, path, recursive,            ``{existed}``
               expect?}``
MKDIR          ``{root, path, mode, expect?}``      ``{}``
SYMLINK        ``{root, path, target, expect?}``    ``{}``
CHMOD          ``{root, path, mode, expect?}``      ``{}``
RENAME         ``{root, src, dst, expect?,          ``{}``
               expect_dst?}``
ENSURE_ROOT    ``{root, owner?}``                   ``{created}``
WRITE_MANY     ``{root, files}`` + DATA             ``{failed: [[path, code, message]]}``
READ           ``{root, path}``                     DATA frames, then ``{size, mode,
                                                    mtime_ns, digest}``
WATCH          ``{root, poll_interval_ms?,          ``{method, warning?}``, then CHANGES
               method?, max_watches?}``             frames
UNWATCH        ``{}``                               ``{}``
=============  ===================================  =======================================

ERROR replies are ``{code, message, path}`` with ``code`` from ``ErrorCode``.

A WRITE is followed at once by DATA frames with its id that carry exactly ``size`` bytes in
all (none when ``size`` is 0). An empty DATA frame before that cancels the write: the agent
discards what it received and answers ERROR ``cancelled``. This lets a sender whose source
shrank, failed or was cancelled stop cleanly without desynchronising the stream.

A WRITE_MANY lists ``files`` as ``[[path, mode, size, mtime_ns, expect?], ...]``; its DATA
frames carry all their contents back to back. Each file is written like a WRITE (temp file,
then rename); one that fails is listed in ``failed`` and the rest are still written.

``expect`` (``expect_dst`` for a RENAME's ``dst``) is a precondition, so that two-way sync
never overwrites an edit made in the target after it looked: JSON null means nothing may be
at the path; ``[kind, size, mtime_ns]`` means an entry of that kind (``"f"``, ``"d"``,
``"l"``) must be there and, for a file, have that size and mtime. It is checked with lstat
right before the final rename, unlink or change; a mismatch (a folder on the way missing
included) is ERROR ``changed``, or a ``changed`` entry in ``failed``. Without the field
nothing is checked.

ENSURE_ROOT's ``owner`` (``"user"``, ``"user:group"``, ``"uid"`` or ``"uid:gid"``, names
looked up in the target) makes the agent give everything it creates or replaces below that
root, files, folders and symlinks alike, to that owner; an ENSURE_ROOT without it ends that.
An unknown name is ERROR ``badRequest``; an owner the agent's user may not give files to is
ERROR ``permissionDenied``.

A READ streams a regular file in DATA frames of at most 1 MiB, then OK with its metadata and
the sha256 of what was sent. ERROR ``changed`` (after some DATA, perhaps) means the file
changed while it was read: its size, mtime or inode differed afterwards. A symlink is
``isSymlink``, a folder ``isDirectory``, another special file ``invalid``.

A WATCH reports changes below ``root`` in CHANGES frames ``{"entries": [row, ...], "gone":
[path, ...], "overflow": bool, "warning"?: str}``: ``entries`` are changed paths as they are
when reported (rows as in ENTRIES, digest null), ``gone`` changed paths that no longer
exist, each with everything below it. ``overflow`` means changes were lost: the daemon must
rescan. ``method`` in the OK is ``"inotify"`` or ``"polling"`` (a walk of the tree every
``poll_interval_ms``, 500 by default); ``warning`` says why it polls when it could not use
inotify (a limit reached names the sysctl to raise). Should inotify fail later, a CHANGES
frame carries the warning and ``overflow`` and polling goes on from there. The request's
``method: "polling"`` asks for polling (file systems whose changes inotify does not see);
``max_watches`` caps the inotify watches it may use. One watch at a time: a new WATCH
replaces the last (even when it fails); UNWATCH or the end of the input stops it.

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
    READ = 13
    WATCH = 14
    UNWATCH = 15
    # Replies, agent to daemon (DATA too, for a READ).
    OK = 64
    ERROR = 65
    ENTRIES = 66
    CHANGES = 67


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
    INVALID = "invalid"  # also: a READ of something that is not a regular file
    BUSY = "busy"
    IO = "io"  # any other operating system error
    CANCELLED = "cancelled"  # the sender cancelled a write
    BAD_REQUEST = "badRequest"
    UNKNOWN_REQUEST = "unknownRequest"
    PROTOCOL = "protocol"  # the stream broke the framing rules; the agent exits
    INTERNAL = "internal"  # a bug in the agent
    # A READ's file changed while it was read, a precondition (``expect``) failed, or (from
    # the client) the local source of a write changed while it was being sent.
    CHANGED = "changed"
    # Raised by the client only.
    GONE = "gone"  # the agent ended or its stream broke


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


class ReadResult(msgspec.Struct, frozen=True):
    """A READ's OK: the file that was sent, as it was (and stayed) while it was read."""

    size: int
    mode: int  # permission bits
    mtime_ns: int
    digest: str  # sha256 of the bytes sent


class WatchStarted(msgspec.Struct, frozen=True):
    """A WATCH's OK."""

    method: str  # "inotify" or "polling"
    warning: str | None = None  # why it polls, for the user


class ChangesBatch(msgspec.Struct, frozen=True):
    entries: list[EntryRow]
    gone: list[str]
    overflow: bool = False
    warning: str | None = None


ReplyT = TypeVar("ReplyT")


def decode_reply(payload: bytes, reply_type: type[ReplyT]) -> ReplyT:
    """Decode and validate an agent reply; msgspec.ValidationError when it does not fit."""
    return msgspec.json.decode(payload, type=reply_type)
