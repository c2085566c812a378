"""The agent over a real subprocess: the local target starts it exactly as a container would."""

from __future__ import annotations

import asyncio
import glob
import hashlib
import io
import json
import logging
import os
import platform
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podlink.agent import agent as agent_module
from podlink.agent import client as client_module
from podlink.agent import wire
from podlink.agent.client import BOOTSTRAP, PYTHON_OPTIONS, Agent, AgentError, AgentGone
from podlink.sync.core import names
from podlink.sync.core.snapshot import Kind
from podlink.targets.base import ExecStream
from podlink.targets.local import LocalTarget

MiB = 1024 * 1024
AGENT_FILE = Path(agent_module.__file__)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def tree(folder: Path) -> dict[str, bytes | str | None]:
    """Everything below ``folder`` without following symlinks: file bytes, link targets."""
    found: dict[str, bytes | str | None] = {}
    for top, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(top, name)
            relative = str(path.relative_to(folder))
            if path.is_symlink():
                found[relative] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[relative] = None
            else:
                found[relative] = path.read_bytes()
    return found


def temp_files(folder: Path) -> list[str]:
    return [path for path in tree(folder) if Path(path).name.startswith(names.TEMP_PREFIX)]


@pytest.fixture
async def agent(target: LocalTarget) -> AsyncIterator[Agent]:
    started = await Agent.start(target)
    yield started
    await started.close()


@pytest.fixture
async def root(agent: Agent, target: LocalTarget) -> Path:
    sync_root = Path(target.target_path("/app"))
    assert await agent.ensure_root(str(sync_root)) is True
    return sync_root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the target with a file that no request may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(b"keep me")
    return folder


async def start_bootstrap(target: LocalTarget) -> ExecStream:
    return await target.exec([target.python, *PYTHON_OPTIONS, "-c", BOOTSTRAP], stdin=True)


# --- The compiled agent kept in the target ---------------------------------------------------


def compiled_cache(tmp: Path) -> Path:
    return tmp / f"podlink-agent-{os.getuid()}"


def cache_file(tmp: Path) -> Path:
    tag = sys.implementation.cache_tag
    return compiled_cache(tmp) / f"{client_module.agent_source_key()}.{tag}"


def impostor_code(marker: Path) -> bytes:
    """Compiled code that is not the agent: it leaves ``marker`` and exits."""
    import marshal

    source = f"open({str(marker)!r}, 'w').close()\nimport sys\nsys.exit(3)\n"
    return marshal.dumps(compile(source, "impostor", "exec"))


