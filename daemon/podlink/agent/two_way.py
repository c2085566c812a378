"""What two-way sync needs from the agent beyond uploads, daemon side.

* Preconditions (``Expected``, ``NO_CHECK``): a change in the target happens only if what
  is at its path is still what the daemon last saw, so an edit made there meanwhile is
  never overwritten.
* READ: a file's bytes stream into a new local file as they arrive (``LocalFile`` fed
  through ``Incoming``), so memory stays bounded whatever the file's size.
* WATCH: ``RemoteChanges`` are the CHANGES frames the agent sends, decoded.

``client.Agent`` exposes the requests themselves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import os
from pathlib import Path
from typing import Any, Literal, TypeAlias

import msgspec

from podlink.agent import wire
from podlink.sync.core.snapshot import KIND_OF_VALUE, Entry, Kind

# Received chunks are written on the event loop up to this size: a hop to a worker thread
# costs more than writing a few kilobytes to the page cache.
INLINE_WRITE_LIMIT = 64 * 1024
# READ chunks (1 MiB each) that may wait for the local disk before the reply reader waits too.
INCOMING_CHUNKS = 2


# --- Preconditions ------------------------------------------------------------------------


class Expected(msgspec.Struct, frozen=True):
    """What must be at a path for a change to go ahead: an entry of ``kind`` and, for a
    file, this ``size`` and ``mtime_ns`` (folders and symlinks are checked by kind only)."""

    kind: Kind
    size: int = 0
    mtime_ns: int = 0

    @classmethod
    def entry(cls, entry: Entry) -> Expected:
        return cls(entry.kind, entry.size, entry.mtime_ns)


class NoCheck(enum.Enum):
    NO_CHECK = "no check"


NO_CHECK = NoCheck.NO_CHECK
# ``Expected``: that entry must be there. ``None``: nothing may be there. ``NO_CHECK``: the
# change happens whatever is there (uploads work this way).
Precondition: TypeAlias = Expected | Literal[NoCheck.NO_CHECK] | None


def add_precondition(request: dict[str, Any], key: str, expect: Precondition) -> None:
    if expect is not NO_CHECK:
        request[key] = encode_precondition(expect)


def encode_precondition(expect: Expected | None) -> list[Any] | None:
    return None if expect is None else [expect.kind.value, expect.size, expect.mtime_ns]


# --- READ ---------------------------------------------------------------------------------


class Incoming:
    """A READ's chunks on their way from the reply reader to the caller writing them out.

    At most INCOMING_CHUNKS wait; then the reader waits too, which holds up the other
    replies only while the local disk is slower than the stream.
    """

    def __init__(self) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._moved = asyncio.Event()  # a chunk was put or taken, or the stream ended
        self._ended = False
        self._abandoned = False

    async def put(self, chunk: bytes) -> None:
        while len(self._chunks) >= INCOMING_CHUNKS and not self._abandoned:
            self._moved.clear()
            await self._moved.wait()
        if not self._abandoned:
            self._chunks.append(chunk)
            self._moved.set()

    def end(self) -> None:
        """No more chunks: the reply came, or the agent is gone."""
        self._ended = True
        self._moved.set()

    def abandon(self) -> None:
        """The caller gave up: drop what waits and what still comes."""
        self._abandoned = True
        self._chunks.clear()
        self._moved.set()

    async def take(self) -> bytes | None:
        """The next chunk; None once the stream ended and every chunk was taken."""
        while not self._chunks:
            if self._ended:
                return None
            self._moved.clear()
            await self._moved.wait()
        chunk = self._chunks.popleft()
        self._moved.set()
        return chunk


class LocalFile:
    """The new local file a READ fills: created exclusively, removed again on failure.

    Its methods raise OSError.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._writing: asyncio.Future[None] | None = None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        self._open = True

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(chunk) <= INLINE_WRITE_LIMIT:
            _write_all(self._fd, chunk)
            return
        loop = asyncio.get_running_loop()
        self._writing = loop.run_in_executor(None, _write_all, self._fd, chunk)
        # Shielded: cancelling the caller must not orphan a thread still writing to the fd,
        # which discard() closes only once that write is over.
        await asyncio.shield(self._writing)

    def finish(self, mode: int) -> None:
        """Give the file the remote permission bits, less setuid, setgid and sticky bits."""
        self._open = False
        try:
            os.fchmod(self._fd, mode & 0o777)
        finally:
            os.close(self._fd)

    async def discard(self) -> None:
        if self._writing is not None:
            await asyncio.wait({self._writing})
        if self._open:
            self._open = False
            os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- WATCH --------------------------------------------------------------------------------


class RemoteChanges(msgspec.Struct, frozen=True):
    """One CHANGES frame: paths that changed in the target.

    ``entries`` are changed paths as they were when reported; ``gone`` changed paths that
    no longer exist, each with everything below it. ``overflow``: changes were lost, rescan.
    ``warning`` is for the user (watching fell back to polling, and why).
    """

    entries: dict[str, Entry]
    gone: tuple[str, ...]
    overflow: bool
    warning: str | None = None


def decode_changes(payload: bytes) -> RemoteChanges:
    """A CHANGES payload; one that cannot be read becomes an overflow, so nothing is missed."""
    try:
        batch = wire.decode_reply(payload, wire.ChangesBatch)
        entries = dict(entry_from_row(row) for row in batch.entries)
    except (msgspec.DecodeError, KeyError) as error:
        warning = f"the agent sent a change report that does not fit the protocol: {error!r}"
        return RemoteChanges(entries={}, gone=(), overflow=True, warning=warning)
    return RemoteChanges(
        entries=entries, gone=tuple(batch.gone), overflow=batch.overflow, warning=batch.warning
    )


def entry_from_row(row: wire.EntryRow) -> tuple[str, Entry]:
    path, kind, mode, size, mtime_ns, inode, link_target, digest = row
    entry = Entry(
        kind=KIND_OF_VALUE[kind],
        mode=mode,
        size=size,
        mtime_ns=mtime_ns,
        digest=digest,
        link_target=link_target,
        inode=inode,
    )
    return path, entry
