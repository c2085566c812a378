"""The agent's two-way parts in process: inotify events as the kernel lays them out, the digest
cache, preconditions and owners. Real watches and reads run in tests/integration."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from podlink.agent import agent, wire
from podlink.agent.two_way import decode_changes
from podlink.sync.core import names


def event(wd: int, mask: int, name: bytes = b"") -> bytes:
    """One inotify event as read(2) returns it: the name NUL-padded to a multiple of 4."""
    padded = name + b"\0" * (-len(name) % 4 + (4 if name else 0))
    return struct.pack("iIII", wd, mask, 0, len(padded)) + padded


class FakeInotify:
    """Watch descriptors handed out in order; nothing is watched for real."""

    def __init__(self) -> None:
        self.fd = -1
        self.watched: dict[str, int] = {}
        self.removed: list[int] = []

    def add(self, path: str) -> int:
        return self.watched.setdefault(path, len(self.watched) + 1)

    def remove(self, wd: int) -> None:
        self.removed.append(wd)

    def close(self) -> None:
        pass


def watcher_over(root: Path) -> tuple[agent.Watcher, io.BytesIO, FakeInotify]:
    output = io.BytesIO()
    channel = agent.Channel(io.BytesIO(), output)
    watcher = agent.Watcher(channel, 7, str(root), interval=0.5, max_watches=100)
    inotify = FakeInotify()
    watcher.inotify = inotify  # type: ignore[assignment]
    watcher.watch_tree("", report=False)
    return watcher, output, inotify


def changes_sent(output: io.BytesIO) -> list[dict[str, Any]]:
    sent, data = [], output.getvalue()
    while data:
        length, kind, request_id = wire.HEADER.unpack(data[: wire.HEADER_SIZE])
        assert (kind, request_id) == (wire.MessageType.CHANGES, 7)
        sent.append(json.loads(data[wire.HEADER_SIZE : wire.HEADER_SIZE + length]))
        data = data[wire.HEADER_SIZE + length :]
    return sent


def test_events_are_parsed_as_the_kernel_lays_them_out() -> None:
    buffer = (
        event(1, agent.IN_CREATE, b"a.txt")
        + event(-1, agent.IN_Q_OVERFLOW)
        + event(2, agent.IN_DELETE | agent.IN_ISDIR, b"folder-with-a-long-name")
    )
    assert list(agent.parse_events(buffer)) == [
        (1, agent.IN_CREATE, b"a.txt"),
        (-1, agent.IN_Q_OVERFLOW, b""),
        (2, agent.IN_DELETE | agent.IN_ISDIR, b"folder-with-a-long-name"),
    ]
    assert list(agent.parse_events(buffer[:10])) == []  # a torn header is never read


def test_an_overflow_is_reported_and_folders_made_meanwhile_get_watches(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    watcher, output, inotify = watcher_over(tmp_path)
    (tmp_path / "made-while-events-were-lost" / "deeper").mkdir(parents=True)

    watcher.take_events(event(1, agent.IN_CREATE, b"a.txt") + event(-1, agent.IN_Q_OVERFLOW))
    watcher.report()

    [sent] = changes_sent(output)
    assert sent["overflow"] is True
    assert [row[0] for row in sent["entries"]] == ["a.txt"]
    assert set(watcher.folders.values()) == {
        "",
        "made-while-events-were-lost",
        "made-while-events-were-lost/deeper",
    }
    assert str(tmp_path / "made-while-events-were-lost" / "deeper") in inotify.watched


def test_temp_files_and_names_that_are_not_utf8_are_skipped(tmp_path: Path) -> None:
    watcher, output, _ = watcher_over(tmp_path)
    (tmp_path / "kept.txt").write_bytes(b"")
    watcher.take_events(
        event(1, agent.IN_CREATE, names.TEMP_PREFIX.encode() + b"1234-kept.txt")
        + event(1, agent.IN_CREATE, b"bad-\xff-name")
        + event(1, agent.IN_MOVED_TO, b"kept.txt")
        + event(1, agent.IN_ATTRIB)  # about the root itself
    )
    watcher.report()
    [sent] = changes_sent(output)
    assert [row[0] for row in sent["entries"]] == ["kept.txt"]
    assert sent["gone"] == []
    assert sent["overflow"] is False


def test_a_folder_moved_away_loses_its_watches_and_is_gone(tmp_path: Path) -> None:
    (tmp_path / "old" / "sub").mkdir(parents=True)
    watcher, output, inotify = watcher_over(tmp_path)
    old, sub = (inotify.watched[str(tmp_path / name)] for name in ("old", "old/sub"))
    (tmp_path / "old").rename(tmp_path / "elsewhere")  # as if out of the root

    watcher.take_events(event(1, agent.IN_MOVED_FROM | agent.IN_ISDIR, b"old"))
    watcher.take_events(event(sub, agent.IN_CREATE, b"late"))  # its watch is dropped
    watcher.report()

    assert sorted(inotify.removed) == sorted([old, sub])
    assert set(watcher.folders.values()) == {""}
    assert changes_sent(output) == [{"entries": [], "gone": ["old"], "overflow": False}]


def test_losing_the_root_switches_to_polling(tmp_path: Path) -> None:
    watcher, _, _ = watcher_over(tmp_path)
    with pytest.raises(agent.UsePolling, match="removed or moved"):
        watcher.take_events(event(1, agent.IN_DELETE_SELF))


def test_a_malformed_change_report_is_an_overflow_not_a_crash() -> None:
    changes = decode_changes(b'{"entries": [["a", "?", 0, 0, 0, 0, null, null]], "gone": []}')
    assert changes.overflow
    assert changes.warning is not None and "does not fit the protocol" in changes.warning
    assert decode_changes(b"not json").overflow


# --- The digest cache ---------------------------------------------------------------------


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the files the agent reads to hash, with a cache of its own."""
    reads: list[int] = []
    real = agent.hash_content

    def counting(fd: int) -> str:
        reads.append(fd)
        return real(fd)

    monkeypatch.setattr(agent, "hash_content", counting)
    monkeypatch.setattr(agent, "DIGESTS", agent.DigestCache())
    return reads


