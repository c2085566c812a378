"""READ: a file in the target streamed into a new local file, in bounded memory."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from podlink.agent import two_way, wire
from podlink.agent.client import Agent, AgentError
from podlink.targets.base import Target
from tests.integration.test_agent import request, run_agent_file
from tests.integration.two_way_agent.support import MiB, Reported, sh


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


async def test_a_large_file_streams_in_bounded_memory_on_both_sides(
    agent: Agent, target: Target, root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 48 * MiB
    await sh(target, f"head -c {size} /dev/urandom > big.bin && chmod 750 big.bin", cwd=root)
    in_target = (await agent.hash(root, ["big.bin"]))["big.bin"]
    destination = tmp_path / "big.copy"
    write_all = two_way._write_all

    def slow_disk(fd: int, data: bytes) -> None:
        time.sleep(0.01)  # the agent sends faster than this: back-pressure must hold it
        write_all(fd, data)

    monkeypatch.setattr(two_way, "_write_all", slow_disk)

    tracemalloc.start()
    try:
        result = await asyncio.wait_for(agent.read_file(root, "big.bin", destination), 120)
        _, daemon_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (result.size, result.mode, result.digest) == (size, 0o750, in_target)
    assert sha256_of_file(destination) == in_target
    assert stat.S_IMODE(destination.stat().st_mode) == 0o750
    assert daemon_peak < 16 * MiB, f"the daemon held {daemon_peak / MiB:.1f} MiB at once"
    status = await sh(target, f"cat /proc/{agent.hello.pid}/status")
    agent_peak = next(
        int(line.split()[1]) * 1024 for line in status.splitlines() if "VmHWM" in line
    )
    assert agent_peak < 40 * MiB, f"the agent's resident peak was {agent_peak / MiB:.1f} MiB"


async def test_an_empty_file_and_a_small_one_with_its_exact_metadata(
    agent: Agent, root: str, tmp_path: Path
) -> None:
    await agent.write_bytes(root, "empty", b"", mode=0o600)
    await agent.write_bytes(root, "sub/small.txt", b"hello", mode=0o4755, mtime_ns=1_234_567_890)

    empty = await agent.read_file(root, "empty", tmp_path / "empty")
    assert (empty.size, empty.mode, empty.digest) == (0, 0o600, hashlib.sha256().hexdigest())
    assert (tmp_path / "empty").read_bytes() == b""

    small = await agent.read_file(root, "sub/small.txt", tmp_path / "small")
    assert (small.size, small.mode, small.mtime_ns) == (5, 0o4755, 1_234_567_890)
    assert small.digest == hashlib.sha256(b"hello").hexdigest()
    assert (tmp_path / "small").read_bytes() == b"hello"
    # The setuid bit stays in the target: a local copy must not become a setuid program.
    assert stat.S_IMODE((tmp_path / "small").stat().st_mode) == 0o755


async def test_read_refuses_what_is_not_a_regular_file_inside_the_root(
    agent: Agent, target: Target, root: str, tmp_path: Path
) -> None:
    await agent.write_bytes(root, "file.txt", b"content")
    await agent.symlink(root, "link", "file.txt")
    await agent.mkdir(root, "folder")
    await agent.symlink(root, "folder-link", "folder")
    await agent.write_bytes(root, "folder/inner.txt", b"inner")
    await sh(target, "mkfifo pipe", cwd=root)
    refusals = {
        "link": "isSymlink",
        "folder": "isDirectory",
        "pipe": "invalid",
        "missing.txt": "notFound",
        "missing-folder/file.txt": "notFound",
        "folder-link/inner.txt": "escape",
        "../file.txt": "escape",
        "/etc/passwd": "escape",
    }
    destination = tmp_path / "copy"
    for path, code in refusals.items():
        with pytest.raises(AgentError) as refused:
            await agent.read_file(root, path, destination)
        assert refused.value.code == code, path
        assert not destination.exists(), path


async def test_an_existing_destination_is_left_alone(
    agent: Agent, root: str, tmp_path: Path
) -> None:
    await agent.write_bytes(root, "file.txt", b"remote")
    existing = tmp_path / "mine.txt"
    existing.write_bytes(b"mine")
    with pytest.raises(AgentError) as refused:
        await agent.read_file(root, "file.txt", existing)
    assert refused.value.code == "exists"
    assert existing.read_bytes() == b"mine"
    # The stream is still in step.
    assert (await agent.read_file(root, "file.txt", tmp_path / "new.txt")).size == 6


CHANGES_DURING_A_READ = {
    "appended": "echo more >> big.bin",
    "touched": "touch -d 2001-02-03 big.bin",
    "replaced by a rename": "echo other > other.bin && mv other.bin big.bin",
}


@pytest.mark.parametrize("change", CHANGES_DURING_A_READ)
async def test_a_file_that_changes_while_it_is_read_is_refused(
    agent: Agent,
    target: Target,
    root: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
) -> None:
    # Far more than every buffer on the way holds: the agent is still reading when the local
    # side, held up below, lets the stream move again.
    await sh(target, f"head -c {64 * MiB} /dev/zero > big.bin", cwd=root)
    loop = asyncio.get_running_loop()
    writing = asyncio.Event()
    release = threading.Event()
    write_all = two_way._write_all

    def held_write(fd: int, data: bytes) -> None:
        loop.call_soon_threadsafe(writing.set)
        release.wait(60)
        write_all(fd, data)

    monkeypatch.setattr(two_way, "_write_all", held_write)
    destination = tmp_path / "copy"
    reading = asyncio.create_task(agent.read_file(root, "big.bin", destination))
    try:
        await asyncio.wait_for(writing.wait(), 60)
        await sh(target, CHANGES_DURING_A_READ[change], cwd=root)
    finally:
        release.set()
    with pytest.raises(AgentError) as refused:
        await asyncio.wait_for(reading, 120)
    assert refused.value.code == "changed"
    assert refused.value.path == "big.bin"
    assert not destination.exists()
    # The stream is still in step.
    assert (await agent.hash(root, ["missing"])) == {"missing": None}


async def test_other_requests_and_changes_flow_around_a_streaming_read(
    agent: Agent, target: Target, root: str, tmp_path: Path
) -> None:
    await sh(target, f"head -c {24 * MiB} /dev/urandom > big.bin", cwd=root)
    in_target = (await agent.hash(root, ["big.bin"]))["big.bin"]
    reported = Reported()
    await agent.watch(root, reported)

    reading = asyncio.create_task(agent.read_file(root, "big.bin", tmp_path / "copy"))
    names = [f"w/{index}.txt" for index in range(40)]
    writes = [agent.write_bytes(root, name, name.encode()) for name in names]
    digests = await asyncio.wait_for(asyncio.gather(*writes), 120)
    await reported.until(lambda: all(reported.present(name) for name in names))
    result = await asyncio.wait_for(reading, 120)

    assert digests == [hashlib.sha256(name.encode()).hexdigest() for name in names]
    assert result.digest == in_target == sha256_of_file(tmp_path / "copy")


def test_on_the_wire_a_read_is_data_frames_of_at_most_1_mib_then_ok(tmp_path: Path) -> None:
    data = os.urandom(2 * MiB + 5)
    (tmp_path / "f").write_bytes(data)
    os.utime(tmp_path / "f", ns=(1, 1_600_000_000_000_000_123))
    exit_code, replies, _ = run_agent_file(
        request(wire.MessageType.READ, 3, {"root": str(tmp_path), "path": "f"})
        + request(wire.MessageType.READ, 4, {"root": str(tmp_path), "path": "missing"})
    )
    assert exit_code == 0
    assert [(kind, request_id, len(payload)) for kind, request_id, payload in replies[:3]] == [
        (wire.MessageType.DATA, 3, MiB),
        (wire.MessageType.DATA, 3, MiB),
        (wire.MessageType.DATA, 3, 5),
    ]
    assert b"".join(payload for _, _, payload in replies[:3]) == data
    assert replies[3][:2] == (wire.MessageType.OK, 3)
    assert json.loads(replies[3][2]) == {
        "size": len(data),
        "mode": stat.S_IMODE((tmp_path / "f").stat().st_mode),
        "mtime_ns": 1_600_000_000_000_000_123,
        "digest": hashlib.sha256(data).hexdigest(),
    }
    assert replies[4][:2] == (wire.MessageType.ERROR, 4)
    assert json.loads(replies[4][2])["code"] == "notFound"
