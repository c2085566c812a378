"""Syncing into containers without Python: tar over sh, against a real Docker Engine.

``scripts/docker-env`` derives the images used here from the Python test image:
podlink-test-nopython (sh, tar, GNU find, coreutils; no python3) and podlink-test-bare
(sh only, neither python3 nor tar).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import pytest_asyncio

from podlink.agent.client import BOOTSTRAP, Agent, AgentError, AgentGone
from podlink.agent.tar_fallback import TarTransport
from podlink.agent.tar_scripts import SCAN_UNAVAILABLE
from podlink.agent.transport import FALLBACK_WARNING, NO_TRANSPORT_MESSAGE, start_transport
from podlink.config import DockerTargetConfig, load_config
from podlink.session import Session
from podlink.sync.core.snapshot import Kind
from podlink.sync.engine import SyncEngine
from podlink.sync.ignore import IgnoreRules
from podlink.targets.base import ExecStream, TargetUnavailable
from podlink.targets.docker.target import DockerTarget
from podlink.targets.local import LocalTarget
from tests.helpers import tree_listing
from tests.recording import RecordingListener
from tests.targets import TEST_LABEL, DockerProbe, docker_client

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"
NOPYTHON_IMAGE = "podlink-test-nopython:bookworm"
BARE_IMAGE = "podlink-test-bare:bookworm"
MiB = 1024 * 1024

pytestmark = pytest.mark.asyncio


def start_container(image: str) -> Any:
    """A container of one of the derived images; fails (or skips) like ``docker_client``."""
    client = docker_client()
    try:
        client.images.get(image)
    except Exception as error:
        message = f"{image} is missing ({error}): run scripts/docker-env, which derives it"
        if os.environ.get("PODLINK_SKIP_DOCKER") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return client.containers.run(
        image,
        ["sleep", "infinity"],
        name=f"podlink-test-{uuid.uuid4().hex[:8]}",
        detach=True,
        init=True,
        labels={TEST_LABEL: "1"},
    )


@pytest.fixture
def container() -> Iterator[Any]:
    created = start_container(NOPYTHON_IMAGE)
    yield created
    with contextlib.suppress(docker.errors.NotFound):  # a test may have removed it
        created.remove(force=True)


@pytest_asyncio.fixture
async def target(container: Any, tmp_path: Path) -> AsyncIterator[DockerTarget]:
    connected = DockerTarget(DockerTargetConfig(container=container.name), tmp_path)
    await connected.connect()
    yield connected
    await connected.close()


@pytest_asyncio.fixture
async def transport(target: DockerTarget) -> AsyncIterator[TarTransport]:
    started = await TarTransport.start(target)
    yield started
    await started.close()


def run_in(container: Any, script: str) -> str:
    code, output = container.exec_run(["sh", "-c", script])
    text = output.decode(errors="replace")
    assert code == 0, f"{script!r} failed in the container: {text}"
    return str(text)


def exists_in(container: Any, path: str) -> bool:
    code, _ = container.exec_run(["sh", "-c", 'test -e "$1" || test -L "$1"', "sh", path])
    return bool(code == 0)


def local_view(workspace: Path) -> dict[str, Any]:
    return {p: i for p, i in tree_listing(workspace).items() if not p.startswith(".podlink")}


def remote_view(container: Any, remote: str = "/app") -> dict[str, Any]:
    return DockerProbe(container).listing(remote)


def make_workspace(folder: Path) -> Path:
    """The example project plus what trips up simple copies: modes, links, odd names, sizes."""
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    (folder / "run.sh").write_text("#!/bin/sh\necho run\n")
    (folder / "run.sh").chmod(0o755)
    (folder / "secret.txt").write_text("only mine\n")
    (folder / "secret.txt").chmod(0o600)
    (folder / "link-to-greeting").symlink_to("app/greeting.py")
    nested = folder / "deep" / "er" / "still deeper"
    nested.mkdir(parents=True)
    (nested / "ünïcødé 文件.txt").write_text("grüße\n")
    (folder / "with space.txt").write_text("spaced out\n")
    (folder / "empty").write_bytes(b"")
    (folder / "big.bin").write_bytes(os.urandom(3 * MiB + 17))
    return folder


def write_config(folder: Path, container: Any) -> None:
    (folder / "podlink.yaml").write_text(
        f"version: 1\ntarget:\n  docker:\n    container: {container.name}\n"
        "sync:\n  - local: .\n    remote: /app\n"
    )


def engine_for(transport: TarTransport, workspace: Path, remote: str = "/app") -> SyncEngine:
    return SyncEngine(transport, workspace, remote, lambda: IgnoreRules.for_tree(workspace))


# --- Through a whole session ----------------------------------------------------------------


async def test_a_session_syncs_into_a_container_without_python(
    tmp_path: Path, container: Any
) -> None:
    workspace = make_workspace(tmp_path / "workspace")
    write_config(workspace, container)
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        assert remote_view(container) == local_view(workspace)

        greeting = workspace / "app" / "greeting.py"
        text = greeting.read_text()
        greeting.write_text(text.replace("Hello", "HELLO"))  # same size, new content
        assert len(greeting.read_text()) == len(text) and greeting.read_text() != text
        (workspace / "README.md").unlink()
        shutil.rmtree(workspace / "deep" / "er")
        (workspace / "run.sh").chmod(0o700)
        (workspace / "secret.txt").chmod(0o640)
        added = workspace / "new" / "folder" / "notes with space.md"
        added.parent.mkdir(parents=True)
        added.write_text("# new\n")
        (workspace / "tests" / "test_greeting.py").unlink()
        (workspace / "tests" / "test_greeting.py").symlink_to("../app/greeting.py")
        (workspace / "link-to-greeting").unlink()
        (workspace / "link-to-greeting").symlink_to("app/__init__.py")
        (workspace / "big.bin").write_bytes(os.urandom(2 * MiB))

        status = await session.flush(30)
        assert status.problems == ()
        assert remote_view(container) == local_view(workspace)
        assert not exists_in(container, "/app/README.md")
        assert not exists_in(container, "/app/deep/er")
    finally:
        await session.stop()
    warnings = [(source, text) for source, text in listener.logs if text == FALLBACK_WARNING]
    assert warnings == [("sync", FALLBACK_WARNING)]


async def test_a_container_with_neither_python_nor_tar_is_refused_clearly(
    tmp_path: Path,
) -> None:
    bare = start_container(BARE_IMAGE)
    try:
        target = DockerTarget(DockerTargetConfig(container=bare.name), tmp_path)
        await target.connect()
        warnings: list[str] = []
        try:
            with pytest.raises(TargetUnavailable) as raised:
                await start_transport(target, warnings.append)
        finally:
            await target.close()
        assert str(raised.value) == NO_TRANSPORT_MESSAGE
        assert warnings == []

        workspace = make_workspace(tmp_path / "workspace")
        write_config(workspace, bare)
        session = Session(load_config(workspace), RecordingListener())
        with pytest.raises(TargetUnavailable, match="neither python3 nor tar/sh"):
            await session.start()
        assert session.state == "stopped"
        assert session.error == NO_TRANSPORT_MESSAGE
    finally:
        bare.remove(force=True)


# --- Confinement ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/x", "a//x", "./x", ""])
async def test_path_escapes_are_refused_and_nothing_is_written(
    transport: TarTransport, container: Any, tmp_path: Path, path: str
) -> None:
    source = tmp_path / "source.txt"
    source.write_text("must not arrive\n")
    assert await transport.ensure_root("/app") is True
    with pytest.raises(AgentError) as raised:
        await transport.write_file("/app", path, source)
    assert raised.value.code == "escape"
    for call in (
        transport.mkdir("/app", path),
        transport.symlink("/app", path, "x"),
        transport.chmod("/app", path, 0o644),
        transport.delete("/app", path, recursive=True),
    ):
        with pytest.raises(AgentError) as raised:
            await call
        assert raised.value.code == "escape"
    assert run_in(container, "ls -A /app") == ""
    assert not exists_in(container, "/x")


async def test_symlinked_folders_in_the_target_are_never_followed(
    transport: TarTransport, container: Any, tmp_path: Path
) -> None:
    run_in(
        container,
        "mkdir -p /app /outside && touch /outside/kept && ln -s /outside /app/elsewhere",
    )
    source = tmp_path / "source.txt"
    source.write_text("inside only\n")
    results = await asyncio.gather(
        transport.write_file("/app", "elsewhere/planted", source),
        transport.mkdir("/app", "elsewhere/folder"),
        transport.symlink("/app", "elsewhere/link", "../x"),
        transport.write_file("/app", "fine.txt", source),
        return_exceptions=True,
    )
    assert [getattr(r, "code", None) for r in results] == ["escape", "escape", "escape", None]
    assert run_in(container, "cat /app/fine.txt") == "inside only\n"

    deleted = await asyncio.gather(
        transport.delete("/app", "elsewhere/kept", recursive=True),
        transport.delete("/app", "fine.txt", recursive=True),
        return_exceptions=True,
    )
    assert getattr(deleted[0], "code", None) == "escape" and deleted[1] is True
    with pytest.raises(AgentError) as raised:
        await transport.chmod("/app", "elsewhere", 0o700)
    assert raised.value.code == "isSymlink"
    with pytest.raises(AgentError) as raised:
        await transport.symlink("/app", "up", "../../outside")
    assert raised.value.code == "escape"
    assert run_in(container, "ls -A /outside; stat -c %a /outside") == "kept\n755\n"


# --- Batching and failures --------------------------------------------------------------------


class CountingTarget:
    """A target that counts the execs started through it."""

    def __init__(self, target: DockerTarget) -> None:
        self._target = target
        self.execs = 0
        self.python = target.python

    async def exec(self, argv: Sequence[str], **options: Any) -> ExecStream:
        self.execs += 1
        return await self._target.exec(argv, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


async def test_a_phase_of_the_plan_costs_one_exec_not_one_per_file(
    target: DockerTarget, container: Any, tmp_path: Path
) -> None:
    workspace = tmp_path / "many"
    for index in range(640):
        path = workspace / f"package{index % 4}" / f"module_{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {index}\n")
    counting = CountingTarget(target)
    transport = await TarTransport.start(counting)  # type: ignore[arg-type]
    try:
        engine = engine_for(transport, workspace)
        result = await engine.initial_sync()
        assert result.files_written == 640 and engine.problems == {}
        # ensure_root, scan, one exec for the 4 folders, and one per 64 files in flight.
        assert counting.execs <= 3 + 640 // 64 + 1
        assert remote_view(container) == local_view(workspace)

        # A new transport finds everything in place: times were kept to the nanosecond.
        again = engine_for(await TarTransport.start(target), workspace)
        assert (await again.initial_sync()).changed_anything is False
    finally:
        await transport.close()


async def test_a_member_tar_cannot_write_fails_alone(
    transport: TarTransport, container: Any, tmp_path: Path
) -> None:
    run_in(container, "mkdir -p /app/blocked/inner")
    source = tmp_path / "source.txt"
    source.write_text("content\n")
    results = await asyncio.gather(
        transport.write_file("/app", "first.txt", source),
        transport.write_file("/app", "blocked", source),
        transport.write_file("/app", "sub/second.txt", source),
        return_exceptions=True,
    )
    assert isinstance(results[1], AgentError) and results[1].code == "io"
    assert results[1].path == "blocked" and results[1].message
    digest = hashlib.sha256(b"content\n").hexdigest()
    assert results[0] == results[2] == digest
    assert run_in(container, "cat /app/first.txt /app/sub/second.txt") == "content\n" * 2


async def test_a_source_that_vanished_is_reported_as_changed(
    transport: TarTransport, tmp_path: Path
) -> None:
    await transport.ensure_root("/app")
    with pytest.raises(AgentError) as raised:
        await transport.write_file("/app", "gone.txt", tmp_path / "never-there.txt")
    assert raised.value.code == "changed"


async def test_deletes_report_what_existed_and_only_recursive_ones_empty_folders(
    transport: TarTransport, container: Any
) -> None:
    run_in(container, "mkdir -p /app/full/inner /app/empty && touch /app/file /app/full/x")
    existed = await asyncio.gather(
        transport.delete("/app", "file"),
        transport.delete("/app", "empty"),
        transport.delete("/app", "missing"),
    )
    assert existed == [True, True, False]
    with pytest.raises(AgentError):
        await transport.delete("/app", "full")
    assert exists_in(container, "/app/full/x")
    assert await transport.delete("/app", "full", recursive=True) is True
    assert run_in(container, "ls -A /app") == ""


# --- Listing the target -----------------------------------------------------------------------


async def test_every_listing_method_sees_the_same_tree(
    transport: TarTransport, target: DockerTarget, container: Any
) -> None:
    run_in(
        container,
        "mkdir -p '/app/a folder/ünï' && printf 12345 > '/app/a folder/ünï/file.txt'"
        " && chmod 0640 '/app/a folder/ünï/file.txt' && ln -s 'a folder' /app/link"
        " && mkfifo /app/pipe && touch /app/.podlink-tmp-1234-x",
    )
    found = await transport.scan("/app")
    assert set(found.entries) == {"a folder", "a folder/ünï", "a folder/ünï/file.txt", "link"}
    file = found.entries["a folder/ünï/file.txt"]
    assert (file.kind, file.mode, file.size, file.digest) == (Kind.FILE, 0o640, 5, None)
    assert found.entries["link"].link_target == "a folder"
    assert found.problems == [("pipe", "skipped: not a regular file, folder or symlink")]

    without_printf = dataclasses.replace(transport.tools, find_printf=False)
    with_stat = await TarTransport(target, without_printf).scan("/app")
    assert with_stat.problems == found.problems
    assert set(with_stat.entries) == set(found.entries)
    for path, entry in found.entries.items():
        other = with_stat.entries[path]
        assert (other.kind, other.mode, other.size, other.link_target) == (
            entry.kind,
            entry.mode,
            entry.size,
            entry.link_target,
        )
        assert other.mtime_ns == entry.mtime_ns // 10**9 * 10**9

    nothing = dataclasses.replace(without_printf, find_stat=False)
    blind = await TarTransport(target, nothing).scan("/app")
    assert (blind.entries, blind.problems, blind.missing) == ({}, [(".", SCAN_UNAVAILABLE)], False)


async def test_the_sync_root_missing_or_not_a_folder(
    transport: TarTransport, container: Any
) -> None:
    assert (await transport.scan("/nowhere")).missing is True
    assert await transport.ensure_root("/made/on/demand") is True
    assert await transport.ensure_root("/made/on/demand") is False
    run_in(container, "touch /a-file")
    for call in (transport.scan("/a-file"), transport.ensure_root("/a-file")):
        with pytest.raises(AgentError) as raised:
            await call
        assert raised.value.code == "notDirectory"
    assert (await transport.hash("/app", ["x", "y"])) == {"x": None, "y": None}


async def test_an_owner_needs_the_agent(transport: TarTransport, container: Any) -> None:
    with pytest.raises(AgentError) as raised:
        await transport.ensure_root("/owned", owner="1000:1000")
    assert raised.value.code == "badRequest"
    assert "needs Python 3.8+ in the target" in raised.value.message
    assert await transport.ensure_root("/owned") is True  # the refused call made nothing


async def test_a_removed_container_makes_the_transport_gone(
    transport: TarTransport, container: Any
) -> None:
    await transport.ensure_root("/app")
    container.remove(force=True)
    with pytest.raises(AgentGone):
        await transport.scan("/app")
    assert transport.alive is False


# --- Choosing the transport (no container needed) ---------------------------------------------


class AgentCrashes(LocalTarget):
    """The local target, with a working Python whose agent nevertheless dies at once."""

    async def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Any:
        if BOOTSTRAP in argv:
            argv = ["sh", "-c", "echo the agent crashed >&2; exit 1"]
        return await super().exec(argv, stdin=stdin, tty=tty, env=env, cwd=cwd)


async def test_the_fallback_is_only_for_a_missing_python(tmp_path: Path) -> None:
    healthy = LocalTarget(tmp_path / "healthy")
    await healthy.connect()
    warnings: list[str] = []
    try:
        chosen = await start_transport(healthy, warnings.append)
        assert isinstance(chosen, Agent) and warnings == []
        await chosen.close()
    finally:
        await healthy.close()

    crashing = AgentCrashes(tmp_path / "crashing")
    await crashing.connect()
    try:
        with pytest.raises(AgentGone, match="the agent crashed"):
            await start_transport(crashing, warnings.append)
        assert warnings == []
    finally:
        await crashing.close()
