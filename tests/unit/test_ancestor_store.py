"""The stored agreed state: what a damaged file turns into (nothing, never a crash)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from podlink.sync.ancestor import FORMAT_VERSION, AncestorStore
from podlink.sync.core.snapshot import Entry, Kind


def test_a_stored_state_reads_back_as_it_was_saved(tmp_path: Path) -> None:
    store = AncestorStore(tmp_path / "state")
    saved = {
        "src": Entry(Kind.DIRECTORY, mode=0o755),
        "src/app.py": Entry(Kind.FILE, mode=0o644, size=3, mtime_ns=5, digest="d", inode=9),
        "link": Entry(Kind.SYMLINK, link_target="src/app.py"),
    }
    store.save(saved, left=["old.txt"])
    loaded = store.load()
    assert loaded is not None
    assert loaded.entries == saved
    assert loaded.left == frozenset({"old.txt"})


def test_an_entry_of_an_unknown_kind_makes_the_state_unreadable_not_a_crash(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state"
    row = ("src/app.py", "x", 0o644, 3, 5, None, None, 9)
    path.write_bytes(msgspec.msgpack.encode([FORMAT_VERSION, [row], []]))
    assert AncestorStore(path).load() is None
