"""The Kubernetes target over the wire: the official client against the API server double
(tests/kube_double), whose pods are real Docker containers, or against a real cluster when
PODLINK_TEST_KUBECONTEXT names one (tests/kube_cluster.py); what only the double can stage
(a denied verb, a compacted watch cache, a crash loop...) runs on the double alone.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes import client

from podlink.agent.client import Agent
from podlink.config import KubernetesTargetConfig, PodSelectorConfig, load_config
from podlink.session import Session
from podlink.targets.base import PortRefused, TargetUnavailable
from podlink.targets.kubernetes.target import KubernetesTarget
from tests.helpers import tree_listing
from tests.kube_cluster import (
    DoubleCluster,
    KubeCluster,
    RealCluster,
    cluster_control,
    needs_a_real_cluster,
    needs_the_double,
    open_cluster,
    pod_image,
)
from tests.kube_double import KubeApiDouble
from tests.recording import RecordingListener
from tests.targets import KubernetesProbe

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"

pytestmark = pytest.mark.asyncio


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeCluster]:
    opened = open_cluster(tmp_path)
    for name, value in opened.environment().items():
        monkeypatch.setenv(name, value)
    yield opened
    opened.close()


@pytest.fixture
def double(cluster: KubeCluster) -> KubeApiDouble:
    """The double's own controls, for the tests marked ``needs_the_double``."""
    assert isinstance(cluster, DoubleCluster)
    return cluster.double


@pytest.fixture
def web(cluster: KubeCluster) -> str:
    cluster.start_pod("web-1", {"app": "web"})
    return "web-1"


@pytest.fixture
def by_selector(cluster: KubeCluster) -> Any:
    def config(selector: str = "app=web", **extra: Any) -> KubernetesTargetConfig:
        return cluster.target_config(PodSelectorConfig(selector=selector), **extra)

    return config


@pytest_asyncio.fixture
async def target(web: str, by_selector: Any) -> AsyncIterator[KubernetesTarget]:
    connected = KubernetesTarget(by_selector())
    await connected.connect()
    yield connected
    await connected.close()


def probe(cluster: KubeCluster, pod: str) -> KubernetesProbe:
    return KubernetesProbe(cluster.shell(pod), cluster.context)


async def connect_error(config: KubernetesTargetConfig) -> str:
    target = KubernetesTarget(config)
    try:
        with pytest.raises(TargetUnavailable) as caught:
            await target.connect()
    finally:
        await target.close()
    return str(caught.value)


async def test_connects_by_name_and_by_selector(
    cluster: KubeCluster, web: str, by_selector: Any
) -> None:
    configs = (
        cluster.target_config(PodSelectorConfig(name="web-1")),
        by_selector(),
        by_selector("app in (web, api),!canary"),
    )
    for config in configs:
        target = KubernetesTarget(config)
        await target.connect()
        try:
            described = target.describe()
            assert described.name == "web-1"
            assert described.detail["namespace"] == cluster.namespace
            assert described.detail["container"] == "app"
        finally:
            await target.close()


async def test_an_ambiguous_container_lists_the_choices(
    cluster: KubeCluster, by_selector: Any
) -> None:
    await asyncio.to_thread(cluster.start_pod, "multi-1", {"app": "multi"}, ("app", "sidecar"))
    message = await connect_error(by_selector("app=multi"))
    assert "app, sidecar" in message and "target.kubernetes.container" in message
    message = await connect_error(by_selector("app=multi", container="db"))
    assert "no container 'db'" in message and "app, sidecar" in message


@pytest.mark.parametrize("offer_v5", [True, False], ids=["v5", "v4"])
async def test_exec_is_binary_safe_and_reports_the_exit_code(
    cluster: KubeCluster, web: str, by_selector: Any, offer_v5: bool
) -> None:
    on_double = isinstance(cluster, DoubleCluster)
    if on_double:
        cluster.double.offer_v5 = offer_v5
    elif not offer_v5:
        pytest.skip(
            "a real API server offers what its version has; only the double can hold v5 back"
        )
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
        if on_double:
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
    if running.subprotocol != "v5.channel.k8s.io":  # a real cluster before Kubernetes 1.30
        await running.terminate()
        pytest.skip(f"the API server speaks {running.subprotocol}, which cannot close stdin")
    assert running.stdin is not None
    running.stdin.write(b"all of it")
    await running.close_stdin()
    assert await asyncio.wait_for(running.stdout.read(), 20) == b"all of it"
    assert await running.wait() == 0