async def test_the_compiled_agent_is_kept_for_the_next_start_in_a_private_folder(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    first = await Agent.start(target)
    await first.close()
    folder = compiled_cache(temp)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    cached = cache_file(temp).read_bytes()
    # The next start runs what is kept there: swap in other code and it is what runs.
    marker = tmp_path / "impostor-ran"
    cache_file(temp).write_bytes(impostor_code(marker))
    with pytest.raises(AgentGone):
        await Agent.start(target)
    assert marker.exists()
    cache_file(temp).write_bytes(cached)
    again = await Agent.start(target)
    assert again.hello.protocol == wire.PROTOCOL_VERSION
    await again.close()


@pytest.mark.parametrize("mode", [0o755, 0o777, 0o701])
async def test_a_cache_folder_others_could_write_or_read_is_never_used(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    temp = tmp_path / "tmp"
    compiled_cache(temp).mkdir(parents=True)
    marker = tmp_path / "impostor-ran"
    cache_file(temp).write_bytes(impostor_code(marker))
    compiled_cache(temp).chmod(mode)
    monkeypatch.setenv("TMPDIR", str(temp))
    started = await Agent.start(target)
    assert started.hello.protocol == wire.PROTOCOL_VERSION
    await started.close()
    assert not marker.exists()


async def test_a_symlinked_cache_folder_is_never_used(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    marker = tmp_path / "impostor-ran"
    (elsewhere / cache_file(tmp_path / "tmp").name).write_bytes(impostor_code(marker))
    (tmp_path / "tmp").mkdir()
    compiled_cache(tmp_path / "tmp").symlink_to(elsewhere)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    started = await Agent.start(target)
    await started.close()
    assert not marker.exists()


@pytest.mark.parametrize("garbage", [b"", b"not marshal data", b"\xe9\x00\x00\x00\x00"])
async def test_a_damaged_cached_agent_is_compiled_again_and_replaced(
    target: LocalTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, garbage: bytes
) -> None:
    temp = tmp_path / "tmp"
    compiled_cache(temp).mkdir(parents=True, mode=0o700)
    compiled_cache(temp).chmod(0o700)
    cache_file(temp).write_bytes(garbage)
    monkeypatch.setenv("TMPDIR", str(temp))
    started = await Agent.start(target)
    assert started.hello.protocol == wire.PROTOCOL_VERSION
    await started.close()
    assert cache_file(temp).read_bytes() not in (garbage, b"")


# --- Start, hello and lifecycle -------------------------------------------------------------


async def test_hello_describes_the_agent_process(agent: Agent) -> None:
    hello = agent.hello
    assert hello.version == wire.AGENT_VERSION
    assert hello.protocol == wire.PROTOCOL_VERSION
    assert hello.python == platform.python_version()
    assert hello.platform == sys.platform
    assert hello.uid == os.getuid()
    assert hello.pid != os.getpid()
    assert b"podlink-agent" in Path(f"/proc/{hello.pid}/cmdline").read_bytes()
    assert agent.alive


async def test_ensure_root_says_whether_it_made_the_folder(
    agent: Agent, target: LocalTarget
) -> None:
    deep = target.root / "srv" / "deep" / "app"
    assert await agent.ensure_root(str(deep)) is True
    assert deep.is_dir()
    assert await agent.ensure_root(str(deep)) is False
    (target.root / "file").write_bytes(b"")
    with pytest.raises(AgentError) as refused:
        await agent.ensure_root(str(target.root / "file"))
    assert refused.value.code == "notDirectory"


async def test_the_agent_exits_when_its_input_ends(target: LocalTarget) -> None:
    stream = await start_bootstrap(target)
    agent = await Agent.over(stream)
    try:
        await stream.close_stdin()
        assert await asyncio.wait_for(stream.wait(), 10) == 0
        with pytest.raises(AgentGone):
            await asyncio.wait_for(agent.ensure_root(str(target.root / "x")), 5)
        assert not agent.alive
    finally:
        await agent.close()


async def test_sigterm_stops_the_agent_with_exit_code_0(target: LocalTarget) -> None:
    stream = await start_bootstrap(target)
    agent = await Agent.over(stream)
    try:
        assert await stream.terminate(grace_seconds=10) == 0
        with pytest.raises(AgentGone):
            await asyncio.wait_for(agent.scan(str(target.root)), 5)
    finally:
        await agent.close()


async def test_a_killed_agent_fails_pending_calls_quickly(agent: Agent, root: Path) -> None:
    pid = agent.hello.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        calls: list[asyncio.Task[object]] = [
            asyncio.create_task(agent.write_bytes(str(root), f"f{index}", b"x" * 1000))
            for index in range(20)
        ]
        calls.append(asyncio.create_task(agent.scan(str(root))))
        answered, _ = await asyncio.wait(calls, timeout=0.3)
        assert not answered  # a stopped agent cannot have answered: these are in flight
    finally:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    answered, unanswered = await asyncio.wait(calls, timeout=10)
    assert not unanswered
    assert time.monotonic() - killed_at < 5
    for call in answered:
        error = call.exception()
        assert isinstance(error, AgentGone)
        assert error.code == "gone"
        assert "exit code -9" in str(error)
    assert not agent.alive
    with pytest.raises(AgentGone):
        await asyncio.wait_for(agent.mkdir(str(root), "later"), 1)


async def test_close_finishes_calls_already_made_and_is_idempotent(
    agent: Agent, root: Path
) -> None:
    writes = [
        asyncio.create_task(agent.write_bytes(str(root), f"n{index}.txt", b"%d" % index))
        for index in range(100)
    ]
    await asyncio.gather(agent.close(), agent.close())
    digests = await asyncio.gather(*writes)
    assert digests == [sha256(b"%d" % index) for index in range(100)]
    assert (root / "n99.txt").read_bytes() == b"99"
    assert not agent.alive
    with pytest.raises(AgentGone, match="closed"):
        await agent.write_bytes(str(root), "late.txt", b"")
    await agent.close()


class TargetWithPython(LocalTarget):
    def __init__(self, root: Path, python: str) -> None:
        super().__init__(root)
        self._python = python

    @property
    def python(self) -> str:
        return self._python


async def test_start_says_why_the_agent_could_not_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="podlink.agent")
    no_python = tmp_path / "python3"
    no_python.write_text('#!/bin/sh\necho "python3: not installed in this image" >&2\nexit 127\n')
    no_python.chmod(0o755)
    target = TargetWithPython(tmp_path / "target", str(no_python))
    await target.connect()
    try:
        with pytest.raises(AgentGone) as gone:
            await asyncio.wait_for(Agent.start(target), 20)
        assert "python3: not installed in this image" in str(gone.value)
        assert "exit code 127" in str(gone.value)
        assert "python3: not installed in this image" in caplog.text  # stderr is logged
    finally:
        await target.close()


async def test_start_without_any_interpreter_raises_agent_gone(tmp_path: Path) -> None:
    target = TargetWithPython(tmp_path / "target", str(tmp_path / "no-such-python"))
    await target.connect()
    try:
        with pytest.raises(AgentGone, match="cannot start the agent"):
            await Agent.start(target)
    finally:
        await target.close()


def find_python(version: str) -> str | None:
    """An interpreter of exactly ``version`` ("3.8") on this machine, if there is one."""
    pattern = os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")
    candidates = [shutil.which(f"python{version}"), *sorted(glob.glob(pattern))]
    report = "import sys; print('%d.%d' % sys.version_info[:2])"
    for candidate in filter(None, candidates):
        try:
            ran = subprocess.run([candidate, "-c", report], capture_output=True, timeout=20)
        except OSError:
            continue
        if ran.returncode == 0 and ran.stdout.decode().strip() == version:
            return candidate
    return None


async def test_the_agent_runs_on_the_oldest_supported_python(tmp_path: Path) -> None:
    python = find_python("3.8")
    if python is None:
        pytest.skip("no Python 3.8 on this machine")
    target = TargetWithPython(tmp_path / "target", python)
    await target.connect()
    agent = await Agent.start(target)
    try:
        assert agent.hello.python.startswith("3.8.")
        root = str(target.root / "app")
        assert await agent.ensure_root(root)
        data = os.urandom(3 * MiB)
        assert await agent.write_bytes(root, "src/data.bin", data, mode=0o755) == sha256(data)
        await agent.symlink(root, "src/link", "data.bin")
        await agent.mkdir(root, "private", 0o700)
        await agent.chmod(root, "src/data.bin", 0o600)
        await agent.rename(root, "src/data.bin", "moved/data.bin")
        scanned = await agent.scan(root, hash=True)
        assert {path: entry.kind for path, entry in scanned.entries.items()} == {
            "src": Kind.DIRECTORY,
            "src/link": Kind.SYMLINK,
            "private": Kind.DIRECTORY,
            "moved": Kind.DIRECTORY,
            "moved/data.bin": Kind.FILE,
        }
        assert scanned.entries["moved/data.bin"].digest == sha256(data)
        assert scanned.entries["moved/data.bin"].mode == 0o600
        with pytest.raises(AgentError) as refused:
            await agent.write_bytes(root, "src/link/../../x", b"")
        assert refused.value.code == "escape"
        assert await agent.delete(root, "moved", recursive=True)
    finally:
        await agent.close()
        await target.close()


@pytest.mark.parametrize("version", ["3.7", "3.6"])
async def test_an_older_python_is_refused_with_a_clear_message(
    tmp_path: Path, version: str
) -> None:
    python = find_python(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    target = TargetWithPython(tmp_path / "target", python)
    await target.connect()
    try:
        with pytest.raises(
            AgentGone, match=f"needs Python 3.8 or newer in the target, not {version}"
        ):
            await Agent.start(target)
    finally:
        await target.close()


# --- Writing ----------------------------------------------------------------------------------


async def test_all_byte_values_round_trip(agent: Agent, root: Path) -> None:
    data = bytes(range(256)) * 257 + b"\r\n\x00"
    digest = await agent.write_bytes(str(root), "bin/all-bytes.bin", data)
    assert digest == sha256(data)
    assert (root / "bin" / "all-bytes.bin").read_bytes() == data
    assert await agent.hash(str(root), ["bin/all-bytes.bin"]) == {"bin/all-bytes.bin": digest}
    assert stat.S_IMODE((root / "bin" / "all-bytes.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "bin").stat().st_mode) == 0o755


async def test_an_empty_file_needs_no_data(agent: Agent, root: Path) -> None:
    assert await agent.write_bytes(str(root), "empty", b"") == sha256(b"")
    assert (root / "empty").read_bytes() == b""


async def test_a_50_mb_file_streams_through_write_file(
    agent: Agent, root: Path, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    with source.open("wb") as handle:
        for _ in range(50):
            handle.write(os.urandom(MiB))
    source.chmod(0o640)
    digest = await agent.write_file(str(root), "data/big.bin", source)
    written = root / "data" / "big.bin"
    assert digest == sha256_of_file(source) == sha256_of_file(written)
    assert written.stat().st_size == 50 * MiB
    assert stat.S_IMODE(written.stat().st_mode) == 0o640


async def test_the_exec_bit_is_preserved(agent: Agent, root: Path, tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    await agent.write_file(str(root), "bin/run.sh", script)
    copied = root / "bin" / "run.sh"
    assert stat.S_IMODE(copied.stat().st_mode) == 0o755
    ran = await asyncio.create_subprocess_exec(str(copied), stdout=asyncio.subprocess.PIPE)
    output, _ = await asyncio.wait_for(ran.communicate(), 10)
    assert output == b"ran\n"
    assert ran.returncode == 0
    await agent.chmod(str(root), "bin/run.sh", 0o644)
    assert stat.S_IMODE(copied.stat().st_mode) == 0o644
    await agent.write_bytes(str(root), "bin/tool", b"#!/bin/sh\n", mode=0o4750)
    assert stat.S_IMODE((root / "bin" / "tool").stat().st_mode) == 0o4750


async def test_writing_replaces_a_symlink_not_its_target(
    agent: Agent, root: Path, outside: Path
) -> None:
    (root / "link").symlink_to(outside / "secret.txt")
    await agent.write_bytes(str(root), "link", b"new content")
    assert not (root / "link").is_symlink()
    assert (root / "link").read_bytes() == b"new content"
    assert (outside / "secret.txt").read_bytes() == b"keep me"


async def test_a_folder_in_the_way_fails_the_write_and_the_stream_stays_in_step(
    agent: Agent, root: Path
) -> None:
    await agent.mkdir(str(root), "taken")
    with pytest.raises(AgentError) as refused:
        await agent.write_bytes(str(root), "taken", os.urandom(3 * MiB))
    assert refused.value.code == "isDirectory"
    assert refused.value.path == "taken"
    assert await agent.write_bytes(str(root), "after.txt", b"ok") == sha256(b"ok")
    assert (root / "taken").is_dir()
    assert temp_files(root) == []


async def test_a_write_that_fails_midway_leaves_the_old_file_and_no_trace(
    agent: Agent, root: Path
) -> None:
    await agent.write_bytes(str(root), "big.bin", b"old")
    # Files over 1.5 MiB now fail to grow, so the second 1 MiB chunk cannot be written.
    previous = resource.prlimit(agent.hello.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(agent.hello.pid, resource.RLIMIT_FSIZE, (3 * MiB // 2, previous[1]))
    try:
        with pytest.raises(AgentError) as failed:
            await agent.write_bytes(str(root), "big.bin", os.urandom(4 * MiB))
        assert failed.value.code == "io"
        assert failed.value.path == "big.bin"
        assert (root / "big.bin").read_bytes() == b"old"
        assert temp_files(root) == []
        assert await agent.write_bytes(str(root), "small.txt", b"fine") == sha256(b"fine")
    finally:
        resource.prlimit(agent.hello.pid, resource.RLIMIT_FSIZE, previous)


async def test_write_file_reports_a_source_that_grew_while_it_was_sent(
    agent: Agent, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "growing.bin"
    original = os.urandom(3 * MiB)
    source.write_bytes(original)
    read_chunks = client_module._read_chunks

    async def grow_after_first_chunk(handle, first, size):  # type: ignore[no-untyped-def]
        async for chunk in read_chunks(handle, first, size):
            yield chunk
            with source.open("ab") as appending:
                appending.write(b"appended")

    monkeypatch.setattr(client_module, "_read_chunks", grow_after_first_chunk)
    with pytest.raises(AgentError) as changed:
        await agent.write_file(str(root), "growing.bin", source)
    assert changed.value.code == "changed"
    assert str(source) in str(changed.value)
    # The agent wrote the size announced up front; the caller retries for the rest.
    assert (root / "growing.bin").read_bytes() == original


async def test_write_file_cancels_when_the_source_shrinks(
    agent: Agent, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "shrinking.bin"
    source.write_bytes(os.urandom(3 * MiB))
    read_chunks = client_module._read_chunks

    async def truncate_after_first_chunk(handle, first, size):  # type: ignore[no-untyped-def]
        async for chunk in read_chunks(handle, first, size):
            yield chunk
            source.write_bytes(b"")

    monkeypatch.setattr(client_module, "_read_chunks", truncate_after_first_chunk)
    with pytest.raises(AgentError) as changed:
        await agent.write_file(str(root), "shrinking.bin", source)
    assert changed.value.code == "changed"
    assert not (root / "shrinking.bin").exists()
    assert temp_files(root) == []
    assert await agent.write_bytes(str(root), "next.txt", b"in step") == sha256(b"in step")


async def test_write_file_of_a_vanished_source_is_a_change(
    agent: Agent, root: Path, tmp_path: Path
) -> None:
    with pytest.raises(AgentError) as changed:
        await agent.write_file(str(root), "gone.txt", tmp_path / "never-existed.txt")
    assert changed.value.code == "changed"
    assert not (root / "gone.txt").exists()


async def test_a_write_cancelled_midway_is_discarded_and_the_stream_stays_in_step(
    agent: Agent, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(20 * MiB))
    first_chunk_sent = asyncio.Event()
    read_chunks = client_module._read_chunks

    async def pause_after_first_chunk(handle, first, size):  # type: ignore[no-untyped-def]
        async for chunk in read_chunks(handle, first, size):
            yield chunk
            first_chunk_sent.set()
            await asyncio.Event().wait()  # until cancelled

    monkeypatch.setattr(client_module, "_read_chunks", pause_after_first_chunk)
    writing = asyncio.create_task(agent.write_file(str(root), "big.bin", source))
    await asyncio.wait_for(first_chunk_sent.wait(), 10)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert await agent.write_bytes(str(root), "after.txt", b"ok") == sha256(b"ok")
    assert not (root / "big.bin").exists()
    assert temp_files(root) == []
    assert agent.alive


async def test_readers_never_see_a_partial_overwrite(agent: Agent, root: Path) -> None:
    versions = {"old": b"\xaa" * (20 * MiB), "new": b"\x55" * (20 * MiB + 4096)}
    path = root / "big.bin"
    await agent.write_bytes(str(root), "big.bin", versions["old"])
    stop = threading.Event()
    seen = threading.Condition()
    latest: list[str] = []
    violations: list[str] = []

    def read_until_stopped() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                violations.append("the file was missing")
                continue
            version = next((name for name, content in versions.items() if data == content), None)
            if version is None:
                violations.append(f"{len(data)} bytes that are neither version")
                continue
            with seen:
                latest.append(version)
                seen.notify_all()

    def reader_saw(version: str) -> bool:
        with seen:
            return seen.wait_for(lambda: bool(latest) and latest[-1] == version, timeout=30)

    reader = threading.Thread(target=read_until_stopped, daemon=True)
    reader.start()
    try:
        for round_number in range(6):
            version = "new" if round_number % 2 == 0 else "old"
            await agent.write_bytes(str(root), "big.bin", versions[version])
            assert await asyncio.to_thread(reader_saw, version)
    finally:
        stop.set()
        await asyncio.to_thread(reader.join, 30)
    assert violations == []
    assert {"old", "new"} <= set(latest)
    assert temp_files(root) == []


async def test_500_concurrent_writes_are_pipelined_over_one_stream(
    agent: Agent, root: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * MiB + 17))
    contents = {
        f"many/{index % 7}/file-{index}.txt": b"%d\n" % index * index for index in range(500)
    }
    writes = [agent.write_bytes(str(root), path, data) for path, data in contents.items()]
    # A multi-frame write in the middle: its frames must not interleave with the others.
    big_write = agent.write_file(str(root), "big.bin", big)
    digests = await asyncio.wait_for(asyncio.gather(big_write, *writes), 60)
    assert digests[0] == sha256_of_file(big) == sha256_of_file(root / "big.bin")
    assert digests[1:] == [sha256(data) for data in contents.values()]
    for path, data in contents.items():
        assert (root / path).read_bytes() == data


# --- Scanning and hashing ------------------------------------------------------------------


async def test_scan_reports_kinds_modes_links_and_digests(agent: Agent, root: Path) -> None:
    app = b"print('hello')\n"
    await agent.write_bytes(str(root), "src/app.py", app)
    await agent.write_bytes(str(root), "bin/run", b"#!/bin/sh\n", mode=0o755)
    await agent.mkdir(str(root), "private", 0o700)
    await agent.mkdir(str(root), "empty")
    await agent.symlink(str(root), "src/link.py", "app.py")
    (root / "absolute-link").symlink_to("/etc/hostname")  # made in the target, reported as is
    (root / "src" / f"{names.TEMP_PREFIX}1234-app.py").write_bytes(b"half written")

    scanned = await agent.scan(str(root), hash=True)
    assert not scanned.missing
    assert scanned.problems == []
    entries = scanned.entries
    assert set(entries) == {
        "src",
        "src/app.py",
        "src/link.py",
        "bin",
        "bin/run",
        "private",
        "empty",
        "absolute-link",
    }
    app_entry = entries["src/app.py"]
    assert (app_entry.kind, app_entry.mode, app_entry.size) == (Kind.FILE, 0o644, len(app))
    assert app_entry.digest == sha256(app)
    on_disk = (root / "src" / "app.py").lstat()
    assert (app_entry.inode, app_entry.mtime_ns) == (on_disk.st_ino, on_disk.st_mtime_ns)
    assert entries["bin/run"].mode == 0o755
    assert (entries["private"].kind, entries["private"].mode) == (Kind.DIRECTORY, 0o700)
    assert entries["private"].digest is None
    link = entries["src/link.py"]
    assert (link.kind, link.link_target, link.digest) == (Kind.SYMLINK, "app.py", None)
    assert entries["absolute-link"].link_target == "/etc/hostname"

    without_digests = await agent.scan(str(root))
    assert set(without_digests.entries) == set(entries)
    assert all(entry.digest is None for entry in without_digests.entries.values())


async def test_scan_of_a_missing_root_or_a_file(agent: Agent, root: Path) -> None:
    missing = await agent.scan(str(root / "not-there"))
    assert (missing.missing, missing.entries, missing.problems) == (True, {}, [])
    (root / "file").write_bytes(b"")
    with pytest.raises(AgentError) as refused:
        await agent.scan(str(root / "file"))
    assert refused.value.code == "notDirectory"


async def test_scan_streams_a_large_tree_and_reports_what_it_cannot_sync(
    agent: Agent, root: Path
) -> None:
    for index in range(2500):
        folder = root / f"d{index % 50}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{index}.txt").write_bytes(b"%d" % index)
    os.mkfifo(root / "pipe")
    os.mkdir(bytes(root) + b"/bad-\xff-name")

    scanned = await agent.scan(str(root), hash=True)
    files = {path for path, entry in scanned.entries.items() if entry.kind is Kind.FILE}
    assert len(files) == 2500
    assert len(scanned.entries) == 2550
    assert scanned.entries["d7/f1257.txt"].digest == sha256(b"1257")
    problems = dict(scanned.problems)
    assert "not a regular file" in problems["pipe"]
    assert "UTF-8" in problems["bad-\ufffd-name"]


def test_unreadable_folders_and_files_become_problems_and_the_scan_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, which reads everything: make two names unreadable by hand.
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "hidden.txt").write_bytes(b"")
    (tmp_path / "secret.bin").write_bytes(b"s")
    (tmp_path / "open.txt").write_bytes(b"o")
    real_open = os.open

    def open_refusing_locked_names(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if path in ("locked", "secret.bin"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_refusing_locked_names)
    output = io.BytesIO()
    channel = agent_module.Channel(io.BytesIO(), output)
    result = agent_module.handle_scan(channel, 1, {"root": str(tmp_path), "hash": True})
    monkeypatch.undo()
    rows = [
        row
        for _, _, payload in parse_frames(output.getvalue())
        for row in json.loads(payload)["entries"]
    ]
    by_path = {row[0]: row for row in rows}
    assert set(by_path) == {"locked", "secret.bin", "open.txt"}
    assert by_path["open.txt"][7] == sha256(b"o")
    assert by_path["secret.bin"][7] is None
    assert result["count"] == 3
    assert {problem["path"]: problem["message"] for problem in result["problems"]} == {
        "locked": "cannot open the folder: Permission denied",
        "secret.bin": "cannot read the file: Permission denied",
    }


async def test_hash_answers_every_path(agent: Agent, root: Path) -> None:
    await agent.write_bytes(str(root), "a.txt", b"a")
    await agent.mkdir(str(root), "folder")
    await agent.symlink(str(root), "link", "a.txt")
    (root / "unreadable-parent").write_bytes(b"")
    many = [f"missing/{index}" for index in range(2500)]
    special = ["a.txt", "folder", "link", "unreadable-parent/x"]
    digests = await agent.hash(str(root), special + many)
    assert digests["a.txt"] == sha256(b"a")
    assert digests["folder"] is None
    assert digests["link"] is None
    assert digests["unreadable-parent/x"] is None
    assert len(digests) == len(special) + len(many)
    assert await agent.hash(str(root), []) == {}


async def test_odd_names_round_trip_through_write_and_scan(agent: Agent, root: Path) -> None:
    names = [
        "with space.txt",
        "ünïcødé/fïlé.py",
        "new\nline.txt",
        "-rf",
        "back\\slash",
        "tab\there",
        "quote'\"",
        "日本語/ファイル.txt",
        "emoji 🎉.md",
        "trailing space ",
    ]
    for name in names:
        await agent.write_bytes(str(root), name, name.encode())
    scanned = await agent.scan(str(root), hash=True)
    for name in names:
        assert (root / name).read_bytes() == name.encode()
        assert scanned.entries[name].digest == sha256(name.encode())
    assert (await agent.hash(str(root), names)) == {name: sha256(name.encode()) for name in names}


# --- Confinement ----------------------------------------------------------------------------

ESCAPING_PATHS = ["../escape", "/etc/passwd", "a/../../escape", "a//b", "./a", "x\x00y", ""]


@pytest.mark.parametrize("path", ESCAPING_PATHS)
async def test_every_operation_refuses_a_path_that_could_escape(
    agent: Agent, root: Path, tmp_path: Path, path: str
) -> None:
    await agent.write_bytes(str(root), "inside.txt", b"inside")
    before = tree(tmp_path)
    operations = {
        "write": agent.write_bytes(str(root), path, b"escaped"),
        "mkdir": agent.mkdir(str(root), path),
        "delete": agent.delete(str(root), path),
        "delete recursively": agent.delete(str(root), path, recursive=True),
        "chmod": agent.chmod(str(root), path, 0o777),
        "symlink": agent.symlink(str(root), path, "inside.txt"),
        "rename from": agent.rename(str(root), path, "moved.txt"),
        "rename onto": agent.rename(str(root), "inside.txt", path),
        "hash": agent.hash(str(root), ["inside.txt", path]),
    }
    for operation, call in operations.items():
        with pytest.raises(AgentError) as refused:
            await call
        assert refused.value.code == "escape", operation
        assert "refused" in refused.value.message, operation
    assert tree(tmp_path) == before


async def test_a_symlinked_parent_folder_is_never_followed(
    agent: Agent, root: Path, outside: Path
) -> None:
    (root / "link").symlink_to(outside)
    (root / "a").mkdir()
    (root / "a" / "deeper").symlink_to(outside)
    await agent.write_bytes(str(root), "mine.txt", b"mine")
    outside_before = tree(outside)
    refused_calls = {
        "overwrite": agent.write_bytes(str(root), "link/secret.txt", b"overwritten"),
        "create": agent.write_bytes(str(root), "link/new.txt", b"planted"),
        "create deeper": agent.write_bytes(str(root), "link/sub/new.txt", b"planted"),
        "nested link": agent.write_bytes(str(root), "a/deeper/secret.txt", b"overwritten"),
        "mkdir": agent.mkdir(str(root), "link/sub"),
        "chmod": agent.chmod(str(root), "link/secret.txt", 0o777),
        "delete": agent.delete(str(root), "link/secret.txt"),
        "delete tree": agent.delete(str(root), "a/deeper/secret.txt", recursive=True),
        "rename out": agent.rename(str(root), "link/secret.txt", "stolen.txt"),
        "rename in": agent.rename(str(root), "mine.txt", "link/mine.txt"),
        "symlink": agent.symlink(str(root), "link/planted-link", "x"),
        "hash": agent.hash(str(root), ["link/secret.txt"]),
    }
    for operation, call in refused_calls.items():
        with pytest.raises(AgentError) as refused:
            await call
        assert refused.value.code == "escape", operation
        assert "symlink" in refused.value.message, operation
    assert tree(outside) == outside_before
    assert sorted(tree(root)) == ["a", "a/deeper", "link", "mine.txt"]


async def test_symlinks_must_point_inside_the_root(agent: Agent, root: Path) -> None:
    for path, link_target in [
        ("l", "../outside"),
        ("l", "/etc/passwd"),
        ("a/l", "../../x"),
        ("l", "a/../../x"),
    ]:
        with pytest.raises(AgentError) as refused:
            await agent.symlink(str(root), path, link_target)
        assert refused.value.code == "escape"
        assert not os.path.lexists(root / path)
    await agent.symlink(str(root), "a/l", "../b.txt")
    assert os.readlink(root / "a" / "l") == "../b.txt"
    await agent.symlink(str(root), "a/l", "c.txt")  # replaced in place
    assert os.readlink(root / "a" / "l") == "c.txt"
    await agent.mkdir(str(root), "a/folder")
    with pytest.raises(AgentError) as refused:
        await agent.symlink(str(root), "a/folder", "c.txt")
    assert refused.value.code == "isDirectory"
    assert temp_files(root) == []


async def test_deleting_a_symlink_to_an_outside_folder_removes_only_the_link(
    agent: Agent, root: Path, outside: Path
) -> None:
    outside_before = tree(outside)
    (root / "out").symlink_to(outside)
    assert await agent.delete(str(root), "out") is True
    (root / "out-again").symlink_to(outside)
    assert await agent.delete(str(root), "out-again", recursive=True) is True
    (root / "tree" / "inner").mkdir(parents=True)
    (root / "tree" / "inner" / "link").symlink_to(outside)
    (root / "tree" / "file.txt").write_bytes(b"x")
    assert await agent.delete(str(root), "tree", recursive=True) is True
    assert tree(root) == {}
    assert tree(outside) == outside_before


# --- Delete, mkdir, chmod, rename ----------------------------------------------------------


async def test_delete(agent: Agent, root: Path) -> None:
    assert await agent.delete(str(root), "missing") is False
    assert await agent.delete(str(root), "missing/parent/too") is False
    await agent.write_bytes(str(root), "full/a/b.txt", b"b")
    with pytest.raises(AgentError) as refused:
        await agent.delete(str(root), "full")
    assert refused.value.code == "notEmpty"
    assert (root / "full" / "a" / "b.txt").exists()
    assert await agent.delete(str(root), "full", recursive=True) is True
    assert not (root / "full").exists()
    await agent.mkdir(str(root), "empty")
    assert await agent.delete(str(root), "empty") is True
    await agent.write_bytes(str(root), "file.txt", b"")
    assert await agent.delete(str(root), "file.txt") is True
    assert tree(root) == {}


async def test_deleting_a_deep_tree_needs_no_recursion(agent: Agent, root: Path) -> None:
    depth = 1200  # beyond Python's default recursion limit
    deep = Path(root)
    for _ in range(depth):
        deep = deep / "d"
        deep.mkdir()
    (deep / "leaf.txt").write_bytes(b"leaf")
    scanned = await agent.scan(str(root))
    assert len(scanned.entries) == depth + 1
    assert scanned.entries["d/" * depth + "leaf.txt"].size == 4
    assert await agent.delete(str(root), "d", recursive=True) is True
    assert tree(root) == {}


async def test_mkdir(agent: Agent, root: Path) -> None:
    await agent.mkdir(str(root), "a/b/c", 0o750)
    assert stat.S_IMODE((root / "a" / "b" / "c").stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "a" / "b").stat().st_mode) == 0o755
    await agent.mkdir(str(root), "a/b/c", 0o700)
    assert stat.S_IMODE((root / "a" / "b" / "c").stat().st_mode) == 0o700
    await agent.write_bytes(str(root), "a/file", b"")
    with pytest.raises(AgentError) as refused:
        await agent.mkdir(str(root), "a/file")
    assert refused.value.code == "exists"
    with pytest.raises(AgentError) as refused:
        await agent.mkdir(str(root), "a/file/below")
    assert refused.value.code == "notDirectory"


async def test_chmod(agent: Agent, root: Path) -> None:
    await agent.write_bytes(str(root), "file", b"")
    await agent.chmod(str(root), "file", 0o600)
    assert stat.S_IMODE((root / "file").stat().st_mode) == 0o600
    await agent.symlink(str(root), "link", "file")
    with pytest.raises(AgentError) as refused:
        await agent.chmod(str(root), "link", 0o777)
    assert refused.value.code == "isSymlink"
    assert stat.S_IMODE((root / "file").stat().st_mode) == 0o600
    with pytest.raises(AgentError) as refused:
        await agent.chmod(str(root), "missing", 0o600)
    assert refused.value.code == "notFound"


def test_chmod_without_libc_support_for_no_follow_still_never_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "link").symlink_to("file")
    real_chmod = os.chmod

    def chmod_that_always_follows(path, mode, *, dir_fd=None, follow_symlinks=True):  # type: ignore[no-untyped-def]
        if not follow_symlinks:
            raise NotImplementedError("chmod: follow_symlinks unavailable on this platform")
        real_chmod(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "chmod", chmod_that_always_follows)
    folder_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        agent_module.chmod_no_follow(folder_fd, "file", 0o640, "file")
        assert stat.S_IMODE((tmp_path / "file").stat().st_mode) == 0o640
        with pytest.raises(agent_module.Failure) as refused:
            agent_module.chmod_no_follow(folder_fd, "link", 0o777, "link")
        assert refused.value.code == "isSymlink"
    finally:
        os.close(folder_fd)
    assert stat.S_IMODE((tmp_path / "file").stat().st_mode) == 0o640


async def test_rename(agent: Agent, root: Path) -> None:
    await agent.write_bytes(str(root), "a.txt", b"a")
    await agent.rename(str(root), "a.txt", "x/y/b.txt")
    assert (root / "x" / "y" / "b.txt").read_bytes() == b"a"
    assert not (root / "a.txt").exists()
    await agent.write_bytes(str(root), "c.txt", b"c")
    await agent.rename(str(root), "c.txt", "x/y/b.txt")
    assert (root / "x" / "y" / "b.txt").read_bytes() == b"c"
    with pytest.raises(AgentError) as refused:
        await agent.rename(str(root), "missing", "anywhere")
    assert refused.value.code == "notFound"


# --- The protocol, spoken directly ---------------------------------------------------------


def request(kind: int, request_id: int, payload: dict[str, object] | bytes) -> bytes:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return wire.HEADER.pack(len(body), kind, request_id) + body


def run_agent_file(frames: bytes) -> tuple[int, list[tuple[int, int, bytes]], str]:
    """Run ``python agent.py`` directly on ``frames``; its exit code, reply frames, stderr."""
    ran = subprocess.run(
        [sys.executable, str(AGENT_FILE)], input=frames, capture_output=True, timeout=30
    )
    return ran.returncode, parse_frames(ran.stdout), ran.stderr.decode()


def parse_frames(output: bytes) -> list[tuple[int, int, bytes]]:
    frames = []
    while output:
        length, kind, request_id = wire.HEADER.unpack(output[: wire.HEADER_SIZE])
        frames.append((kind, request_id, output[wire.HEADER_SIZE : wire.HEADER_SIZE + length]))
        output = output[wire.HEADER_SIZE + length :]
    return frames


def test_agent_py_runs_directly_and_answers_strictly_in_order(tmp_path: Path) -> None:
    frames = (
        request(wire.MessageType.HELLO, 1, {})
        + request(99, 2, b"anything at all")
        + request(wire.MessageType.HASH, 3, {"root": str(tmp_path), "paths": ["nothing"]})
        + request(wire.MessageType.MKDIR, 4, {"root": str(tmp_path), "path": "no-mode"})
    )
    exit_code, replies, _ = run_agent_file(frames)
    assert exit_code == 0
    assert [(kind, request_id) for kind, request_id, _ in replies] == [
        (wire.MessageType.OK, 1),
        (wire.MessageType.ERROR, 2),
        (wire.MessageType.OK, 3),
        (wire.MessageType.ERROR, 4),
    ]
    assert json.loads(replies[0][2])["version"] == wire.AGENT_VERSION
    assert json.loads(replies[1][2])["code"] == "unknownRequest"
    assert json.loads(replies[2][2]) == {"digests": {"nothing": None}}
    assert json.loads(replies[3][2])["code"] == "badRequest"


def test_an_oversized_frame_is_a_protocol_error(tmp_path: Path) -> None:
    frames = wire.HEADER.pack(wire.MAX_PAYLOAD + 1, wire.MessageType.HELLO, 7)
    exit_code, replies, stderr = run_agent_file(frames + b"x" * 100)
    assert exit_code == 2
    assert [(kind, request_id) for kind, request_id, _ in replies] == [(wire.MessageType.ERROR, 7)]
    assert json.loads(replies[0][2])["code"] == "protocol"
    assert "protocol error" in stderr


def test_an_empty_data_frame_cancels_a_write(tmp_path: Path) -> None:
    write = {"root": str(tmp_path), "path": "f.txt", "mode": 0o644, "size": 10}
    frames = (
        request(wire.MessageType.WRITE, 1, write)
        + request(wire.MessageType.DATA, 1, b"abc")
        + request(wire.MessageType.DATA, 1, b"")
        + request(wire.MessageType.HELLO, 2, {})
    )
    exit_code, replies, _ = run_agent_file(frames)
    assert exit_code == 0
    assert [(kind, request_id) for kind, request_id, _ in replies] == [
        (wire.MessageType.ERROR, 1),
        (wire.MessageType.OK, 2),
    ]
    assert json.loads(replies[0][2])["code"] == "cancelled"
    assert list(tmp_path.iterdir()) == []


def test_data_for_another_request_is_a_protocol_error(tmp_path: Path) -> None:
    write = {"root": str(tmp_path), "path": "f.txt", "mode": 0o644, "size": 10}
    frames = request(wire.MessageType.WRITE, 1, write) + request(wire.MessageType.DATA, 2, b"x")
    exit_code, replies, _ = run_agent_file(frames)
    assert exit_code == 2
    assert json.loads(replies[-1][2])["code"] == "protocol"
    assert list(tmp_path.iterdir()) == []
