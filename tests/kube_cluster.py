"""The cluster the Kubernetes tests run against: the API server double, or a real cluster.

By default every Kubernetes test talks to the in-repo double (tests/kube_double), whose pods
are Docker containers. When ``PODLINK_TEST_KUBECONTEXT`` names a context of the kubeconfig
(``KUBECONFIG`` or ``~/.kube/config``), the tests that make sense on any cluster run against
that cluster instead: each cluster fixture creates a namespace ``podlink-test-<random>`` and
deletes it afterwards, and pods there run ``sleep infinity`` in the image
``PODLINK_TEST_KUBEIMAGE`` names (the Docker tests' image by default: load it into the
cluster first, with ``kind load docker-image`` or ``minikube image load``). Tests that need
what only the double can do (deny a verb, compact the watch cache, stop the API server) are
marked ``needs_the_double`` and skip on a real cluster.

Both kinds are driven through the official client, as a developer's kubectl would be, except
for the double's own test controls (``DoubleCluster.double``).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import pytest
from kubernetes import client, watch
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from podlink.config import KubernetesTargetConfig, PodSelectorConfig
from tests.kube_double import KubeApiDouble
from tests.targets import TEST_IMAGE, TEST_LABEL

KUBECONTEXT_VARIABLE = "PODLINK_TEST_KUBECONTEXT"
IMAGE_VARIABLE = "PODLINK_TEST_KUBEIMAGE"
READY_SECONDS = 180
EXEC_SECONDS = 120
POLL_SECONDS = 0.5
# The client's loaders and Watch are untyped.
_loaders: Any = kube_config
_watch: Any = watch


def real_context() -> str | None:
    """The kubeconfig context of a real cluster to test against, if one is named."""
    return os.environ.get(KUBECONTEXT_VARIABLE) or None


def pod_image() -> str:
    """The image of the test pods (the double runs its own whatever a pod names)."""
    return os.environ.get(IMAGE_VARIABLE) or TEST_IMAGE


needs_a_real_cluster = pytest.mark.skipif(
    real_context() is None,
    reason=(
        f"needs a real cluster: scripts/test runs it in its second pass, against the cluster "
        f"scripts/kube-env starts ({KUBECONTEXT_VARIABLE}=podlink-test)"
    ),
)
CONTROL_VARIABLE = "PODLINK_TEST_KUBE_ENV"


def cluster_control() -> Path:
    """scripts/kube-env of the cluster under test, which can stop and start its parts."""
    script = os.environ.get(CONTROL_VARIABLE)
    if not script:
        pytest.skip(
            f"needs the cluster scripts/kube-env started ({CONTROL_VARIABLE} names that "
            "script): only it can stop and start the API server"
        )
    return Path(script)


needs_the_double = pytest.mark.skipif(
    real_context() is not None,
    reason=f"needs the API server double ({KUBECONTEXT_VARIABLE} names a real cluster)",
)


class KubeCluster(Protocol):
    """What a test needs from either kind of cluster. Every method blocks."""

    context: str
    namespace: str
    api: Any  # kubernetes.client.ApiClient

    def environment(self) -> dict[str, str]:
        """What a podlink process needs in its environment to reach the cluster."""

    def target_config(self, pod: PodSelectorConfig, **fields: Any) -> KubernetesTargetConfig:
        """A target configuration for this cluster's context and namespace."""

    def target_yaml(self, lines: str) -> str:
        """The ``target:`` block of a podlink.yaml: ``lines`` (indented by four, each ending
        in a newline) under ``kubernetes:``, with what reaches this cluster."""

    def start_pod(
        self, name: str, labels: dict[str, str], containers: tuple[str, ...] = ("app",)
    ) -> None:
        """A pod whose containers run ``sleep infinity``; returns once it is Ready."""

    def delete_pod(self, name: str) -> None: ...

    def replace_pod(self, name: str) -> str:
        """What a ReplicaSet does when its pod is deleted: a new pod with the same labels.
        Its name."""

    def shell(self, pod: str, container: str = "app") -> PodShell: ...

    def create_deployment(
        self, name: str, labels: dict[str, str], containers: list[dict[str, Any]], replicas: int
    ) -> dict[str, Any]:
        """A Deployment (Recreate strategy) of ``containers``; returns its JSON as served
        once its pods run."""

    def deployment(self, name: str) -> dict[str, Any]:
        """The Deployment's JSON as the API serves it."""

    def wait_for_rollout(self, name: str) -> None:
        """Until the Deployment's current template runs in all its replicas."""

    def deployment_pods(self, name: str) -> list[dict[str, Any]]:
        """The JSON of the Deployment's pods that are not being deleted."""

    def close(self) -> None: ...


