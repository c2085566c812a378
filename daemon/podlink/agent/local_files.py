"""Local files read for sending to the agent, and what the agent reports back about them."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncGenerator, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec

from podlink.agent.wire import ErrorCode

CHUNK_SIZE = 1024 * 1024
# Files up to this size are read on the event loop: a few kilobytes from the page cache cost
# less than two hops to a worker thread, and that hop is most of a saved file's latency.
INLINE_READ_LIMIT = 64 * 1024


async def slices(data: bytes) -> AsyncGenerator[bytes | memoryview]:
    for piece in slices_of(data):
        yield piece


def slices_of(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    for at in range(0, len(view), CHUNK_SIZE):
        yield view[at : at + CHUNK_SIZE]


class LoadedFile(msgspec.Struct, frozen=True):
    """A local file as read for sending: what the target will hold."""

    path: str
    mode: int
    data: bytes
    mtime_ns: int
    inode: int


class SentFile(msgspec.Struct, frozen=True):
    """A file as the target now holds it."""

    path: str
    mode: int
    size: int
    mtime_ns: int


class WriteManyResult(msgspec.Struct, frozen=True):
    written: list[SentFile]
    failed: list[tuple[str, str, str]]  # path, error code, message
    vanished: list[str]


def load_files(
    files: Sequence[tuple[str, Path]],
) -> tuple[list[LoadedFile], list[str], list[tuple[str, str, str]]]:
    loaded: list[LoadedFile] = []
    vanished: list[str] = []
    unreadable: list[tuple[str, str, str]] = []
    for path, source in files:
        try:
            with source.open("rb") as handle:
                found = os.fstat(handle.fileno())
                if not stat.S_ISREG(found.st_mode):
                    vanished.append(path)  # replaced by something else: its event follows
                    continue
                data = handle.read()
        except FileNotFoundError:
            vanished.append(path)
            continue
        except OSError as error:
            unreadable.append((path, ErrorCode.IO, f"cannot read: {error.strerror}"))
            continue
        mode = stat.S_IMODE(found.st_mode)
        loaded.append(LoadedFile(path, mode, data, found.st_mtime_ns, found.st_ino))
    return loaded, vanished, unreadable


def stat_or_none(source: Path) -> os.stat_result | None:
    try:
        return source.stat()
    except FileNotFoundError:
        return None


def version_of(found: os.stat_result) -> tuple[int, int, int]:
    """What tells one version of a file from the next: its size, mtime and inode."""
    return found.st_size, found.st_mtime_ns, found.st_ino


def open_source(source: Path, first: int = 0) -> tuple[BinaryIO, os.stat_result, bytes]:
    """A local file opened for sending: the handle, its metadata, and up to ``first`` bytes
    read from it (all of a small file)."""
    handle = source.open("rb")
    try:
        before = os.fstat(handle.fileno())
        head = handle.read(min(first, before.st_size)) if first else b""
    except BaseException:
        handle.close()
        raise
    return handle, before, head


async def changed_since_opened(source: Path, before: os.stat_result, *, inline: bool) -> bool:
    """Whether ``source`` is gone, or another version than ``before``, once it was sent.
    ``inline``: a small file, whose stat is not worth a hop to a worker thread."""
    after = stat_or_none(source) if inline else await asyncio.to_thread(stat_or_none, source)
    return after is None or version_of(after) != version_of(before)
