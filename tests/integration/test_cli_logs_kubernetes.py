"""`podlink logs` for a kubernetes target, as real processes against a real cluster.

Pods write their own lines to their container log, which only a kubelet keeps: these run on
the real cluster (scripts/test's second pass), where a container that crashed also leaves
the log of its previous instance.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_podlink as podlink
from tests.integration.test_cli import LineWatcher
from tests.kube_cluster import KubeCluster, RealCluster, needs_a_real_cluster, open_cluster

pytestmark = needs_a_real_cluster

# Two lines at once; a third once /tmp/go exists (a test makes it), then idle.
TALKER = (
    "echo one-$HOSTNAME; echo two-$HOSTNAME; "
    "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo three-$HOSTNAME; exec sleep infinity"
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KubeCluster]:
    opened = open_cluster(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def kube_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**env, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}


def workspace_for(folder: Path, cluster: KubeCluster, pod: str) -> Path:
    folder.mkdir()
    (folder / "podlink.yaml").write_text(
        "version: 1\n"
        + cluster.target_yaml(f"    pod: {pod}\n")
        + "sync:\n  - local: .\n    remote: /app\n"
    )
    return folder


@pytest.fixture
def talkers(cluster: KubeCluster) -> list[str]:
    """A Deployment of two pods that have each written two lines."""
    assert isinstance(cluster, RealCluster)
    container = {
        "name": "app",
        "image": cluster.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", TALKER],
    }
    cluster.create_deployment("talker", {"app": "talker"}, [container], replicas=2)
    pods = sorted(pod["metadata"]["name"] for pod in cluster.deployment_pods("talker"))
    for pod in pods:
        wait_for_log_line(cluster, pod, f"two-{pod}")
    return pods


def wait_for_log_line(cluster: KubeCluster, pod: str, line: str) -> None:
    """Until ``line`` is in the pod's log, read by following it (no polling)."""
    assert isinstance(cluster, RealCluster)
    response: Any = cluster.core.read_namespaced_pod_log(
        pod, cluster.namespace, follow=True, _preload_content=False, _request_timeout=(10, 60)
    )
    try:
        for each in response.stream(decode_content=True):
            if line.encode() in each:
                return
    finally:
        response.release_conn()
    pytest.fail(f"{line!r} never reached the log of pod {pod}")


