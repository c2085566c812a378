"""``deploy:`` with kustomizations and helm charts: rendered by their tools, then applied.

What the cluster holds after ``podlink deploy`` is read back on the real cluster (the
second pass of scripts/test). The errors raised before anything is sent to a cluster (a
missing helm, a kustomization that does not render, a kustomization hidden in a folder) are
checked against whichever cluster the run has, the API server double by default.

helm is optional: the tests that render a chart skip where no ``helm`` is on PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_podlink as podlink
from tests.integration.test_kubernetes_deploy import deployment_yaml
from tests.kube_cluster import KubeCluster, RealCluster, needs_a_real_cluster, open_cluster

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not on PATH: kustomizations render with `kubectl kustomize`, which "
    "podlink calls; install kubectl (or kustomize) to run these tests",
)
needs_helm = pytest.mark.skipif(
    shutil.which("helm") is None,
    reason="helm is not installed on this machine; deploy.helm is optional and needs helm 3 "
    "on PATH (the missing-helm message is tested everywhere)",
)


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


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def workspace(folder: Path, cluster: KubeCluster, deploy: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "podlink.yaml").write_text(
        "version: 1\n"
        + cluster.target_yaml("    pod: {selector: app=web}\n")
        + "sync:\n  - local: .\n    remote: /app\n"
        + deploy
    )
    return folder


OVERLAY = """\
resources: [../../base]
replicas:
  - name: web
    count: 2
commonAnnotations:
  podlink.test/overlay: dev
"""


def kustomize_tree(folder: Path, image: str) -> None:
    write(
        folder,
        {
            "k8s/base/kustomization.yaml": "resources: [web.yaml]\n",
            "k8s/base/web.yaml": deployment_yaml(image),
            "k8s/overlays/dev/kustomization.yaml": OVERLAY,
        },
    )


@needs_a_real_cluster
@needs_kubectl
def test_an_overlay_is_rendered_applied_rolled_out_and_purged(
    cluster: KubeCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    assert isinstance(cluster, RealCluster)
    folder = workspace(
        tmp_path / "workspace",
        cluster,
        "deploy:\n  manifests: [k8s/overlays/dev]\n"
        f"  image: {{name: python, replace: {cluster.image}}}\n",
    )
    kustomize_tree(folder, "python:replace-me")

    result = podlink("deploy", cwd=folder, env=kube_env, timeout=240)

    assert result.returncode == 0, result.stderr
    assert "applied deployment/web" in result.stderr
    assert "deployment/web: 2/2 updated, 2/2 available" in result.stderr
    deployment = cluster.deployment("web")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["annotations"]["podlink.test/overlay"] == "dev"
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["podlink.test/overlay"] == "dev"
    assert template["spec"]["containers"][0]["image"] == cluster.image
    managers = {(m["manager"], m["operation"]) for m in deployment["metadata"]["managedFields"]}
    assert ("podlink", "Apply") in managers
    assert len(cluster.deployment_pods("web")) == 2

    purge = podlink("purge", "--yes", cwd=folder, env=kube_env, timeout=180)

    assert purge.returncode == 0, purge.stderr
    names = {
        d.metadata.name for d in cluster.apps.list_namespaced_deployment(cluster.namespace).items
    }
    assert "web" not in names


@needs_a_real_cluster
@needs_helm
def test_a_helm_release_is_rendered_with_values_and_set_then_applied(
    cluster: KubeCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    assert isinstance(cluster, RealCluster)
    folder = workspace(
        tmp_path / "workspace",
        cluster,
        "deploy:\n  helm:\n    - chart: chart/\n      release: demo\n"
        "      values: [values-dev.yaml]\n      set: {replicaCount: 2}\n",
    )
    template = deployment_yaml("{{ .Values.image }}").replace(
        "replicas: 1", "replicas: {{ .Values.replicaCount }}"
    )
    write(
        folder,
        {
            "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
            "chart/values.yaml": "replicaCount: 1\nimage: python:replace-me\n",
            "chart/templates/web.yaml": template.replace(
                "name: web\n", "name: {{ .Release.Name }}-web\n", 1
            ),
            "values-dev.yaml": f"image: {cluster.image}\n",
        },
    )

    result = podlink("deploy", cwd=folder, env=kube_env, timeout=240)

    assert result.returncode == 0, result.stderr
    assert "deployment/demo-web: 2/2 updated, 2/2 available" in result.stderr
    deployment = cluster.deployment("demo-web")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == cluster.image


def test_without_helm_on_path_a_helm_release_says_what_to_install(
    cluster: KubeCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    folder = workspace(
        tmp_path / "workspace",
        cluster,
        "deploy:\n  helm:\n    - {chart: chart/, release: demo}\n",
    )
    write(folder, {"chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n"})
    no_tools = tmp_path / "no-tools"
    no_tools.mkdir()
    # Only the Python that runs podlink: no helm, whatever this machine has installed.
    (no_tools / "python").symlink_to(sys.executable)

    result = podlink("deploy", cwd=folder, env={**kube_env, "PATH": str(no_tools)})

    assert result.returncode == 2, result.stderr
    assert "deploy.helm release 'demo' needs helm, and there is no helm on PATH" in result.stderr
    assert "install helm 3" in result.stderr
    assert "chart" in result.stderr


def test_a_folder_that_hides_a_kustomization_names_the_overlay_to_list(
    cluster: KubeCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    folder = workspace(tmp_path / "workspace", cluster, "deploy:\n  manifests: [k8s/]\n")
    kustomize_tree(folder, "python:3")

    result = podlink("deploy", cwd=folder, env=kube_env)

    assert result.returncode == 2, result.stderr
    assert "the folder k8s/ holds the kustomization k8s/base" in result.stderr
    assert "list k8s/base (the overlay to deploy) in deploy.manifests" in result.stderr


@needs_kubectl
def test_a_kustomization_that_does_not_render_gives_the_tools_reason(
    cluster: KubeCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    folder = workspace(
        tmp_path / "workspace", cluster, "deploy:\n  manifests: [k8s/overlays/dev]\n"
    )
    write(folder, {"k8s/overlays/dev/kustomization.yaml": OVERLAY})

    result = podlink("deploy", cwd=folder, env=kube_env)

    assert result.returncode == 2, result.stderr
    assert os.path.join("k8s", "overlays", "dev", "kustomization.yaml") in result.stderr
    assert "`kubectl kustomize` failed:" in result.stderr
    assert "base" in result.stderr
