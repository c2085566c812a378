"""Local files read for sending to the agent, and what the agent reports back about them."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncGenerator, Iterator, Sequence
from pathlib import Path

import msgspec

from podlink.agent.wire import ErrorCode

CHUNK_SIZE = 1024 * 1024


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