async def test_terminate_stops_the_whole_process_group(
    cluster: KubeCluster, target: KubernetesTarget, web: str
) -> None:
    running = await target.exec(["sh", "-c", "sleep 300 & sleep 301 & wait"])
    code = await running.terminate(grace_seconds=2)
    assert code != 0
    left = await asyncio.to_thread(probe(cluster, web).leftover_processes, 0)
    assert not any("sleep 30" in line for line in left)


async def test_the_agent_writes_binary_files_over_the_exec_stream(
    cluster: KubeCluster, target: KubernetesTarget, web: str
) -> None:
    agent = await Agent.start(target)
    try:
        assert await agent.ensure_root("/srv/sync") is True
        payload = bytes(range(256)) * 4096
        await agent.write_bytes("/srv/sync", "data/all-bytes.bin", payload)
        written = await asyncio.to_thread(probe(cluster, web).read, "/srv/sync/data/all-bytes.bin")
        assert written == payload
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


async def test_a_port_nobody_listens_on_is_refused_with_the_kubelets_message(
    target: KubernetesTarget,
) -> None:
    reader, writer = await target.tunnel(9124)
    # Kubernetes only says so on the port's error channel once the stream is open.
    with pytest.raises(PortRefused) as refused:
        await asyncio.wait_for(reader.read(), 20)
    writer.close()
    message = str(refused.value)
    assert message.startswith("nothing accepts connections on 127.0.0.1:9124 in pod web-1: ")
    assert "error forwarding port 9124 to pod " in message
    assert "connection refused" in message.lower()
    # The refusal was that connection's: the next one reaches a listener that came since.
    server = await target.exec(["python3", "-c", ECHO_SERVER.replace("9123", "9124")])
    assert (await asyncio.wait_for(server.stdout.readline(), 20)).strip() == b"ready"
    reader, writer = await target.tunnel(9124)
    writer.write(b"again\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 20) == b"echo: again\n"
    writer.close()
    await server.terminate()


@pytest.fixture
def workspace(tmp_path: Path, cluster: KubeCluster) -> Path:
    folder = tmp_path / "workspace"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    (folder / "podlink.yaml").write_text(
        "version: 1\n"
        + cluster.target_yaml("    pod: {selector: app=web}\n")
        + "sync:\n  - local: .\n    remote: /app\n"
    )
    return folder


def local_view(workspace: Path) -> dict[str, Any]:
    return {
        path: info
        for path, info in tree_listing(workspace).items()
        if not path.startswith(".podlink") and "__pycache__" not in path
    }


def remote_view(cluster: KubeCluster, pod: str) -> dict[str, Any]:
    listing = probe(cluster, pod).listing("/app")
    return {path: info for path, info in listing.items() if "__pycache__" not in path}


async def test_a_session_syncs_and_follows_a_replaced_pod(
    cluster: KubeCluster, web: str, workspace: Path
) -> None:
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        await listener.wait_for_state("ready", seconds=60)
        (workspace / "app" / "edited.py").write_text("EDITED = True\n")
        await session.flush(20)
        assert await asyncio.to_thread(remote_view, cluster, web) == local_view(workspace)
        mark = listener.mark()
        replacement = await asyncio.to_thread(cluster.replace_pod, web)
        degraded = await listener.wait_for_state("degraded", since=mark)
        assert web in (degraded.error or "")
        await listener.wait_for_state("ready", since=listener.after(degraded), seconds=60)
        summary = await listener.wait_for_log("reconnected", since=mark)
        assert await asyncio.to_thread(remote_view, cluster, replacement) == local_view(workspace)
        # One line says what happened; the new pod's missing files are not "changed there".
        files = sum(1 for info in local_view(workspace).values() if info[0] == "file")
        assert f"new pod {replacement} (was {web}): {files:,} file(s) synced in " in summary
        since_replaced = [text for _, text in listener.logs[mark[1] :]]
        assert not [text for text in since_replaced if "was changed in the target" in text]
    finally:
        await session.stop()


async def test_a_deleted_pod_is_reported_until_another_one_matches(
    cluster: KubeCluster, web: str, workspace: Path
) -> None:
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        await listener.wait_for_state("ready", seconds=60)
        mark = listener.mark()
        await asyncio.to_thread(cluster.delete_pod, web)
        # Degraded, naming the pod, and then why reconnecting does not work yet.
        degraded = await listener.wait_for_state("degraded", since=mark)
        assert web in (degraded.error or "")
        waiting = await listener.wait_until(
            lambda: next(
                (
                    s
                    for s in listener.sessions[mark[0] :]
                    if "still reconnecting" in (s.error or "")
                ),
                None,
            )
        )
        assert waiting.state == "degraded"
        assert f"no pod in namespace '{cluster.namespace}' matches the selector 'app=web'" in (
            waiting.error or ""
        )
        # A pod with the labels appears: the session takes it up.
        await asyncio.to_thread(cluster.start_pod, "web-2", {"app": "web"})
        await listener.wait_for_state("ready", since=listener.after(waiting), seconds=60)
        assert session.target is not None and session.target.describe().name == "web-2"
        assert await asyncio.to_thread(remote_view, cluster, "web-2") == local_view(workspace)
    finally:
        await session.stop()


async def test_a_session_follows_its_deployment_through_a_rollout(
    cluster: KubeCluster, workspace: Path
) -> None:
    container = {"name": "app", "image": pod_image(), "command": ["sleep", "infinity"]}
    await asyncio.to_thread(cluster.create_deployment, "web", {"app": "web"}, [container], 1)
    (first,) = [pod["metadata"]["name"] for pod in cluster.deployment_pods("web")]
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        await listener.wait_for_state("ready", seconds=60)
        mark = listener.mark()
        # What `kubectl set env deployment/web` does: a new template, so new pods.
        rollout = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "app", "env": [{"name": "RELEASE", "value": "2"}]}]
                    }
                }
            }
        }
        apps = client.AppsV1Api(cluster.api)
        await asyncio.to_thread(apps.patch_namespaced_deployment, "web", cluster.namespace, rollout)
        degraded = await listener.wait_for_state("degraded", since=mark)
        assert first in (degraded.error or "")
        await listener.wait_for_state("ready", since=listener.after(degraded), seconds=90)
        await asyncio.to_thread(cluster.wait_for_rollout, "web")
        (second,) = cluster.deployment_pods("web")
        assert second["metadata"]["name"] != first
        assert second["spec"]["containers"][0]["env"] == [{"name": "RELEASE", "value": "2"}]
        assert session.target is not None
        assert session.target.describe().name == second["metadata"]["name"]
        (workspace / "app" / "after_rollout.py").write_text("ROLLED = True\n")
        await session.flush(20)
        synced = await asyncio.to_thread(remote_view, cluster, second["metadata"]["name"])
        assert synced == local_view(workspace)
    finally:
        await session.stop()