class DoubleCluster:
    """The API server double, reached through a kubeconfig written for it. ``double`` has
    the controls only a double has."""

    context = "double"

    def __init__(self, double: KubeApiDouble, folder: Path) -> None:
        self.double = double
        self.namespace = double.namespace
        self.kubeconfig = double.write_kubeconfig(folder / "kubeconfig")
        self.api = _loaders.new_client_from_config(
            config_file=str(self.kubeconfig), context=self.context
        )

    def environment(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def target_config(self, pod: PodSelectorConfig, **fields: Any) -> KubernetesTargetConfig:
        # The double's kubeconfig is the current one: its context and namespace are defaults.
        return KubernetesTargetConfig(pod=pod, **fields)

    def target_yaml(self, lines: str) -> str:
        return f"target:\n  kubernetes:\n{lines}"

    def start_pod(
        self, name: str, labels: dict[str, str], containers: tuple[str, ...] = ("app",)
    ) -> None:
        self.double.run_pod(name, labels, containers)

    def delete_pod(self, name: str) -> None:
        if (self.namespace, name) in self.double.pods:
            self.double.delete_pod(name)

    def replace_pod(self, name: str) -> str:
        return self.double.replace_pod(name).name

    def shell(self, pod: str, container: str = "app") -> PodShell:
        return PodShell(self.api, self.namespace, pod, container)

    def create_deployment(
        self, name: str, labels: dict[str, str], containers: list[dict[str, Any]], replicas: int
    ) -> dict[str, Any]:
        return self.double.create_deployment(name, labels, containers, replicas=replicas)

    def deployment(self, name: str) -> dict[str, Any]:
        return self.double.deployment(name)

    def wait_for_rollout(self, name: str) -> None:
        self.double.wait_for_rollout(name)

    def deployment_pods(self, name: str) -> list[dict[str, Any]]:
        with self.double.lock:
            return [pod.to_json() for pod in self.double.deployment_pods(name)]

    def close(self) -> None:
        self.api.close()
        self.double.stop()


class RealCluster:
    """A real cluster: a namespace of its own, deleted by ``close``."""

    def __init__(self, context: str) -> None:
        self.context = context
        self.image = pod_image()
        try:
            self.api = _loaders.new_client_from_config(context=context)
        except Exception as error:
            pytest.fail(f"{KUBECONTEXT_VARIABLE}={context}: cannot use that context: {error}")
        self.namespace = f"podlink-test-{uuid.uuid4().hex[:8]}"
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.core.create_namespace(
            {"metadata": {"name": self.namespace, "labels": {TEST_LABEL: "1"}}}
        )
        self._wait_for_service_account()

    def _wait_for_service_account(self) -> None:
        """Pods in a namespace just made are refused (500 "No API token found for service
        account default", or the account not found) until the controller-manager made the
        namespace's default service account."""
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                self.core.read_namespaced_service_account("default", self.namespace)
                return
            except ApiException as error:
                if error.status != 404 or time.monotonic() > deadline:
                    pytest.fail(
                        f"namespace {self.namespace} got no default service account in "
                        f"{READY_SECONDS} s: is the controller-manager running? ({error.reason})"
                    )
            time.sleep(POLL_SECONDS)

    def environment(self) -> dict[str, str]:
        return {}  # the developer's own kubeconfig, with the context named in podlink.yaml

    def target_config(self, pod: PodSelectorConfig, **fields: Any) -> KubernetesTargetConfig:
        return KubernetesTargetConfig(
            **{"context": self.context, "namespace": self.namespace, "pod": pod, **fields}
        )

    def target_yaml(self, lines: str) -> str:
        return (
            "target:\n  kubernetes:\n"
            f"    context: {self.context}\n    namespace: {self.namespace}\n{lines}"
        )

    def start_pod(
        self, name: str, labels: dict[str, str], containers: tuple[str, ...] = ("app",)
    ) -> None:
        manifest = pod_manifest(name, labels, self.image, containers)
        self.core.create_namespaced_pod(self.namespace, manifest)
        self._wait_until_ready(name)

    def _wait_until_ready(self, name: str) -> None:
        events = _watch.Watch().stream(
            self.core.list_namespaced_pod,
            self.namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=READY_SECONDS,
        )
        last = None
        for event in events:
            last = event["object"]
            if is_ready(last):
                return
            self._fail_on_image(name, waiting_reason(last))
        phase = last.status.phase if last is not None and last.status else "unknown"
        pytest.fail(f"pod {name} was not Ready after {READY_SECONDS} s (phase {phase})")

    def _fail_on_image(self, pod: str, waiting: str | None) -> None:
        if waiting in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"):
            pytest.fail(
                f"pod {pod} cannot get image {self.image} ({waiting}): load it into the "
                f"cluster (kind load docker-image / minikube image load) or set {IMAGE_VARIABLE}"
            )

    def start_crashing_pod(self, name: str, labels: dict[str, str]) -> None:
        """A pod whose container exits at once with an error; returns once the kubelet backs
        off from restarting it (CrashLoopBackOff)."""
        manifest = pod_manifest(name, labels, self.image)
        manifest["spec"]["containers"][0]["command"] = [
            "sh",
            "-c",
            "echo 'ModuleNotFoundError: no module named app' >&2; exit 3",
        ]
        self.core.create_namespaced_pod(self.namespace, manifest)
        events = _watch.Watch().stream(
            self.core.list_namespaced_pod,
            self.namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=READY_SECONDS,
        )
        for event in events:
            if waiting_reason(event["object"]) == "CrashLoopBackOff":
                return
        pytest.fail(f"pod {name} did not reach CrashLoopBackOff in {READY_SECONDS} s")

    def service_account_kubeconfig(
        self, name: str, rules: list[dict[str, Any]], folder: Path
    ) -> Path:
        """A kubeconfig that authenticates with a bearer token of a new ServiceAccount
        bound to a Role of ``rules`` in the test namespace (real RBAC)."""
        rbac = client.RbacAuthorizationV1Api(self.api)
        self.core.create_namespaced_service_account(self.namespace, {"metadata": {"name": name}})
        rbac.create_namespaced_role(self.namespace, {"metadata": {"name": name}, "rules": rules})
        rbac.create_namespaced_role_binding(
            self.namespace,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": self.namespace}],
            },
        )
        request = self.core.create_namespaced_service_account_token(
            name, self.namespace, {"spec": {"expirationSeconds": 3600}}
        )
        configuration = self.api.configuration
        ca = Path(configuration.ssl_ca_cert).read_text() if configuration.ssl_ca_cert else ""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "token",
                    "cluster": {
                        "server": configuration.host,
                        "certificate-authority-data": base64.b64encode(ca.encode()).decode(),
                    },
                }
            ],
            "users": [{"name": name, "user": {"token": request.status.token}}],
            "contexts": [
                {
                    "name": self.context,
                    "context": {"cluster": "token", "user": name, "namespace": self.namespace},
                }
            ],
            "current-context": self.context,
        }
        path = folder / f"{name}.kubeconfig"
        path.write_text(json.dumps(config))
        return path

    def grant(self, role: str, rules: list[dict[str, Any]]) -> None:
        """Add ``rules`` to the Role ``role`` made by ``service_account_kubeconfig``."""
        rbac = client.RbacAuthorizationV1Api(self.api)
        current = rbac.read_namespaced_role(role, self.namespace)
        rbac.patch_namespaced_role(
            role,
            self.namespace,
            {"rules": [self.api.sanitize_for_serialization(r) for r in current.rules] + rules},
        )

    def delete_pod(self, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        except ApiException as error:
            if error.status != 404:
                raise

    def replace_pod(self, name: str) -> str:
        old = self.core.read_namespaced_pod(name, self.namespace)
        containers = tuple(each.name for each in old.spec.containers)
        labels = {k: v for k, v in (old.metadata.labels or {}).items() if k != TEST_LABEL}
        self.delete_pod(name)
        replacement = f"{name.rsplit('-', 1)[0]}-{uuid.uuid4().hex[:5]}"
        self.start_pod(replacement, labels, containers)
        return replacement

    def shell(self, pod: str, container: str = "app") -> PodShell:
        return PodShell(self.api, self.namespace, pod, container)

    def create_deployment(
        self, name: str, labels: dict[str, str], containers: list[dict[str, Any]], replicas: int
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                # As the double rolls out: the old pods go before the new ones start.
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "containers": copy.deepcopy(containers),
                        "terminationGracePeriodSeconds": 0,
                    },
                },
            },
        }
        self.apps.create_namespaced_deployment(self.namespace, body)
        self.wait_for_rollout(name)
        return self.deployment(name)

    def deployment(self, name: str) -> dict[str, Any]:
        response = self.apps.read_namespaced_deployment(
            name, self.namespace, _preload_content=False
        )
        body: dict[str, Any] = json.loads(response.data)
        return body

    def wait_for_rollout(self, name: str) -> None:
        """What `kubectl rollout status` waits for: the controller saw the latest spec and
        every replica is updated and available, and no old pod is left."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            body = self.deployment(name)
            wanted = body["spec"].get("replicas", 1)
            status = body.get("status") or {}
            if (
                status.get("observedGeneration", 0) >= body["metadata"]["generation"]
                and status.get("updatedReplicas", 0) == wanted
                and status.get("availableReplicas", 0) == wanted
                and status.get("replicas", 0) == wanted
                and len(self.deployment_pods(name)) == wanted
            ):
                return
            time.sleep(POLL_SECONDS)
        pytest.fail(f"deployment {name} did not roll out in {READY_SECONDS} s")

    def deployment_pods(self, name: str) -> list[dict[str, Any]]:
        selector = self.deployment(name)["spec"]["selector"]["matchLabels"]
        response = self.core.list_namespaced_pod(
            self.namespace,
            label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            _preload_content=False,
        )
        pods: list[dict[str, Any]] = json.loads(response.data)["items"]
        return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]

    def close(self) -> None:
        try:
            self.core.delete_namespace(self.namespace)
        finally:
            self.api.close()


def open_cluster(folder: Path) -> KubeCluster:
    """The cluster of a test or a run: a real one if named, else a started double."""
    context = real_context()
    if context is not None:
        return RealCluster(context)
    from tests.targets import docker_client

    return DoubleCluster(KubeApiDouble(docker_client()).start(), folder)


def pod_manifest(
    name: str, labels: dict[str, str], image: str, containers: tuple[str, ...] = ("app",)
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {**labels, TEST_LABEL: "1"}},
        "spec": {
            "containers": [
                {
                    "name": container,
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "infinity"],
                }
                for container in containers
            ],
            # `sleep` ignores SIGTERM: without this a deleted pod lingers for 30 s.
            "terminationGracePeriodSeconds": 0,
        },
    }


def is_ready(pod: Any) -> bool:
    conditions = pod.status.conditions if pod.status is not None else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


def waiting_reason(pod: Any) -> str | None:
    for status in (pod.status.container_statuses if pod.status else None) or []:
        if status.state is not None and status.state.waiting is not None:
            return str(status.state.waiting.reason)
    return None


class PodShell:
    """Runs commands in one pod's container through the exec subresource, as kubectl does."""

    def __init__(self, api: Any, namespace: str, pod: str, container: str = "app") -> None:
        # An ApiClient of its own: stream() swaps the request function of the one it is given
        # while it opens its WebSocket, which would break calls made on it meanwhile.
        self.core = client.CoreV1Api(client.ApiClient(api.configuration))
        self.namespace = namespace
        self.pod = pod
        self.container = container

    def run(self, *argv: str) -> tuple[int, bytes, bytes]:
        """(exit code, stdout, stderr) of ``argv``, run to its end."""
        websocket = stream(
            self.core.connect_get_namespaced_pod_exec,
            self.pod,
            self.namespace,
            command=list(argv),
            container=self.container,
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
            binary=True,
        )
        try:
            websocket.run_forever(timeout=EXEC_SECONDS)
            output = websocket.read_stdout() or b""
            errors = websocket.read_stderr() or b""
            status = websocket.read_channel(3) or b""
        finally:
            websocket.close()
        return exit_code(status), output, errors

    def check(self, *argv: str) -> bytes:
        """The output of ``argv``, which must succeed."""
        code, output, errors = self.run(*argv)
        assert code == 0, f"{argv} failed in pod {self.pod} ({code}): {errors.decode()}"
        return output


def exit_code(raw: bytes) -> int:
    """The exit code in the Status the kubelet sends when an exec ends (-1 if it sent none)."""
    try:
        status = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return -1
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    return -1
