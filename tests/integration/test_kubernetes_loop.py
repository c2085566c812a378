"""The whole loop on the real cluster: one `podlink up` builds, pushes, deploys and serves.

The example examples/kube-web (a Dockerfile, a Deployment) goes from nothing to serving
through a forward; its image goes through a real registry on loopback (scripts/registry-env)
that the cluster's containerd pulls from. A second `up` with nothing changed builds,
pushes and rolls out nothing; `podlink purge` leaves the namespace and the registry as they
were.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_podlink as podlink
from tests.helpers import start_podlink
from tests.integration.test_cli import LineWatcher
from tests.kube_cluster import KubeCluster, RealCluster, needs_a_real_cluster, open_cluster

pytestmark = needs_a_real_cluster

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPOSITORY_ROOT / "examples" / "kube-web"
SERVE_SECONDS = 30.0


@pytest.fixture
def registry() -> str:
    """The loopback registry's address (started if it does not answer)."""
    done = subprocess.run(
        [str(REPOSITORY_ROOT / "scripts" / "registry-env")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RealCluster]:
    opened: KubeCluster = open_cluster(tmp_path)
    assert isinstance(opened, RealCluster)
    yield opened
    opened.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def example_workspace(folder: Path, cluster: RealCluster, registry: str, port: int) -> Path:
    """A fresh copy of the example, pointed at the test cluster, its registry and its image."""
    shutil.copytree(EXAMPLE, folder)
    repository = f"{registry}/kube-web-{cluster.namespace}"
    manifest = folder / "k8s" / "web.yaml"
    manifest.write_text(manifest.read_text().replace("127.0.0.1:5000/kube-web", repository))
    (folder / "podlink.yaml").write_text(
        "version: 1\n"
        + cluster.target_yaml("    pod: {selector: app=kube-web}\n    container: web\n")
        + f"build:\n  image:\n    name: {repository}\n    args: {{BASE: {cluster.image}}}\n"
        + "deploy:\n  manifests: [k8s/]\n"
        + "sync:\n  - local: .\n    remote: /app\n    exclude: [k8s/, Dockerfile]\n"
        + f'ports: ["{port}:8000"]\n'
    )
    return folder


def namespace_objects(cluster: RealCluster) -> set[tuple[str, str]]:
    """Every object of the kinds a deploy makes or causes, as (kind, name)."""
    apps = cluster.apps
    found: set[tuple[str, str]] = set()
    for kind, lister in (
        ("Deployment", apps.list_namespaced_deployment),
        ("ReplicaSet", apps.list_namespaced_replica_set),
        ("Pod", cluster.core.list_namespaced_pod),
        ("ConfigMap", cluster.core.list_namespaced_config_map),
        ("Service", cluster.core.list_namespaced_service),
        ("Secret", cluster.core.list_namespaced_secret),
        ("ServiceAccount", cluster.core.list_namespaced_service_account),
    ):
        for item in lister(cluster.namespace).items:
            found.add((kind, item.metadata.name))
    return found


def wait_for_answer(port: int, wanted: str) -> str:
    """GET / through the forward until it answers ``wanted`` (or time runs out)."""
    deadline = time.monotonic() + SERVE_SECONDS
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                last = response.read().decode()
        except OSError as error:
            last = str(error)
        if last.strip() == wanted:
            return last
        time.sleep(0.1)
    raise AssertionError(f"the forward answered {last!r}, not {wanted!r}")


def registry_tags(registry: str, repository: str) -> list[str]:
    name = repository.removeprefix(registry + "/")
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{name}/tags/list", timeout=5) as reply:
            return list(json.load(reply).get("tags") or [])
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise


def test_one_up_builds_pushes_deploys_and_serves_then_purge_leaves_nothing(
    cluster: RealCluster, registry: str, env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    workspace = example_workspace(tmp_path / "kube-web", cluster, registry, port)
    repository = f"{registry}/kube-web-{cluster.namespace}"
    before = namespace_objects(cluster)

    process = start_podlink("up", str(workspace), cwd=workspace, env=env)
    try:
        output = LineWatcher(process)
        output.wait_for(f"building {repository}:podlink-", seconds=60)
        output.wait_for(f"pushed {repository}:podlink-", seconds=300)
        output.wait_for("applied deployment/kube-web", seconds=60)
        output.wait_for("ready:", seconds=300)
        assert wait_for_answer(port, "hello from kube-web")
        (workspace / "greeting.py").write_text('def text() -> str:\n    return "saved"\n')
        assert wait_for_answer(port, "saved")
        # What a running session uses stays, unless --all.
        kept = podlink("purge", "--yes", "--folder", str(workspace), cwd=workspace, env=env)
        assert kept.returncode == 0, kept.stdout + kept.stderr
        assert f"kept deployment/kube-web in namespace {cluster.namespace}: the running" in (
            kept.stdout
        )
        assert cluster.deployment("kube-web")["metadata"]["name"] == "kube-web"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)

    image = cluster.deployment("kube-web")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(f"{repository}:podlink-")
    assert registry_tags(registry, repository) == [image.rsplit(":", 1)[1]]
    logs = podlink("logs", str(workspace), cwd=workspace, env=env)
    assert logs.returncode == 0, logs.stderr
    assert "serving on port 8000" in logs.stdout
    assert "GET / -> 200" in logs.stdout
    generation = cluster.deployment("kube-web")["metadata"]["generation"]

    # Nothing changed but greeting.py, which the image does not hold again: same tag.
    (workspace / "greeting.py").write_text((EXAMPLE / "greeting.py").read_text())
    process = start_podlink("up", str(workspace), cwd=workspace, env=env)
    try:
        output = LineWatcher(process)
        ready = output.wait_for("ready:", seconds=120)
        text = "\n".join(output.lines[:ready])
        assert f"image {image} is up to date" in text
        assert f"{image} is in the registry already" in text
        assert "building" not in text
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert cluster.deployment("kube-web")["metadata"]["generation"] == generation

    purged = podlink("purge", "--yes", "--folder", str(workspace), cwd=workspace, env=env)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert f"deleted deployment/kube-web in namespace {cluster.namespace}" in purged.stdout
    assert namespace_objects(cluster) == before
    assert registry_tags(registry, repository) == []
    images = subprocess.run(
        ["docker", "images", "-q", repository], capture_output=True, text=True, check=True
    )
    assert images.stdout.strip() == ""


CONTAINERD_SOCKET = Path.home() / ".cache" / "podlink-test" / "kube" / "state" / "containerd.sock"


def containerd_images() -> set[str]:
    listed = subprocess.run(
        ["ctr", "--address", str(CONTAINERD_SOCKET), "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(listed.stdout.split())


def test_without_a_registry_the_image_is_imported_into_the_nodes_containerd(
    cluster: RealCluster, env: dict[str, str], tmp_path: Path
) -> None:
    if not CONTAINERD_SOCKET.exists() or shutil.which("ctr") is None:
        pytest.skip("needs the containerd of the cluster scripts/kube-env starts, and ctr")
    port = free_port()
    workspace = example_workspace(tmp_path / "kube-web", cluster, "unused", port)
    repository = f"kube-web-{cluster.namespace}"
    manifest = workspace / "k8s" / "web.yaml"
    manifest.write_text(manifest.read_text().replace(f"unused/{repository}", repository))
    config = (workspace / "podlink.yaml").read_text()
    (workspace / "podlink.yaml").write_text(
        config.replace(
            f"name: unused/{repository}\n",
            f"name: {repository}\n    deliver: containerd\n"
            f"    containerdSocket: {CONTAINERD_SOCKET}\n",
        )
    )

    process = start_podlink("up", str(workspace), cwd=workspace, env=env)
    try:
        output = LineWatcher(process)
        output.wait_for(f"imported {repository}:podlink-", seconds=300)
        output.wait_for("ready:", seconds=300)
        assert wait_for_answer(port, "hello from kube-web")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    imported = {name for name in containerd_images() if repository in name}
    assert len(imported) == 1, imported

    purged = podlink("purge", "--yes", "--folder", str(workspace), cwd=workspace, env=env)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not {name for name in containerd_images() if repository in name}


def test_a_failed_build_step_names_its_dockerfile_line_and_nothing_is_deployed(
    cluster: RealCluster, registry: str, env: dict[str, str], tmp_path: Path
) -> None:
    workspace = example_workspace(tmp_path / "kube-web", cluster, registry, free_port())
    dockerfile = workspace / "Dockerfile"
    lines = dockerfile.read_text().splitlines()
    lines.insert(5, "RUN echo broken step && false")
    dockerfile.write_text("\n".join(lines) + "\n")

    up = podlink("up", str(workspace), cwd=workspace, env=env, timeout=300)

    assert up.returncode != 0
    assert f"{dockerfile}:6: the image build failed" in up.stderr + up.stdout
    assert "returned a non-zero code: 1" in up.stderr + up.stdout
    assert cluster.apps.list_namespaced_deployment(cluster.namespace).items == []


def test_a_registry_that_does_not_answer_is_named_with_what_to_check(
    cluster: RealCluster, env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{unused.getsockname()[1]}"
    workspace = example_workspace(tmp_path / "kube-web", cluster, nobody, free_port())

    up = podlink("up", str(workspace), cwd=workspace, env=env, timeout=300)

    output = up.stderr + up.stdout
    assert up.returncode != 0
    assert f"pushing {nobody}/kube-web-{cluster.namespace}:podlink-" in output
    assert f"to {nobody} failed:" in output
    assert "is the registry running, and is its address right in build.image.name?" in output
    assert cluster.apps.list_namespaced_deployment(cluster.namespace).items == []
    purged = podlink("purge", "--yes", "--folder", str(workspace), cwd=workspace, env=env)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert "removed image" in purged.stdout


def test_in_dev_mode_podlink_runs_the_app_in_the_deployed_pod_and_purge_undoes_both(
    cluster: RealCluster, registry: str, env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    workspace = example_workspace(tmp_path / "kube-web", cluster, registry, port)
    config = (workspace / "podlink.yaml").read_text()
    (workspace / "podlink.yaml").write_text(
        config.replace(
            "    container: web\n", "    container: web\n    devMode: {deployment: kube-web}\n"
        )
        + "run: {command: [python3, -u, server.py]}\n"
    )
    before = namespace_objects(cluster)

    process = start_podlink("up", str(workspace), cwd=workspace, env=env)
    try:
        output = LineWatcher(process)
        output.wait_for("applied deployment/kube-web", seconds=300)
        output.wait_for("ready:", seconds=300)
        # The app podlink runs answers, not the image's: the Deployment runs sleep now.
        output.wait_for("serving on port 8000", seconds=60)
        template = cluster.deployment("kube-web")["spec"]["template"]["spec"]["containers"][0]
        assert template["command"] == ["sleep", "infinity"]
        assert wait_for_answer(port, "hello from kube-web")
        (workspace / "greeting.py").write_text('def text() -> str:\n    return "dev"\n')
        assert wait_for_answer(port, "dev")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)

    restored = cluster.deployment("kube-web")["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in restored
    assert restored["image"].startswith(f"{registry}/kube-web-{cluster.namespace}:podlink-")
    purged = podlink("purge", "--yes", "--folder", str(workspace), cwd=workspace, env=env)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert namespace_objects(cluster) == before