@needs_the_double
async def test_an_expired_watch_is_resumed(
    double: KubeApiDouble, web: str, by_selector: Any
) -> None:
    target = KubernetesTarget(by_selector())
    await target.connect()
    events = target.events()
    try:
        assert (await anext(events)).kind.value == "started"
        assert await asyncio.to_thread(double.watch_opened.wait, 30)
        await asyncio.to_thread(double.expire_history)
        await asyncio.to_thread(double.restart_container, web)
        kinds = [(await asyncio.wait_for(anext(events), 60)).kind.value for _ in range(2)]
        assert kinds == ["gone", "restarted"]
        # The open watch ended, the next one was refused as too old, and podlink listed again.
        assert double.expired_watches >= 1
    finally:
        await target.close()


@needs_the_double
async def test_a_pending_pod_shows_its_reason_and_events(
    double: KubeApiDouble, by_selector: Any
) -> None:
    await asyncio.to_thread(
        double.pending_pod, "web-1", {"app": "web"}, "0/3 nodes are available: 3 Insufficient cpu."
    )
    message = await connect_error(by_selector())
    assert "Pending" in message and "Unschedulable" in message
    assert "FailedScheduling: 0/3 nodes are available" in message


@needs_the_double
async def test_a_crash_looping_pod_shows_its_reason_and_events(
    double: KubeApiDouble, by_selector: Any
) -> None:
    await asyncio.to_thread(double.crash_loop, "web-1", {"app": "web"}, "ModuleNotFoundError")
    message = await connect_error(by_selector())
    assert "CrashLoopBackOff" in message and "after 5 restarts" in message
    assert "Failed: Error: ModuleNotFoundError" in message


@needs_the_double
async def test_rbac_denials_name_the_verb_and_resource(
    double: KubeApiDouble, target: KubernetesTarget, by_selector: Any
) -> None:
    double.deny("create", "pods/exec")
    double.deny("create", "pods/portforward")
    with pytest.raises(TargetUnavailable) as exec_denied:
        await target.exec(["true"])
    assert "verb 'create' on resource 'pods/exec'" in str(exec_denied.value)
    assert "forbidden" in str(exec_denied.value)
    with pytest.raises(TargetUnavailable) as forward_denied:
        await target.tunnel(9123)
    assert "verb 'create' on resource 'pods/portforward'" in str(forward_denied.value)
    double.deny("list", "pods")
    message = await connect_error(by_selector())
    assert "verb 'list' on resource 'pods'" in message


