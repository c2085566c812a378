"""`podlink purge` for a kubernetes target with devMode, as real processes.

A `podlink up` in dev mode is killed the way a crash kills it, which leaves its Deployment
patched; `podlink purge` lists the Deployment and, with --yes, restores it: the Deployment
afterwards is the one that was there before `up`, field for field. The cluster is the API
server double or the real one PODLINK_TEST_KUBECONTEXT names (tests/kube_cluster.py); the
purge processes are pointed at no Docker Engine, so they clean up nothing there.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from podlink.targets.kubernetes.devmode import ORIGINAL_ANNOTATION, OWNER_ANNOTATION, session_owner
from tests.helpers import run_podlink as podlink
from tests.integration.test_cli import LineWatcher
from tests.integration.test_kubernetes_devmode import (
    WEB_CONTAINER,
    assert_restored,
    dev_workspace,
    without_bookkeeping,
)
from tests.kube_cluster import KubeCluster, open_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KubeCluster]:
    opened = open_cluster(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def kube_env(env: dict[str, str], cluster: KubeCluster, tmp_path: Path) -> dict[str, str]:
    return {
        **env,
        **cluster.environment(),
        "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
    }


def run_until_patched(workspace: Path, env: dict[str, str], cluster: KubeCluster) -> None:
    """`podlink up` until its dev pod is synced, then killed with SIGKILL, as a crash would."""
    process = subprocess.Popen(
        [sys.executable, "-m", "podlink", "up", str(workspace)],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        LineWatcher(process).wait_for("ready:", seconds=120)
        annotations = cluster.deployment("web")["metadata"]["annotations"]
        assert annotations[OWNER_ANNOTATION] == session_owner(workspace)
    finally:
        process.kill()
        process.wait()


def test_purge_restores_the_deployment_a_killed_session_left_in_dev_mode(
    cluster: KubeCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    original = cluster.create_deployment("web", {"app": "web"}, [WEB_CONTAINER], 2)
    workspace = dev_workspace(tmp_path / "workspace", cluster)
    run_until_patched(workspace, kube_env, cluster)
    patched = cluster.deployment("web")
    assert ORIGINAL_ANNOTATION in patched["metadata"]["annotations"]

    preview = podlink("purge", cwd=workspace, env=kube_env)
    assert preview.returncode == 1
    assert "pass --yes" in preview.stderr
    listed = (
        f"restore deployment web in namespace {cluster.namespace} "
        f"(patched by podlink dev mode for {session_owner(workspace)})"
    )
    assert f"  {listed}" in preview.stdout.splitlines()
    assert without_bookkeeping(cluster.deployment("web")) == without_bookkeeping(patched)

    result = podlink("purge", "--yes", cwd=workspace, env=kube_env)
    assert result.returncode == 0, result.stderr
    assert "cannot reach the Docker Engine" in result.stderr
    assert result.stdout.splitlines() == [
        f"restored deployment web in namespace {cluster.namespace}",
        "purged 0 containers, 0 images and 0 temporary files; restored 1 deployment",
    ]
    assert_restored(cluster, original)

    again = podlink("purge", "--yes", cwd=workspace, env=kube_env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "nothing to purge"


def test_purge_says_why_it_could_not_look_at_the_cluster(
    kube_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  kubernetes:\n    context: nowhere\n    pod: {selector: app=web}\n"
        "    devMode: {deployment: web}\nsync:\n  - local: .\n    remote: /app\n"
    )
    result = podlink("purge", "--yes", cwd=workspace, env=kube_env)
    assert result.returncode == 0, result.stderr
    assert "no context 'nowhere'" in result.stderr
    assert "Deployments left in dev mode were not looked for" in result.stderr
    assert result.stdout.strip() == "nothing to purge"
