"""The Docker target against a real Docker Engine: exec streams, tunnels, lifecycle, errors."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from podlink.config import DockerTargetConfig, load_config
from podlink.session import Session
from podlink.targets.base import TargetUnavailable
from podlink.targets.docker.containers import MANAGED_LABEL, container_name_for
from podlink.targets.docker.target import DockerTarget
from tests.helpers import tree_listing
from tests.recording import RecordingListener
from tests.targets import TEST_IMAGE, DockerProbe, docker_client, start_test_container

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"

pytestmark = pytest.mark.asyncio


@pytest.fixture
def client() -> Any:
    return docker_client()


@pytest.fixture
def container(client: Any) -> Iterator[Any]:
    created = start_test_container(client)
    yield created
    # By name: a test may have replaced the container with another of the same name.
    for leftover in client.containers.list(all=True, filters={"name": created.name}):
        leftover.remove(force=True)


@pytest_asyncio.fixture
async def target(container: Any, tmp_path: Path) -> AsyncIterator[DockerTarget]:
    connected = DockerTarget(DockerTargetConfig(container=container.name), tmp_path)
    await connected.connect()
    yield connected
    await connected.close()


def write_config(folder: Path, target_block: str, run: bool = False) -> None:
    run_block = 'run:\n  command: ["python3", "-m", "app"]\n  env: {PORT: "0"}\n' if run else ""
    (folder / "podlink.yaml").write_text(
        f"version: 1\ntarget:\n{target_block}sync:\n  - local: .\n    remote: /app\n{run_block}"
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    return folder


def local_view(workspace: Path) -> dict[str, Any]:
    return {
        path: info
        for path, info in tree_listing(workspace).items()
        if not path.startswith(".podlink") and "__pycache__" not in path
    }


def remote_view(container: Any) -> dict[str, Any]:
    listing = DockerProbe(container).listing("/app")
    return {path: info for path, info in listing.items() if "__pycache__" not in path}


async def test_exec_keeps_streams_apart_and_reports_the_exit_code(target: DockerTarget) -> None:
    running = await target.exec(
        ["sh", "-c", "cat; echo to-stderr >&2; exit 7"], stdin=True, env={"A": "1"}, cwd="/tmp"
    )
    assert running.stdin is not None and running.stderr is not None
    payload = bytes(range(256)) * 64
    running.stdin.write(payload)
    await running.close_stdin()
    assert await running.stdout.read() == payload
    assert await running.stderr.read() == b"to-stderr\n"
    assert await running.wait() == 7


async def test_terminate_stops_the_whole_process_group(
    target: DockerTarget, container: Any
) -> None:
    running = await target.exec(["sh", "-c", "sleep 300 & sleep 301 & wait"])
    await asyncio.wait_for(running.wait_for_pid(), 10)
    code = await running.terminate(grace_seconds=2)
    assert code != 0
    _, output = container.exec_run(["ps", "-eo", "args="])
    assert b"sleep 30" not in output


async def test_tunnel_reaches_the_containers_own_loopback(target: DockerTarget) -> None:
    server = await target.exec(["python3", "-c", ECHO_SERVER], stdin=False)
    assert (await server.stdout.readline()).strip() == b"ready"
    reader, writer = await target.tunnel(9123)
    writer.write(b"ping\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.readline(), 10) == b"echo: ping\n"
    writer.close()
    await server.terminate()


ECHO_SERVER = """
import socket
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 9123))
listener.listen()
print("ready", flush=True)
conn, _ = listener.accept()
line = conn.makefile("rb").readline()
conn.sendall(b"echo: " + line)
conn.close()
"""


async def test_a_port_with_nothing_listening_is_a_clear_error(target: DockerTarget) -> None:
    with pytest.raises(TargetUnavailable, match=r"nothing accepts connections on 127.0.0.1:9"):
        await target.tunnel(9)


async def test_a_missing_container_names_what_was_tried(tmp_path: Path) -> None:
    name = f"podlink-missing-{uuid.uuid4().hex[:6]}"
    docker_client()
    with pytest.raises(TargetUnavailable) as raised:
        await DockerTarget(DockerTargetConfig(container=name), tmp_path).connect()
    assert name in str(raised.value) and "docker ps -a" in str(raised.value)


async def test_a_stopped_container_says_how_to_start_it(client: Any, tmp_path: Path) -> None:
    stopped = start_test_container(client)
    try:
        stopped.stop(timeout=1)
        with pytest.raises(TargetUnavailable, match="docker start"):
            await DockerTarget(DockerTargetConfig(container=stopped.name), tmp_path).connect()
    finally:
        stopped.remove(force=True)


async def test_an_unreachable_engine_names_the_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(TargetUnavailable) as raised:
        await DockerTarget(DockerTargetConfig(container="any"), tmp_path).connect()
    assert f"unix://{tmp_path}/no-engine.sock" in str(raised.value)
    assert "start Docker" in str(raised.value)


async def test_session_recovers_when_the_container_restarts(
    workspace: Path, container: Any
) -> None:
    write_config(workspace, f"  docker:\n    container: {container.name}\n", run=True)
    before = local_view(workspace)
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        await listener.wait_for_log("hello app listening")
        mark = listener.mark()
        await asyncio.to_thread(container.restart, timeout=1)
        degraded = await listener.wait_for_state("degraded", since=mark)
        recovered = await listener.wait_for_state("ready", since=listener.after(degraded))
        assert recovered.error is None
        await listener.wait_for_log("hello app listening", since=mark)
        (workspace / "app" / "after_restart.py").write_text("BACK = True\n")
        await session.flush(20)
        assert remote_view(container) == local_view(workspace)
        assert {
            k: v for k, v in local_view(workspace).items() if "after_restart" not in k
        } == before
    finally:
        await session.stop()


async def test_session_recovers_when_the_container_is_replaced(
    workspace: Path, client: Any, container: Any
) -> None:
    write_config(workspace, f"  docker:\n    container: {container.name}\n")
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        mark = listener.mark()
        name = container.name
        await asyncio.to_thread(container.remove, force=True)
        degraded = await listener.wait_for_state("degraded", since=mark)
        assert name in (degraded.error or "")
        replacement = await asyncio.to_thread(
            client.containers.run,
            TEST_IMAGE,
            ["sleep", "infinity"],
            name=name,
            detach=True,
            init=True,
            labels={"podlink.test": "1"},
        )
        await listener.wait_for_state("ready", since=listener.after(degraded))
        assert remote_view(replacement) == local_view(workspace)
        await listener.wait_for_log("reconnected", since=mark)
    finally:
        await session.stop()


async def test_image_target_creates_labels_reuses_and_stops_its_container(
    workspace: Path, client: Any
) -> None:
    write_config(workspace, f"  docker:\n    image: {TEST_IMAGE}\n")
    name = container_name_for(workspace.resolve())
    try:
        first = Session(load_config(workspace), RecordingListener())
        await first.start()
        created = client.containers.get(name)
        assert created.labels[MANAGED_LABEL] == "1"
        assert remote_view(created) == local_view(workspace)
        await first.stop()
        created.reload()
        assert created.status == "exited"

        second = Session(load_config(workspace), RecordingListener())
        await second.start()
        assert client.containers.get(name).id == created.id
        await second.stop()
    finally:
        for leftover in client.containers.list(all=True, filters={"name": name}):
            leftover.remove(force=True)


async def test_dockerfile_build_streams_its_log_and_a_failed_step_points_at_its_line(
    workspace: Path, client: Any
) -> None:
    dockerfile = workspace / "Dockerfile"
    dockerfile.write_text(f"FROM {TEST_IMAGE}\n# a comment\nRUN echo building-the-dev-image\n")
    write_config(workspace, "  docker:\n    build: {context: ., dockerfile: Dockerfile}\n")
    name = container_name_for(workspace.resolve())
    listener = RecordingListener()
    try:
        session = Session(load_config(workspace), listener)
        await session.start()
        assert any(
            "building-the-dev-image" in text for source, text in listener.logs if source == "build"
        )
        assert client.containers.get(name).labels[MANAGED_LABEL] == "1"
        await session.stop()

        dockerfile.write_text(f"FROM {TEST_IMAGE}\n\nRUN echo fine \\\n  && false\nRUN true\n")
        before = {container.id for container in client.containers.list(all=True)}
        failing = Session(load_config(workspace), listener)
        with pytest.raises(TargetUnavailable, match="image build failed"):
            await failing.start()
        # The failed step's container is not left behind.
        assert {container.id for container in client.containers.list(all=True)} <= before
        diagnostics = listener.diagnostics[("podlink-build", dockerfile)]
        assert [d.line for d in diagnostics] == [3]
        assert "non-zero code" in diagnostics[0].message
    finally:
        for leftover in client.containers.list(all=True, filters={"name": name}):
            leftover.remove(force=True)
        for image in client.images.list(filters={"label": f"{MANAGED_LABEL}=1"}):
            if any(tag.startswith(name) for tag in image.tags):
                client.images.remove(image.id, force=True)