@needs_the_double
async def test_connection_errors_say_what_was_tried(
    double: KubeApiDouble,
    web: str,
    by_selector: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
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
    stale = double.write_kubeconfig(tmp_path / "stale", token="expired")
    monkeypatch.setenv("KUBECONFIG", str(stale))
    message = await connect_error(by_selector())
    assert "401 Unauthorized" in message and "expired" in message
    double.server.stop()
    monkeypatch.setenv("KUBECONFIG", str(double.write_kubeconfig(tmp_path / "gone")))
    message = await connect_error(by_selector())
    assert "cannot reach the API server" in message and double.url in message


# -- what only a real cluster shows ---------------------------------------------------------


def real(cluster: KubeCluster) -> RealCluster:
    assert isinstance(cluster, RealCluster)
    return cluster


READ_PODS = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


@needs_a_real_cluster
async def test_a_bearer_token_meets_real_rbac(
    cluster: KubeCluster,
    web: str,
    by_selector: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The suite's own kubeconfig holds client certificates; this one a ServiceAccount's
    bearer token, whose Role may read pods but not exec into them or forward their ports."""
    kubeconfig = real(cluster).service_account_kubeconfig("viewer", READ_PODS, tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    target = KubernetesTarget(by_selector())
    await target.connect()
    try:
        with pytest.raises(TargetUnavailable) as exec_denied:
            await target.exec(["true"])
        message = str(exec_denied.value)
        assert "forbidden" in message and "verb 'create' on resource 'pods/exec'" in message
        with pytest.raises(TargetUnavailable) as forward_denied:
            await target.tunnel(9123)
        assert "verb 'create' on resource 'pods/portforward'" in str(forward_denied.value)
    finally:
        await target.close()
    # Granted what the message named, the same token runs commands in the pod.
    real(cluster).grant(
        "viewer", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}]
    )
    target = KubernetesTarget(by_selector())
    await target.connect()
    try:
        async with asyncio.timeout(30):
            while True:  # the authorizer's cache takes the new rule a moment later
                try:
                    running = await target.exec(["sh", "-c", "echo granted"])
                    break
                except TargetUnavailable as error:
                    assert "forbidden" in str(error)
                    await asyncio.sleep(0.2)
        assert await running.stdout.read() == b"granted\n"
        assert await running.wait() == 0
    finally:
        await target.close()


@needs_a_real_cluster
async def test_a_crash_looping_container_shows_its_reason(
    cluster: KubeCluster, by_selector: Any
) -> None:
    await asyncio.to_thread(real(cluster).start_crashing_pod, "web-1", {"app": "web"})
    message = await connect_error(by_selector())
    assert "web-1" in message and "CrashLoopBackOff" in message


@needs_a_real_cluster
async def test_the_named_container_of_a_multi_container_pod_is_used(
    cluster: KubeCluster, by_selector: Any
) -> None:
    """The double merges a pod's containers into one; a real pod has a file system each."""
    await asyncio.to_thread(cluster.start_pod, "multi-1", {"app": "multi"}, ("sidecar", "app"))
    for chosen, other in (("app", "sidecar"), ("sidecar", "app")):
        target = KubernetesTarget(by_selector("app=multi", container=chosen))
        await target.connect()
        try:
            running = await target.exec(["sh", "-c", f"echo {chosen} > /tmp/picked"])
            assert await running.wait() == 0
        finally:
            await target.close()
        chosen_shell = cluster.shell("multi-1", chosen)
        assert await asyncio.to_thread(chosen_shell.check, "cat", "/tmp/picked") == (
            chosen.encode() + b"\n"
        )
        await asyncio.to_thread(cluster.shell("multi-1", other).check, "rm", "-f", "/tmp/picked")


@needs_a_real_cluster
async def test_a_session_rides_out_an_api_server_restart(
    cluster: KubeCluster, web: str, workspace: Path
) -> None:
    control = cluster_control()
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        await listener.wait_for_state("ready", seconds=60)
        mark = listener.mark()
        await run_control(control, "stop", "kube-apiserver")
        try:
            degraded = await listener.wait_for_state("degraded", since=mark, seconds=60)
            # Edited while the cluster cannot be reached: synced once it can.
            (workspace / "app" / "while_away.py").write_text("AWAY = True\n")
        finally:
            await run_control(control, "start", "kube-apiserver")
        await listener.wait_for_state("ready", since=listener.after(degraded), seconds=120)
        await session.flush(30)
        assert await asyncio.to_thread(remote_view, cluster, web) == local_view(workspace)
    finally:
        await session.stop()


async def run_control(script: Path, *arguments: str) -> None:
    process = await asyncio.create_subprocess_exec(
        str(script), *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, f"{script} {' '.join(arguments)}: {output.decode()}"
