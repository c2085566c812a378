"""Kubernetes dev mode against the API server double: patch, hold, restore exactly.

A Deployment with two replicas, args and every kind of probe is put into dev mode by a
session, held against a second one, and restored field for field; a Deployment left
patched by a session that died is restored by the purge function. Pods are real Docker
containers (tests/targets.py docker_client()).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config as kube_config

from podlink.config import (
    DevModeConfig,
    KubernetesTargetConfig,
    PodSelectorConfig,
    load_config,
)
from podlink.session import Session
from podlink.targets.base import TargetUnavailable
from podlink.targets.kubernetes import KubernetesTarget
from podlink.targets.kubernetes_devmode import (
    ORIGINAL_ANNOTATION,
    OWNER_ANNOTATION,
    DevMode,
    restore_patched_deployments,
    session_owner,
)
from tests.helpers import tree_listing
from tests.kube_double import KubeApiDouble
from tests.recording import RecordingListener
from tests.targets import TEST_IMAGE, DockerProbe, docker_client

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"
DEV_COMMAND = ["sleep", "infinity"]

pytestmark = pytest.mark.asyncio

WEB_CONTAINER: dict[str, Any] = {
    "name": "app",
    "image": "registry.example/web:1.4",
    "command": ["python3", "-m", "http.server"],
    "args": ["8080", "--bind", "127.0.0.1"],
    "env": [{"name": "APP_ENV", "value": "production"}],
    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 5},
    "livenessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 3},
    "startupProbe": {"exec": {"command": ["true"]}},
}


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    return tmp_path / "kubeconfig"


@pytest.fixture
def cluster(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeApiDouble]:
    double = KubeApiDouble(docker_client()).start()
    monkeypatch.setenv("KUBECONFIG", str(double.write_kubeconfig(kubeconfig)))
    yield double
    double.stop()


@pytest.fixture
def web(cluster: KubeApiDouble) -> dict[str, Any]:
    """The Deployment as it was created: what every restore must give back."""
    return cluster.create_deployment("web", {"app": "web"}, [WEB_CONTAINER], replicas=2)


def dev_mode(image: str | None = TEST_IMAGE) -> DevModeConfig:
    return DevModeConfig(deployment="web", command=tuple(DEV_COMMAND), image=image)


def dev_config(image: str | None = TEST_IMAGE) -> KubernetesTargetConfig:
    return KubernetesTargetConfig(
        pod=PodSelectorConfig(selector="app=web"), dev_mode=dev_mode(image)
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    (folder / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  kubernetes:\n    pod: {selector: app=web}\n"
        f"    devMode: {{deployment: web, command: {json.dumps(DEV_COMMAND)}, "
        f"image: {TEST_IMAGE}}}\n"
        "sync:\n  - local: .\n    remote: /app\n"
    )
    return folder


def app_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return next(each for each in containers if each["name"] == "app")


def assert_in_dev_mode(deployment: dict[str, Any], owner: str) -> None:
    assert deployment["spec"]["replicas"] == 1
    container = app_container(deployment)
    assert container["command"] == DEV_COMMAND
    assert "args" not in container
    assert container["image"] == TEST_IMAGE
    assert not {"readinessProbe", "livenessProbe", "startupProbe"} & set(container)
    # What dev mode does not touch stays as it was.
    assert container["env"] == WEB_CONTAINER["env"]
    annotations = deployment["metadata"]["annotations"]
    assert annotations[OWNER_ANNOTATION] == owner
    original = json.loads(annotations[ORIGINAL_ANNOTATION])
    assert original["replicas"] == 2 and original["fields"]["args"] == WEB_CONTAINER["args"]


def assert_restored(cluster: KubeApiDouble, original: dict[str, Any]) -> None:
    restored = cluster.deployment("web")
    assert restored["spec"] == original["spec"]
    assert "annotations" not in restored["metadata"]
    assert restored["metadata"]["labels"] == original["metadata"]["labels"]
    cluster.wait_for_rollout("web")
    pods = cluster.deployment_pods("web")
    assert len(pods) == 2
    assert all(pod.specs["app"]["args"] == WEB_CONTAINER["args"] for pod in pods)


def local_view(workspace: Path) -> dict[str, Any]:
    return {
        path: info
        for path, info in tree_listing(workspace).items()
        if not path.startswith(".podlink") and "__pycache__" not in path
    }


def remote_view(container: Any) -> dict[str, Any]:
    listing = DockerProbe(container).listing("/app")
    return {path: info for path, info in listing.items() if "__pycache__" not in path}


async def test_a_session_runs_in_the_patched_pod_and_restores_the_deployment(
    cluster: KubeApiDouble, web: dict[str, Any], workspace: Path
) -> None:
    listener = RecordingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        await listener.wait_for_state("ready", seconds=90)
        patched = cluster.deployment("web")
        # The session is named by this machine and the workspace folder.
        assert_in_dev_mode(patched, session_owner(load_config(workspace).folder))
        pods = cluster.deployment_pods("web")
        assert len(pods) == 1 and pods[0].specs["app"]["command"] == DEV_COMMAND
        (workspace / "app" / "edited.py").write_text("EDITED = True\n")
        await session.flush(20)
        assert remote_view(pods[0].container) == local_view(workspace)
    finally:
        await session.stop()
    await asyncio.to_thread(assert_restored, cluster, web)


async def test_a_deployment_held_by_another_session_is_refused(
    cluster: KubeApiDouble, web: dict[str, Any], tmp_path: Path
) -> None:
    first = KubernetesTarget(dev_config(image=None), folder=tmp_path / "first")
    await first.connect()
    try:
        held = cluster.deployment("web")
        assert app_container(held)["image"] == WEB_CONTAINER["image"]  # no image: unchanged
        # Reconnecting (after a pod replacement) keeps the true original, not the dev spec.
        await first.connect()
        assert cluster.deployment("web") == held
        second = KubernetesTarget(dev_config(), folder=tmp_path / "second")
        try:
            with pytest.raises(TargetUnavailable) as refused:
                await second.connect()
        finally:
            await second.close()
        message = str(refused.value)
        assert session_owner(tmp_path / "first") in message
        assert "podlink purge" in message and "deployment web" in message
        # The refused session neither patched nor restored anything.
        assert cluster.deployment("web") == held
    finally:
        await first.close()
    await asyncio.to_thread(assert_restored, cluster, web)


async def test_purge_restores_a_deployment_a_crashed_session_left_patched(
    cluster: KubeApiDouble, web: dict[str, Any], kubeconfig: Path
) -> None:
    api = kube_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        crashed = DevMode(api, "dev", dev_mode(), container=None, owner="gone-host:/home/dev/web")
        # Patched and never released, as a killed daemon leaves it.
        await asyncio.to_thread(crashed.engage)
        await asyncio.to_thread(cluster.wait_for_rollout, "web")
        assert_in_dev_mode(cluster.deployment("web"), "gone-host:/home/dev/web")
        assert await asyncio.to_thread(restore_patched_deployments, api, "dev") == ["web"]
        await asyncio.to_thread(assert_restored, cluster, web)
        # Nothing is left to restore, and restoring again changes nothing.
        assert await asyncio.to_thread(restore_patched_deployments, api, "dev") == []
    finally:
        api.close()
