"""Kubernetes dev mode over the wire: patch, hold, restore exactly.

A Deployment with two replicas, args and every kind of probe is put into dev mode by a
session, held against a second one, and restored field for field; a Deployment left
patched by a session that died is restored by the purge function (and by `podlink purge`,
tests/integration/test_cli_kubernetes.py). The cluster is the API server double, whose pods
are Docker containers, or the real one PODLINK_TEST_KUBECONTEXT names (tests/kube_cluster.py).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from podlink.config import DevModeConfig, KubernetesTargetConfig, PodSelectorConfig, load_config
from podlink.session import Session
from podlink.targets.base import TargetUnavailable
from podlink.targets.kubernetes.devmode import (
    ORIGINAL_ANNOTATION,
    OWNER_ANNOTATION,
    DevMode,
    patched_deployments,
    restore_deployment,
    session_owner,
)
from podlink.targets.kubernetes.target import KubernetesTarget
from tests.helpers import tree_listing
from tests.kube_cluster import KubeCluster, open_cluster, pod_image, real_context
from tests.recording import RecordingListener
from tests.targets import KubernetesProbe

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"
DEV_COMMAND = ["sleep", "infinity"]

pytestmark = pytest.mark.asyncio


def restore_patched_deployments(api: Any, namespace: str) -> list[str]:
    """Restore every Deployment in ``namespace`` that dev mode left patched, whichever
    session did it (after a crash), as ``podlink purge`` does. The names restored."""
    apps = client.AppsV1Api(api)
    return [
        deployment.name
        for deployment in patched_deployments(api, namespace)
        if restore_deployment(apps, namespace, deployment.name)
    ]


def web_container() -> dict[str, Any]:
    """The app's container as its manifest has it. The double runs every pod from its test
    image, so there the image is one no cluster could pull, which dev mode must put back; a
    real cluster must be able to run it."""
    return {
        "name": "app",
        "image": pod_image() if real_context() else "registry.example/web:1.4",
        "command": ["python3", "-m", "http.server"],
        "args": ["8080"],
        "env": [{"name": "APP_ENV", "value": "production"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 3},
        "startupProbe": {"exec": {"command": ["true"]}},
    }


WEB_CONTAINER = web_container()


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeCluster]:
    opened = open_cluster(tmp_path)
    for name, value in opened.environment().items():
        monkeypatch.setenv(name, value)
    yield opened
    opened.close()


@pytest.fixture
def web(cluster: KubeCluster) -> dict[str, Any]:
    """The Deployment as it was created: what every restore must give back."""
    return cluster.create_deployment("web", {"app": "web"}, [WEB_CONTAINER], 2)


def dev_mode(image: str | None = None) -> DevModeConfig:
    return DevModeConfig(deployment="web", command=tuple(DEV_COMMAND), image=image)


def dev_image() -> str:
    return pod_image()


def dev_config(cluster: KubeCluster, image: str | None) -> KubernetesTargetConfig:
    return cluster.target_config(PodSelectorConfig(selector="app=web"), dev_mode=dev_mode(image))


def dev_workspace(folder: Path, cluster: KubeCluster) -> Path:
    """A copy of the example whose podlink.yaml puts the Deployment into dev mode."""
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    (folder / "podlink.yaml").write_text(
        "version: 1\n"
        + cluster.target_yaml(
            "    pod: {selector: app=web}\n"
            f"    devMode: {{deployment: web, command: {json.dumps(DEV_COMMAND)}, "
            f"image: {dev_image()}}}\n"
        )
        + "sync:\n  - local: .\n    remote: /app\n"
    )
    return folder


@pytest.fixture
def workspace(tmp_path: Path, cluster: KubeCluster) -> Path:
    return dev_workspace(tmp_path / "workspace", cluster)


def app_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return next(each for each in containers if each["name"] == "app")


def assert_in_dev_mode(deployment: dict[str, Any], owner: str) -> None:
    assert deployment["spec"]["replicas"] == 1
    container = app_container(deployment)
    assert container["command"] == DEV_COMMAND
    assert "args" not in container
    assert container["image"] == dev_image()
    assert not {"readinessProbe", "livenessProbe", "startupProbe"} & set(container)
    # What dev mode does not touch stays as it was.
    assert container["env"] == WEB_CONTAINER["env"]
    annotations = deployment["metadata"]["annotations"]
    assert annotations[OWNER_ANNOTATION] == owner
    original = json.loads(annotations[ORIGINAL_ANNOTATION])
    assert original["replicas"] == 2 and original["fields"]["args"] == WEB_CONTAINER["args"]


def without_bookkeeping(deployment: dict[str, Any]) -> dict[str, Any]:
    """The Deployment minus what the cluster itself changes on every change: the resource
    version, the generation, the status, the fields' managers and the controller's revision
    annotation."""
    kept = json.loads(json.dumps(deployment))
    metadata = kept["metadata"]
    for key in ("resourceVersion", "generation", "managedFields"):
        metadata.pop(key, None)
    annotations = metadata.pop("annotations", {})
    annotations.pop("deployment.kubernetes.io/revision", None)
    if annotations:
        metadata["annotations"] = annotations
    kept.pop("status", None)
    return kept


def assert_restored(cluster: KubeCluster, original: dict[str, Any]) -> None:
    """Field for field as it was, and running the original spec again."""
    assert without_bookkeeping(cluster.deployment("web")) == without_bookkeeping(original)
    cluster.wait_for_rollout("web")
    pods = cluster.deployment_pods("web")
    assert len(pods) == 2
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert container["command"] == WEB_CONTAINER["command"]
        assert container["args"] == WEB_CONTAINER["args"]


def local_view(workspace: Path) -> dict[str, Any]:
    return {
        path: info
        for path, info in tree_listing(workspace).items()
        if not path.startswith(".podlink") and "__pycache__" not in path
    }


def remote_view(cluster: KubeCluster, pod: str) -> dict[str, Any]:
    listing = KubernetesProbe(cluster.shell(pod), cluster.context).listing("/app")
    return {path: info for path, info in listing.items() if "__pycache__" not in path}


async def test_a_session_runs_in_the_patched_pod_and_restores_the_deployment(
    cluster: KubeCluster, web: dict[str, Any], workspace: Path
) -> None:
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        await listener.wait_for_state("ready", seconds=90)
        patched = cluster.deployment("web")
        # The session is named by this machine and the workspace folder.
        assert_in_dev_mode(patched, session_owner(load_config(workspace).folder))
        (pod,) = cluster.deployment_pods("web")
        assert pod["spec"]["containers"][0]["command"] == DEV_COMMAND
        (workspace / "app" / "edited.py").write_text("EDITED = True\n")
        await session.flush(20)
        synced = await asyncio.to_thread(remote_view, cluster, pod["metadata"]["name"])
        assert synced == local_view(workspace)
    finally:
        await session.stop()
    await asyncio.to_thread(assert_restored, cluster, web)


async def test_a_deployment_held_by_another_session_is_refused(
    cluster: KubeCluster, web: dict[str, Any], tmp_path: Path
) -> None:
    first = KubernetesTarget(dev_config(cluster, image=None), folder=tmp_path / "first")
    await first.connect()
    try:
        held = without_bookkeeping(cluster.deployment("web"))
        assert app_container(held)["image"] == WEB_CONTAINER["image"]  # no image: unchanged
        # Reconnecting (after a pod replacement) keeps the true original, not the dev spec.
        await first.connect()
        assert without_bookkeeping(cluster.deployment("web")) == held
        second = KubernetesTarget(dev_config(cluster, dev_image()), folder=tmp_path / "second")
        try:
            with pytest.raises(TargetUnavailable) as refused:
                await second.connect()
        finally:
            await second.close()
        message = str(refused.value)
        assert session_owner(tmp_path / "first") in message
        assert "podlink purge" in message and "deployment web" in message
        # The refused session neither patched nor restored anything.
        assert without_bookkeeping(cluster.deployment("web")) == held
    finally:
        await first.close()
    await asyncio.to_thread(assert_restored, cluster, web)


async def test_purge_restores_a_deployment_a_crashed_session_left_patched(
    cluster: KubeCluster, web: dict[str, Any]
) -> None:
    namespace = cluster.namespace
    crashed = DevMode(
        cluster.api,
        namespace,
        dev_mode(dev_image()),
        container=None,
        owner="gone-host:/home/dev/web",
    )
    # Patched and never released, as a killed daemon leaves it.
    await asyncio.to_thread(crashed.engage)
    await asyncio.to_thread(cluster.wait_for_rollout, "web")
    assert_in_dev_mode(cluster.deployment("web"), "gone-host:/home/dev/web")
    assert await asyncio.to_thread(restore_patched_deployments, cluster.api, namespace) == ["web"]
    await asyncio.to_thread(assert_restored, cluster, web)
    # Nothing is left to restore, and restoring again changes nothing.
    assert await asyncio.to_thread(restore_patched_deployments, cluster.api, namespace) == []
