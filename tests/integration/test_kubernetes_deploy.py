"""``deploy:`` on the real cluster: `podlink up` applies the manifests before it picks the pod.

Server-side apply, field managers and the API server's validation are the cluster's own:
these run on the real cluster (scripts/test's second pass), in a namespace of their own.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_podlink as podlink
from tests.helpers import start_podlink
from tests.integration.test_cli import LineWatcher
from tests.kube_cluster import KubeCluster, RealCluster, needs_a_real_cluster, open_cluster

pytestmark = needs_a_real_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RealCluster]:
    opened: KubeCluster = open_cluster(tmp_path)
    assert isinstance(opened, RealCluster)
    yield opened
    opened.close()


@pytest.fixture
def kube_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**env, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}


def deployment_yaml(image: str, replicas: int = 1) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
        - name: app
          image: {image}
          imagePullPolicy: IfNotPresent
          command: [sleep, infinity]
"""


CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-settings
data:
  MODE: dev
"""


def workspace_with(folder: Path, cluster: RealCluster, manifests: dict[str, str]) -> Path:
    (folder / "k8s").mkdir(parents=True)
    for name, text in manifests.items():
        (folder / "k8s" / name).write_text(text)
    (folder / "podlink.yaml").write_text(
        "version: 1\n"
        + cluster.target_yaml("    pod: {selector: app=web}\n")
        + "sync:\n  - local: .\n    remote: /app\n"
        + "deploy:\n  manifests: [k8s/]\n"
    )
    return folder


def test_up_deploys_then_works_in_the_new_pod_and_a_second_apply_changes_nothing(
    cluster: RealCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = workspace_with(
        tmp_path / "workspace",
        cluster,
        {"1-settings.yaml": CONFIG_MAP, "2-web.yaml": deployment_yaml("python:replace-me")},
    )
    with (workspace / "podlink.yaml").open("a") as config:
        config.write(f"  image: {{name: python, replace: {cluster.image}}}\n")
    (workspace / "hello.txt").write_text("hi\n")

    process = start_podlink("up", str(workspace), cwd=workspace, env=kube_env)
    try:
        output = LineWatcher(process)
        output.wait_for("applied configmap/web-settings", seconds=60)
        output.wait_for("applied deployment/web", seconds=60)
        output.wait_for("deployment/web: 1/1 updated, 1/1 available", seconds=180)
        ready = output.lines[output.wait_for("ready:", seconds=120)]
        pods = cluster.deployment_pods("web")
        assert len(pods) == 1
        pod = pods[0]["metadata"]["name"]
        assert f"-> {pod} " in ready
        assert cluster.shell(pod).check("cat", "/app/hello.txt") == b"hi\n"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)

    deployment = cluster.deployment("web")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == cluster.image
    managers = {(m["manager"], m["operation"]) for m in deployment["metadata"]["managedFields"]}
    assert ("podlink", "Apply") in managers
    settings = cluster.core.read_namespaced_config_map("web-settings", cluster.namespace)
    assert settings.data == {"MODE": "dev"}

    again = podlink("deploy", cwd=workspace, env=kube_env)
    assert again.returncode == 0, again.stderr
    assert "applied deployment/web" in again.stderr
    unchanged = cluster.deployment("web")
    assert unchanged["metadata"]["generation"] == deployment["metadata"]["generation"]
    assert unchanged["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]
    assert [p["metadata"]["name"] for p in cluster.deployment_pods("web")] == [pod]


def test_a_manifest_that_does_not_parse_is_named_with_its_line(
    cluster: RealCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    broken = CONFIG_MAP + "---\nkind: Deployment\nmetadata:\n  name: web: bad\n"
    workspace = workspace_with(tmp_path / "workspace", cluster, {"web.yaml": broken})

    result = podlink("up", cwd=workspace, env=kube_env)

    assert result.returncode == 2, result.stderr
    assert "k8s/web.yaml:10: invalid YAML" in result.stderr
    assert "web-settings" not in {
        m.metadata.name for m in cluster.core.list_namespaced_config_map(cluster.namespace).items
    }

    deploy = podlink("deploy", cwd=workspace, env=kube_env)
    assert deploy.returncode == 2
    assert "k8s/web.yaml:10: invalid YAML" in deploy.stderr


def test_an_object_the_server_refuses_is_named_with_the_reason(
    cluster: RealCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = workspace_with(
        tmp_path / "workspace",
        cluster,
        {"web.yaml": CONFIG_MAP + "---\n" + deployment_yaml(cluster.image, replicas=-1)},
    )

    result = podlink("up", cwd=workspace, env=kube_env, timeout=180)

    assert result.returncode == 1, result.stderr
    message = result.stderr
    assert "applying Deployment/web (k8s/web.yaml:8)" in message
    assert "the API server refused it (422)" in message
    assert "spec.replicas: Invalid value: -1" in message
    # What came before it in the file was applied.
    assert cluster.core.read_namespaced_config_map("web-settings", cluster.namespace).data


def test_deploy_without_a_deploy_section_says_so(
    cluster: RealCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "podlink.yaml").write_text(
        "version: 1\n" + cluster.target_yaml("    pod: {selector: app=web}\n")
    )
    result = podlink("deploy", cwd=workspace, env=kube_env)
    assert result.returncode == 2
    assert "no deploy: section" in result.stderr


def test_a_refusal_by_rbac_names_the_verb_and_resource_to_grant(
    cluster: RealCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    reader = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
    kubeconfig = cluster.service_account_kubeconfig("reader", reader, tmp_path)
    workspace = workspace_with(tmp_path / "workspace", cluster, {"settings.yaml": CONFIG_MAP})

    result = podlink("deploy", cwd=workspace, env={**kube_env, "KUBECONFIG": str(kubeconfig)})

    assert result.returncode == 1, result.stderr
    assert "applying ConfigMap/web-settings (k8s/settings.yaml:1): forbidden" in result.stderr
    assert "grants verb 'patch' on resource 'configmaps'" in result.stderr
    assert f"-n {cluster.namespace}" in result.stderr
