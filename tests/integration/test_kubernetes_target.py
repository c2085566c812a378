"""The Kubernetes target against the API server double (tests/kube_double), over the wire.

The official client talks to the double through a generated kubeconfig; every pod is a real
Docker container, so these tests need the engine (tests/targets.py docker_client()).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from podlink.agent.client import Agent
from podlink.config import KubernetesTargetConfig, PodSelectorConfig, load_config
from podlink.session import Session
from podlink.targets.base import TargetUnavailable
from podlink.targets.kubernetes import KubernetesTarget
from tests.helpers import tree_listing
from tests.kube_double import KubeApiDouble
from tests.recording import RecordingListener
from tests.targets import DockerProbe, docker_client

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"

pytestmark = pytest.mark.asyncio


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeApiDouble]:
    double = KubeApiDouble(docker_client()).start()
    monkeypatch.setenv("KUBECONFIG", str(double.write_kubeconfig(tmp_path / "kubeconfig")))
    yield double
    double.stop()


@pytest.fixture
def web(cluster: KubeApiDouble) -> Any:
    return cluster.run_pod("web-1", {"app": "web"})


def by_selector(selector: str = "app=web", **extra: Any) -> KubernetesTargetConfig:
    return KubernetesTargetConfig(pod=PodSelectorConfig(selector=selector), **extra)


@pytest_asyncio.fixture
async def target(web: Any) -> AsyncIterator[KubernetesTarget]:
    connected = KubernetesTarget(by_selector())
    await connected.connect()
    yield connected
    await connected.close()


async def connect_error(config: KubernetesTargetConfig) -> str:
    target = KubernetesTarget(config)
    try:
        with pytest.raises(TargetUnavailable) as caught:
            await target.connect()
    finally:
        await target.close()
    return str(caught.value)


async def test_connects_by_name_and_by_selector(cluster: KubeApiDouble, web: Any) -> None:
    for config in (KubernetesTargetConfig(pod=PodSelectorConfig(name="web-1")), by_selector()):
        target = KubernetesTarget(config)
        await target.connect()
        try:
            described = target.describe()
            assert described.name == "web-1"
            assert described.detail["namespace"] == "dev"
            assert described.detail["container"] == "app"
        finally:
            await target.close()


async def test_an_ambiguous_container_lists_the_choices(cluster: KubeApiDouble) -> None:
    await asyncio.to_thread(cluster.run_pod, "multi-1", {"app": "multi"}, ("app", "sidecar"))
    message = await connect_error(by_selector("app=multi"))
    assert "app, sidecar" in message and "target.kubernetes.container" in message
    message = await connect_error(by_selector("app=multi", container="db"))
    assert "no container 'db'" in message and "app, sidecar" in message


@pytest.mark.parametrize("offer_v5", [True, False], ids=["v5", "v4"])
async def test_exec_is_binary_safe_and_reports_the_exit_code(
    cluster: KubeApiDouble, web: Any, offer_v5: bool
) -> None:
    cluster.offer_v5 = offer_v5
    target = KubernetesTarget(by_selector())
    await target.connect()
    try:
        payload = bytes(range(256)) * 64
        # v4 has no stdin close: the command reads exactly the bytes it expects.
        running = await target.exec(
            ["sh", "-c", f"head -c {len(payload)}; echo to-stderr >&2; exit 7"],
            stdin=True,
            env={"A": "1"},
            cwd="/tmp",
        )
        assert running.subprotocol == ("v5.channel.k8s.io" if offer_v5 else "v4.channel.k8s.io")
        assert running.stdin is not None and running.stderr is not None
        running.stdin.write(payload)
        await running.stdin.drain()
        assert await running.stdout.read() == payload
        assert await running.stderr.read() == b"to-stderr\n"
        assert await running.wait() == 7
        where = await target.exec(["sh", "-c", 'echo "$PWD $A"'], env={"A": "1"}, cwd="/tmp")
        assert await where.stdout.read() == b"/tmp 1\n"
        assert await where.wait() == 0
    finally:
        await target.close()


async def test_stdin_close_ends_input_on_v5(target: KubernetesTarget) -> None:
    running = await target.exec(["cat"], stdin=True)
    assert running.stdin is not None
    running.stdin.write(b"all of it")
    await running.close_stdin()
    assert await asyncio.wait_for(running.stdout.read(), 20) == b"all of it"
    assert await running.wait() == 0


async def test_terminate_stops_the_whole_process_group(target: KubernetesTarget, web: Any) -> None:
    running = await target.exec(["sh", "-c", "sleep 300 & sleep 301 & wait"])
    code = await running.terminate(grace_seconds=2)
    assert code != 0
    _, output = web.container.exec_run(["ps", "-eo", "args="])
    assert b"sleep 30" not in output


async def test_the_agent_writes_binary_files_over_the_exec_stream(
    target: KubernetesTarget, web: Any
) -> None:
    agent = await Agent.start(target)
    try:
        assert await agent.ensure_root("/srv/sync") is True
        payload = bytes(range(256)) * 4096
        await agent.write_bytes("/srv/sync", "data/all-bytes.bin", payload)
        assert DockerProbe(web.container).read("/srv/sync/data/all-bytes.bin") == payload
    finally:
        await agent.close()


ECHO_SERVER = """
import socket
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 9123))
listener.listen()
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    conn.sendall(b"echo: " + conn.recv(100))
    conn.close()
