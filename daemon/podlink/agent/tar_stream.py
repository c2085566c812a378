"""The tar stream of the tar transport: the requests waiting for their batch, the archive
that carries a batch's files, folders and symlinks into ``tar -x``, and the settling of each
request from what tar and the script reported.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

from podlink.agent.agent import split_relative_path
from podlink.agent.client import AgentError
from podlink.agent.local_files import (
    CHUNK_SIZE,
    INLINE_READ_LIMIT,
    changed_since_opened,
    open_source,
)
from podlink.agent.tar_scripts import NANOSECONDS
from podlink.agent.wire import ErrorCode
from podlink.targets.base import ExecStream

logger = logging.getLogger("podlink.agent.tar")

# Bytes collected before they are written to the exec's input.
SEND_SIZE = 256 * 1024
TAR_BLOCK = tarfile.BLOCKSIZE
END_OF_ARCHIVE = bytes(2 * TAR_BLOCK)

ResultT = TypeVar("ResultT")


class Request(Generic[ResultT]):
    """One caller's operation, settled when the exec that carries it has ended."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()

    def succeed(self, result: ResultT) -> None:
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class WriteRequest(Request[str]):
    def __init__(
        self, path: str, source: Path, mode: int | None, expected_size: int | None
    ) -> None:
        super().__init__(path)
        self.source = source
        self.mode = mode
        self.expected_size = expected_size
        self.digest = ""
        self.error: BaseException | None = None  # found while reading the local file


class MkdirRequest(Request[None]):
    def __init__(self, path: str, mode: int) -> None:
        super().__init__(path)
        self.mode = mode


class SymlinkRequest(Request[None]):
    def __init__(self, path: str, link_target: str) -> None:
        super().__init__(path)
        self.link_target = link_target


class ChmodRequest(Request[None]):
    def __init__(self, path: str, mode: int) -> None:
        super().__init__(path)
        self.mode = mode


class DeleteRequest(Request[bool]):
    pass


Member = WriteRequest | MkdirRequest | SymlinkRequest  # what travels as a tar member
Change = Member | ChmodRequest
RequestT = TypeVar("RequestT", bound=Request[Any])


def settle_changes(
    changes: list[Change], code: int, sent_all: bool, errors: str, notes: list[str]
) -> None:
    blamed: dict[str, str] = {}
    if code != 0 or not sent_all:
        names = {change.path for change in changes if not isinstance(change, ChmodRequest)}
        found = _blame_members(errors, names) if sent_all else None
        if found is None:
            message = errors or f"tar failed (exit code {code})"
            if not sent_all and code == 0:
                message = "the tar stream was cut short"
            for change in changes:
                change.fail(AgentError(ErrorCode.IO, message, change.path))
            return
        blamed = found
    symlinks = {note[1:] for note in notes if note.startswith("S")}
    failed_modes = {note[1:] for note in notes if note.startswith("F")}
    for change in changes:
        if isinstance(change, ChmodRequest):
            if change.path in symlinks:
                message = "a symlink has no permissions of its own"
                change.fail(AgentError(ErrorCode.IS_SYMLINK, message, change.path))
            elif change.path in failed_modes:
                message = f"cannot set the permission bits: {errors or 'chmod failed'}"
                change.fail(AgentError(ErrorCode.IO, message, change.path))
            else:
                change.succeed(None)
        elif change.path in blamed:
            change.fail(AgentError(ErrorCode.IO, blamed[change.path], change.path))
        elif isinstance(change, WriteRequest):
            if change.error is not None:
                change.fail(change.error)
            else:
                change.succeed(change.digest)
        else:
            change.succeed(None)


def _blame_members(errors: str, names: set[str]) -> dict[str, str] | None:
    """GNU tar's complaints by member name; None unless every complaint names a member.

    GNU tar goes on after a member fails, so when each message names one of ours, the
    others were extracted. Anything else (a message about a folder tar made on the way, a
    quoted name) leaves the whole batch failed.
    """
    blamed: dict[str, str] = {}
    longest_first = sorted(names, key=len, reverse=True)
    for line in errors.splitlines():
        if not line.strip() or line == "tar: Exiting with failure status due to previous errors":
            continue
        if not line.startswith("tar: "):
            return None
        said = line.removeprefix("tar: ")
        name = next((n for n in longest_first if said.startswith(n + ": ")), None)
        if name is None:
            return None
        blamed.setdefault(name, said[len(name) + 2 :])
    return blamed or None


# --- The tar stream ---------------------------------------------------------------------------