def test_logs_print_one_pod_its_tail_and_every_pod_with_its_name(
    cluster: KubeCluster, talkers: list[str], kube_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = workspace_for(tmp_path / "workspace", cluster, "{selector: app=talker}")

    one = podlink("logs", cwd=workspace, env=kube_env)
    assert one.returncode == 0, one.stderr
    pod = one.stdout.split("\n")[0].removeprefix("one-")
    assert pod in talkers
    assert one.stdout == f"one-{pod}\ntwo-{pod}\n"

    last = podlink("logs", "--tail", "1", cwd=workspace, env=kube_env)
    assert last.returncode == 0, last.stderr
    assert last.stdout.endswith("\n") and last.stdout.count("\n") == 1
    assert last.stdout.startswith("two-")

    every = podlink("logs", "--all", cwd=workspace, env=kube_env)
    assert every.returncode == 0, every.stderr
    assert sorted(every.stdout.splitlines()) == sorted(
        f"[{name}] {word}-{name}" for name in talkers for word in ("one", "two")
    )


def test_logs_of_a_named_pod_with_all_cover_its_deployment(
    cluster: KubeCluster, talkers: list[str], kube_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = workspace_for(tmp_path / "workspace", cluster, f"{{name: {talkers[0]}}}")
    one = podlink("logs", cwd=workspace, env=kube_env)
    assert one.stdout == f"one-{talkers[0]}\ntwo-{talkers[0]}\n"

    every = podlink("logs", "--all", "--tail", "1", cwd=workspace, env=kube_env)
    assert every.returncode == 0, every.stderr
    assert sorted(every.stdout.splitlines()) == [f"[{name}] two-{name}" for name in talkers]


def test_logs_follow_every_pod_until_interrupted(
    cluster: KubeCluster, talkers: list[str], kube_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = workspace_for(tmp_path / "workspace", cluster, "{selector: app=talker}")
    following = subprocess.Popen(
        [sys.executable, "-m", "podlink", "logs", "--all", "-f"],
        cwd=workspace,
        env=kube_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        output = LineWatcher(following)
        for pod in talkers:
            output.wait_for(f"[{pod}] two-{pod}")
        for pod in talkers:
            cluster.shell(pod).check("touch", "/tmp/go")
        for pod in talkers:
            output.wait_for(f"[{pod}] three-{pod}")
        following.send_signal(signal.SIGINT)
        assert following.wait(timeout=30) == 0
    finally:
        if following.poll() is None:
            following.kill()
            following.wait()


def test_logs_of_a_crash_looping_pod_show_its_crash(
    cluster: KubeCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    assert isinstance(cluster, RealCluster)
    cluster.start_crashing_pod("crasher", {"app": "crasher"})
    workspace = workspace_for(tmp_path / "workspace", cluster, "{name: crasher}")
    # While the kubelet backs off, the container that crashed last is the pod's log.
    crashed = podlink("logs", cwd=workspace, env=kube_env)
    assert crashed.returncode == 0, crashed.stderr
    assert crashed.stdout == "ModuleNotFoundError: no module named app\n"


def test_logs_previous_show_the_instance_before_the_restart(
    cluster: KubeCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    assert isinstance(cluster, RealCluster)
    # Says which instance it is, and exits with an error once /tmp/go exists (which a
    # restarted container, with a new writable layer, does not have).
    script = (
        "echo instance-$(date +%s%N); while [ ! -e /tmp/go ]; do sleep 0.1; done; "
        "echo crashing >&2; exit 1"
    )
    container = {"name": "app", "image": cluster.image, "command": ["sh", "-c", script]}
    cluster.create_deployment("once", {"app": "once"}, [container], replicas=1)
    (pod,) = (each["metadata"]["name"] for each in cluster.deployment_pods("once"))
    wait_for_log_line(cluster, pod, "instance-")
    workspace = workspace_for(tmp_path / "workspace", cluster, "{selector: app=once}")
    first = podlink("logs", cwd=workspace, env=kube_env).stdout
    cluster.shell(pod).check("touch", "/tmp/go")
    wait_for_restart(cluster, pod)

    previous = podlink("logs", "--previous", cwd=workspace, env=kube_env)
    assert previous.returncode == 0, previous.stderr
    assert previous.stdout == first + "crashing\n"
    now = podlink("logs", cwd=workspace, env=kube_env)
    assert now.stdout.startswith("instance-") and now.stdout != first


def wait_for_restart(cluster: RealCluster, pod: str) -> None:
    """Until the pod's container runs again after its first restart (a watch, no polling)."""
    from kubernetes import watch

    events: Any = watch.Watch().stream(  # type: ignore[no-untyped-call]
        cluster.core.list_namespaced_pod,
        cluster.namespace,
        field_selector=f"metadata.name={pod}",
        timeout_seconds=120,
    )
    for event in events:
        (status,) = event["object"].status.container_statuses or [None]
        if status is not None and status.restart_count >= 1 and status.state.running:
            return
    pytest.fail(f"the container of pod {pod} did not run again after exiting")


def test_logs_previous_of_a_container_that_never_restarted_say_so(
    cluster: KubeCluster, talkers: list[str], kube_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = workspace_for(tmp_path / "workspace", cluster, f"{{name: {talkers[0]}}}")
    result = podlink("logs", "--previous", cwd=workspace, env=kube_env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"cannot read the log of container app of pod {talkers[0]}:" in result.stderr
    assert "previous terminated container" in result.stderr


def test_logs_name_a_selector_no_pod_matches(
    cluster: KubeCluster, kube_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = workspace_for(tmp_path / "workspace", cluster, "{selector: app=nobody}")
    result = podlink("logs", cwd=workspace, env=kube_env)
    assert result.returncode == 1
    assert "no pod in namespace" in result.stderr
    assert "matches the selector 'app=nobody'" in result.stderr


def test_a_pod_that_cannot_get_its_image_is_in_the_session_log_and_status(
    cluster: KubeCluster, talkers: list[str], kube_env: dict[str, str], tmp_path: Path
) -> None:
    assert isinstance(cluster, RealCluster)
    workspace = workspace_for(tmp_path / "workspace", cluster, "{selector: app=talker}")
    process = subprocess.Popen(
        [sys.executable, "-m", "podlink", "up", str(workspace)],
        cwd=workspace,
        env=kube_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = LineWatcher(process)
        output.wait_for("ready:", seconds=120)
        patch = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "podlink-test-missing:never",
                                "imagePullPolicy": "Never",
                            }
                        ]
                    }
                }
            }
        }
        cluster.apps.patch_namespaced_deployment("talker", cluster.namespace, patch)
        line = output.lines[output.wait_for("(ErrImageNeverPull)", seconds=120)]
        assert "does not have its image, and imagePullPolicy Never forbids pulling it" in line
        assert "podlink-test-missing:never" in line

        # The session's record follows its log line within a notification interval.
        deadline = time.monotonic() + 10
        while True:
            status = podlink("status", cwd=workspace, env=kube_env)
            problems = [each for each in status.stdout.splitlines() if each.startswith("  pod ")]
            if problems or time.monotonic() > deadline:
                break
        assert problems, status.stdout
        assert all("(ErrImageNeverPull)" in each for each in problems)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