def scan_digests(root: Path) -> dict[str, str]:
    output = io.BytesIO()
    agent.handle_scan(agent.Channel(io.BytesIO(), output), 1, {"root": str(root), "hash": True})
    length = wire.HEADER.unpack(output.getvalue()[: wire.HEADER_SIZE])[0]
    rows = json.loads(output.getvalue()[wire.HEADER_SIZE : wire.HEADER_SIZE + length])["entries"]
    return {row[0]: row[7] for row in rows if row[1] == "f"}


def test_a_rescan_reads_only_the_files_that_changed(tmp_path: Path, hashed: list[int]) -> None:
    for index in range(5):
        (tmp_path / f"{index}.txt").write_bytes(b"%d" % index)
    first = scan_digests(tmp_path)
    assert len(hashed) == 5
    assert scan_digests(tmp_path) == first
    assert len(hashed) == 5

    (tmp_path / "3.txt").write_bytes(b"three")
    second = scan_digests(tmp_path)
    assert len(hashed) == 6
    assert second["3.txt"] != first["3.txt"]
    hash_request = {"root": str(tmp_path), "paths": ["3.txt", "4.txt"]}
    assert agent.handle_hash(agent.Channel(io.BytesIO(), io.BytesIO()), 2, hash_request) == {
        "digests": {"3.txt": second["3.txt"], "4.txt": first["4.txt"]}
    }
    assert len(hashed) == 6


def test_content_changed_under_an_old_mtime_is_hashed_again(
    tmp_path: Path, hashed: list[int]
) -> None:
    # rsync's quick check (size and mtime) would miss this edit; the cache checks ctime too.
    file = tmp_path / "f.txt"
    file.write_bytes(b"before")
    first = scan_digests(tmp_path)["f.txt"]
    before = file.stat()
    with file.open("r+b") as handle:
        handle.write(b"AFTER!")
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = file.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert scan_digests(tmp_path)["f.txt"] != first
    assert len(hashed) == 2


def test_a_file_changing_while_it_is_hashed_is_not_cached(tmp_path: Path) -> None:
    cache = agent.DigestCache()
    file = tmp_path / "f"
    file.write_bytes(b"one")
    before = file.stat()
    file.write_bytes(b"three")
    cache.put(before, file.stat(), "digest of a mixture")
    assert cache.get(before) is None
    cache.put(file.stat(), file.stat(), "ab" * 32)
    assert cache.get(file.stat()) == "ab" * 32


# --- Preconditions and owners ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [[], ["f", 1], ["x", 1, 2], ["f", "1", 2], ["f", 1, True], "f", {"kind": "f"}]
)
def test_a_malformed_expectation_is_a_bad_request(value: object) -> None:
    with pytest.raises(agent.Failure) as refused:
        agent.Expected.parse(value, "p")
    assert refused.value.code == "badRequest"


def test_owners_are_resolved_by_name_or_number() -> None:
    assert agent.resolve_owner("root") == (0, 0)
    assert agent.resolve_owner("root:0") == (0, 0)
    assert agent.resolve_owner("1234:5678") == (1234, 5678)
    assert agent.resolve_owner("0") == (0, 0)  # a uid with an account: its primary group
    assert agent.resolve_owner("4242424") == (4242424, -1)  # none: the group stays as made
    for unknown in ("no-such-user", "root:no-such-group", "", "a:b:c", 5):
        with pytest.raises(agent.Failure) as refused:
            agent.resolve_owner(unknown)
        assert refused.value.code == "badRequest"
