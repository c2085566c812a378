"""The last state both sides agreed on, kept on disk so a daemon restart reconciles against it.

Without it a restarted daemon could only guess: treat everything as new (and miss deletions)
or mirror blindly (and overwrite edits made in the target meanwhile). The file is written
atomically (temporary file, then rename) a moment after changes settle and when the session
stops. A stale file is safe: paths both sides still agree on reconcile to nothing, and a
path changed on both sides since becomes a conflict with the target's version kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from podlink.sync.core.snapshot import KIND_OF_VALUE, Entry

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

# One row per path: compact to write for 100,000 files, and independent of Entry's layout.
Row = tuple[str, str, int, int, int, str | None, str | None, int]


class _Stored(msgspec.Struct, array_like=True):
    version: int
    rows: list[Row]
    # Paths the target held before the first sync that podlink leaves alone (files written
    # before this field existed have none).
    left: list[str] = msgspec.field(default_factory=list)


class Agreed(msgspec.Struct, frozen=True):
    """The stored state: the entries both sides agreed on, and the paths left in the target."""

    entries: dict[str, Entry]
    left: frozenset[str] = frozenset()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Stored)


def ancestor_file(state_dir: Path, *identity: str) -> Path:
    """Where one sync entry's ancestor lives: keyed by workspace, roots and target."""
    key = hashlib.sha256("\0".join(identity).encode("utf-8", "surrogateescape")).hexdigest()
    return state_dir / "ancestors" / f"{key[:32]}.msgpack"


class AncestorStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Agreed | None:
        """The stored ancestor; None when the sides never agreed or it cannot be read (logged).

        An empty dict is an agreement too: both sides were empty.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("cannot read the sync state %s: %s", self.path, error.strerror)
            return None
        try:
            stored = _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("ignoring an unreadable sync state %s: %s", self.path, error)
            return None
        if stored.version != FORMAT_VERSION:
            return None
        try:
            entries = {
                path: Entry(
                    kind=KIND_OF_VALUE[kind],
                    mode=mode,
                    size=size,
                    mtime_ns=mtime_ns,
                    digest=digest,
                    link_target=link_target,
                    inode=inode,
                )
                for path, kind, mode, size, mtime_ns, digest, link_target, inode in stored.rows
            }
        except KeyError as error:
            log.warning("ignoring a sync state %s with an unknown entry kind %s", self.path, error)
            return None
        return Agreed(entries, frozenset(stored.left))

    def save(self, snapshot: Mapping[str, Entry], left: Iterable[str] = ()) -> None:
        rows: list[Row] = [
            (
                path,
                entry.kind.value,
                entry.mode,
                entry.size,
                entry.mtime_ns,
                entry.digest,
                entry.link_target,
                entry.inode,
            )
            for path, entry in snapshot.items()
        ]
        data = _encoder.encode(_Stored(FORMAT_VERSION, rows, sorted(left)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, self.path)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