"""


async def test_tunnel_reaches_the_pods_own_loopback(target: KubernetesTarget) -> None:
    server = await target.exec(["python3", "-c", ECHO_SERVER])
    assert (await asyncio.wait_for(server.stdout.readline(), 20)).strip() == b"ready"
    for attempt in (b"one\n", b"two\n"):  # one WebSocket per connection
        reader, writer = await target.tunnel(9123)
        writer.write(attempt)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 20) == b"echo: " + attempt
        writer.close()
    await server.terminate()


def write_config(folder: Path) -> None:
    (folder / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  kubernetes:\n    pod: {selector: app=web}\n"
        "sync:\n  - local: .\n    remote: /app\n"
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    write_config(folder)
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


async def test_a_session_syncs_and_follows_a_replaced_pod(
    cluster: KubeApiDouble, web: Any, workspace: Path
) -> None:
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        await listener.wait_for_state("ready", seconds=60)
        (workspace / "app" / "edited.py").write_text("EDITED = True\n")
        await session.flush(20)
        assert remote_view(web.container) == local_view(workspace)
        mark = listener.mark()
        replacement = await asyncio.to_thread(cluster.replace_pod, "web-1")
        degraded = await listener.wait_for_state("degraded", since=mark)
        assert "web-1" in (degraded.error or "")
        await listener.wait_for_state("ready", since=listener.after(degraded), seconds=60)
        await listener.wait_for_log("reconnected", since=mark)
        assert remote_view(replacement.container) == local_view(workspace)
    finally:
        await session.stop()


async def test_an_expired_watch_is_resumed(cluster: KubeApiDouble, web: Any) -> None:
    target = KubernetesTarget(by_selector())
    await target.connect()
    events = target.events()
    try:
        assert (await anext(events)).kind.value == "started"
        await asyncio.to_thread(cluster.expire_history)
        await asyncio.to_thread(cluster.restart_container, "web-1")
        kinds = [(await asyncio.wait_for(anext(events), 60)).kind.value for _ in range(2)]
        assert kinds == ["gone", "restarted"]
    finally:
        await target.close()


async def test_a_pending_pod_shows_its_reason_and_events(cluster: KubeApiDouble) -> None:
    await asyncio.to_thread(
        cluster.pending_pod, "web-1", {"app": "web"}, "0/3 nodes are available: 3 Insufficient cpu."
    )
    message = await connect_error(by_selector())
    assert "Pending" in message and "Unschedulable" in message
    assert "FailedScheduling: 0/3 nodes are available" in message


async def test_a_crash_looping_pod_shows_its_reason_and_events(cluster: KubeApiDouble) -> None:
    await asyncio.to_thread(cluster.crash_loop, "web-1", {"app": "web"}, "ModuleNotFoundError")
    message = await connect_error(by_selector())
    assert "CrashLoopBackOff" in message and "after 5 restarts" in message
    assert "Failed: Error: ModuleNotFoundError" in message


async def test_rbac_denials_name_the_verb_and_resource(
    cluster: KubeApiDouble, target: KubernetesTarget
) -> None:
    cluster.deny("create", "pods/exec")
    cluster.deny("create", "pods/portforward")
    with pytest.raises(TargetUnavailable) as exec_denied:
        await target.exec(["true"])
    assert "verb 'create' on resource 'pods/exec'" in str(exec_denied.value)
    assert "forbidden" in str(exec_denied.value)
    with pytest.raises(TargetUnavailable) as forward_denied:
        await target.tunnel(9123)
    assert "verb 'create' on resource 'pods/portforward'" in str(forward_denied.value)
    cluster.deny("list", "pods")
    message = await connect_error(by_selector())
    assert "verb 'list' on resource 'pods'" in message


async def test_connection_errors_say_what_was_tried(
    cluster: KubeApiDouble, web: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "no pod in namespace 'dev' matches the selector 'app=api'" in await connect_error(
        by_selector("app=api")
    )
    assert "no pod named 'api-1'" in await connect_error(
        KubernetesTargetConfig(pod=PodSelectorConfig(name="api-1"))
    )
    message = await connect_error(by_selector(namespace="staging"))
    assert "namespace 'staging' does not exist" in message
    message = await connect_error(by_selector(context="prod"))
    assert "no context 'prod'" in message and "double" in message
    stale = cluster.write_kubeconfig(tmp_path / "stale", token="expired")
    monkeypatch.setenv("KUBECONFIG", str(stale))
    message = await connect_error(by_selector())
    assert "401 Unauthorized" in message and "expired" in message
    cluster.server.stop()
    monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(tmp_path / "gone")))
    message = await connect_error(by_selector())
    assert "cannot reach the API server" in message and cluster.url in message