class _Sender:
    """Collects bytes for the exec's input and writes them in large pieces."""

    def __init__(self, stream: ExecStream) -> None:
        assert stream.stdin is not None
        self._stdin = stream.stdin
        self._pending: list[bytes] = []
        self._size = 0

    async def add(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= SEND_SIZE:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            self._stdin.write(b"".join(self._pending))
            self._pending, self._size = [], 0
        await self._stdin.drain()


async def send_archive(stream: ExecStream, members: Sequence[Member]) -> bool:
    """Stream the members as one tar archive and end the input; False if tar stopped reading."""
    sender = _Sender(stream)
    now_ns = time.time_ns()
    try:
        for member in members:
            if isinstance(member, WriteRequest):
                await _send_file(sender, member)
            elif isinstance(member, MkdirRequest):
                await sender.add(_header(member.path, tarfile.DIRTYPE, member.mode, now_ns))
            elif isinstance(member, SymlinkRequest):
                header = _header(member.path, tarfile.SYMTYPE, 0o777, now_ns, member.link_target)
                await sender.add(header)
        await sender.add(END_OF_ARCHIVE)
        await sender.flush()
        await stream.close_stdin()
    except (ConnectionError, BrokenPipeError) as error:
        logger.debug("tar stopped reading its input: %s", error)
        return False
    return True


async def _send_file(sender: _Sender, member: WriteRequest) -> None:
    """Add one file to the archive. Problems with the local file are kept on ``member``."""
    inline = member.expected_size is not None and member.expected_size <= INLINE_READ_LIMIT
    try:
        handle, before, _ = (
            open_source(member.source)
            if inline
            else await asyncio.to_thread(open_source, member.source)
        )
    except FileNotFoundError:
        message = f"{member.source} vanished before it could be sent"
        member.error = AgentError(ErrorCode.CHANGED, message, member.path)
        return
    except OSError as error:
        member.error = error
        return
    try:
        await _send_content(sender, member, handle, before, inline)
    finally:
        handle.close()
    changed = await changed_since_opened(member.source, before, inline=inline)
    if member.error is None and changed:
        message = f"{member.source} changed while it was being sent"
        member.error = AgentError(ErrorCode.CHANGED, message, member.path)


async def _send_content(
    sender: _Sender, member: WriteRequest, handle: BinaryIO, before: os.stat_result, inline: bool
) -> None:
    size = before.st_size
    mode = stat.S_IMODE(before.st_mode) if member.mode is None else member.mode
    header = _header(member.path, tarfile.REGTYPE, mode, before.st_mtime_ns, size=size)
    digest = hashlib.sha256()
    # A file that grew past the limit since it was scanned is read in a worker thread after all.
    inline = inline and size <= INLINE_READ_LIMIT

    async def read(count: int) -> bytes:
        return handle.read(count) if inline else await asyncio.to_thread(handle.read, count)

    sent = 0
    if size <= INLINE_READ_LIMIT:
        # A small file is read before its header goes out: a read error then leaves nothing
        # half-sent.
        try:
            data = await read(size)
        except OSError as error:
            member.error = error
            return
        await sender.add(header)
        if data:
            digest.update(data)
            await sender.add(data)
            sent = len(data)
    else:
        await sender.add(header)
        while sent < size:
            try:
                chunk = await read(min(CHUNK_SIZE, size - sent))
            except OSError as error:
                member.error = error
                break
            if not chunk:
                break
            digest.update(chunk)
            await sender.add(chunk)
            sent += len(chunk)
    if sent < size:
        # The header promised `size` bytes: keep the archive whole, and say what happened.
        if member.error is None:
            message = f"{member.source} shrank while it was being sent"
            member.error = AgentError(ErrorCode.CHANGED, message, member.path)
        for offset in range(sent, size, CHUNK_SIZE):
            await sender.add(bytes(min(CHUNK_SIZE, size - offset)))
    await sender.add(bytes(-size % TAR_BLOCK))
    member.digest = digest.hexdigest()


def _header(
    path: str, kind: bytes, mode: int, mtime_ns: int, link_target: str = "", *, size: int = 0
) -> bytes:
    """A tar header (pax, UTF-8 names) for a member with a checked name and nanosecond time."""
    split_relative_path(path)  # no member is ever made from an unchecked name
    info = tarfile.TarInfo(path)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = link_target
    seconds, fraction = divmod(mtime_ns, NANOSECONDS)
    info.mtime = seconds
    if fraction and seconds >= 0:
        # GNU tar restores a pax mtime to the nanosecond; plain tar headers hold seconds.
        info.pax_headers = {"mtime": f"{seconds}.{fraction:09d}"}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")
