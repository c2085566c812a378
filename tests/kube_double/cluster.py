"""The double's cluster state, changed by tests, and the Docker containers behind its pods.

``KubeApiDouble`` is what tests use: start it, write a kubeconfig for the official client,
then run, break, restart, replace and delete pods and deny verbs while a target is
connected. Every change bumps the resource version and is recorded for watches.

Deployments are created by tests (``create_deployment``) and patched through the API; a
controller thread rolls a Deployment out whenever its pod template or replica count changes.
Every pod runs the test image whatever image its template names (the double pulls nothing);
the pod's spec shows the template's fields, and the first container's command and args run
as the Docker container's command (``sleep infinity`` when the template names none).
"""

from __future__ import annotations

import asyncio
import copy
import os
import secrets
import socket
import threading
import time
import uuid
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from tests.kube_double import netns
from tests.kube_double.deployments import apply_patch, new_deployment, rollout_key
from tests.kube_double.objects import Event, Pod
from tests.kube_double.server import ApiServer

TEST_IMAGE = "podlink-test-python:bookworm"
TEST_LABEL = "podlink.test"


class KubeApiDouble:
    """A fake cluster with one API server. ``docker`` is a docker SDK client."""

    def __init__(self, docker: Any, namespace: str = "dev") -> None:
        self.docker = docker
        self.namespace = namespace
        self.token = secrets.token_hex(16)
        self.namespaces = {namespace}
        self.pods: dict[tuple[str, str], Pod] = {}
        self.events: list[Event] = []
        self.denied: set[tuple[str, str]] = set()
        self.offer_v5 = True
        self.lock = threading.RLock()
        self.resource_version = 1
        self.compacted_version = 0
        # Watches answered 410 Gone: proof that a client really listed again.
        self.expired_watches = 0
        # Set once a watch is open (a test compacts the history only after that).
        self.watch_opened = threading.Event()
        self.history: list[tuple[int, str, dict[str, Any], Pod]] = []
        # None on a queue ends that watch, as an API server does when its cache is compacted.
        self.watchers: set[asyncio.Queue[tuple[int, str, dict[str, Any], Pod] | None]] = set()
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.rolled_out: dict[tuple[str, str], str] = {}
        self.rollouts: SimpleQueue[tuple[str, str] | None] = SimpleQueue()
        self.controller = threading.Thread(
            target=self._control_deployments, name="kube-double-controller", daemon=True
        )
        self.server = ApiServer(self, self.token)

    # -- life ------------------------------------------------------------------------------

    def start(self) -> KubeApiDouble:
        self.server.start()
        self.controller.start()
        return self

    def stop(self) -> None:
        self.rollouts.put(None)
        self.controller.join(60)
        self.server.stop()
        for pod in list(self.pods.values()):
            self._remove_container(pod)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def write_kubeconfig(
        self, path: Path, *, namespace: str | None = None, token: str | None = None
    ) -> Path:
        """A kubeconfig whose current context ``double`` reaches this server."""
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: double\n  cluster:\n    server: {self.url}\n"
            f"users:\n- name: developer\n  user:\n    token: {token or self.token}\n"
            "contexts:\n- name: double\n  context:\n    cluster: double\n    user: developer\n"
            f"    namespace: {namespace or self.namespace}\n"
            "current-context: double\n"
        )
        return path

    # -- changing the cluster (blocking: call from a worker thread in async tests) ------------

    def run_pod(
        self, name: str, labels: dict[str, str], containers: tuple[str, ...] = ("app",)
    ) -> Pod:
        """A Running, Ready pod backed by a new container."""
        pod = Pod(name=name, namespace=self.namespace, labels=labels, containers=containers)
        pod.container = self._start_container(name)
        self._record("ADDED", pod)
        return pod

    def pending_pod(self, name: str, labels: dict[str, str], message: str) -> Pod:
        """A pod the scheduler cannot place: Pending, with a FailedScheduling event."""
        pod = Pod(
            name=name,
            namespace=self.namespace,
            labels=labels,
            phase="Pending",
            ready=False,
            scheduling_message=message,
        )
        self._record("ADDED", pod)
        self.add_event(pod, "FailedScheduling", message)
        return pod

    def crash_loop(self, name: str, labels: dict[str, str], last_output: str) -> Pod:
        """A pod whose container keeps exiting: CrashLoopBackOff, with BackOff events."""
        pod = Pod(
            name=name,
            namespace=self.namespace,
            labels=labels,
            ready=False,
            restart_count=5,
            waiting_reason="CrashLoopBackOff",
            waiting_message=f"back-off 2m40s restarting failed container=app pod={name}",
        )
        self._record("ADDED", pod)
        self.add_event(pod, "BackOff", "Back-off restarting failed container app")
        self.add_event(pod, "Failed", f"Error: {last_output}")
        return pod

    def add_event(self, pod: Pod, reason: str, message: str) -> None:
        with self.lock:
            self.events.append(Event(pod, reason, message))

    def delete_pod(self, name: str, namespace: str | None = None) -> None:
        """Terminating (MODIFIED with a deletionTimestamp), then gone (DELETED)."""
        pod = self.pods[(namespace or self.namespace, name)]
        pod.terminating, pod.ready = True, False
        self._record("MODIFIED", pod)
        self._remove_container(pod)
        self._record("DELETED", pod)

    def replace_pod(self, name: str) -> Pod:
        """What a ReplicaSet does when its pod is deleted: a new pod with the same labels."""
        old = self.pods[(self.namespace, name)]
        self.delete_pod(name)
        base = name.rsplit("-", 1)[0]
        return self.run_pod(f"{base}-{uuid.uuid4().hex[:5]}", old.labels, old.containers)

    def restart_container(self, name: str) -> None:
        """The container dies and the kubelet starts it again in the same pod."""
        pod = self.pods[(self.namespace, name)]
        pod.container.restart(timeout=0)
        pod.ready, pod.restart_count = False, pod.restart_count + 1
        self._record("MODIFIED", pod)
        pod.ready = True
        self._record("MODIFIED", pod)

    # -- Deployments ---------------------------------------------------------------------

    def create_deployment(
        self,
        name: str,
        labels: dict[str, str],
        containers: list[dict[str, Any]],
        *,
        replicas: int = 1,
    ) -> dict[str, Any]:
        """A Deployment selecting ``labels`` whose pods run ``containers`` (container specs
        as in a manifest). Returns once its pods run, as ``deployment`` would show it."""
        body = new_deployment(name, self.namespace, labels, containers, replicas)
        with self.lock:
            self.resource_version += 1
            body["metadata"]["resourceVersion"] = str(self.resource_version)
            self.deployments[(self.namespace, name)] = body
        self.rollouts.put((self.namespace, name))
        self.wait_for_rollout(name)
        return self.deployment(name)

    def deployment(self, name: str) -> dict[str, Any]:
        """A copy of the Deployment's JSON as the API serves it."""
        with self.lock:
            return copy.deepcopy(self.deployments[(self.namespace, name)])

    def deployment_pods(self, name: str) -> list[Pod]:
        with self.lock:
            return [pod for pod in self.pods.values() if pod.owner == name]

    def wait_for_rollout(self, name: str, seconds: float = 60) -> None:
        """Until the controller has rolled out the Deployment's current template."""
        key = (self.namespace, name)
        for _ in range(int(seconds * 10)):
            with self.lock:
                if self.rolled_out.get(key) == rollout_key(self.deployments[key]):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"deployment {name} did not roll out in {seconds}s")

    def patch_deployment(
        self, namespace: str, name: str, patch: Any, content_type: str
    ) -> dict[str, Any]:
        """What the API server does with a PATCH (``deployments.PatchError`` if refused)."""
        with self.lock:
            current = self.deployments[(namespace, name)]
            patched = apply_patch(current, patch, content_type)
            if patched != current:
                self.resource_version += 1
                patched["metadata"]["resourceVersion"] = str(self.resource_version)
                self.deployments[(namespace, name)] = patched
        self.rollouts.put((namespace, name))
        return copy.deepcopy(patched)

    def _control_deployments(self) -> None:
        while (key := self.rollouts.get()) is not None:
            with self.lock:
                deployment = copy.deepcopy(self.deployments.get(key))
            if deployment is None or self.rolled_out.get(key) == rollout_key(deployment):
                continue
            self._roll_out(deployment)
            with self.lock:
                self.rolled_out[key] = rollout_key(deployment)
                ready = len(self.deployment_pods(key[1]))
                status = {"replicas": ready, "readyReplicas": ready, "updatedReplicas": ready}
                status["observedGeneration"] = deployment["metadata"]["generation"]
                self.deployments[key]["status"] = status

    def _roll_out(self, deployment: dict[str, Any]) -> None:
        """The Recreate strategy: every old pod is deleted, then the new ones start."""
        name = deployment["metadata"]["name"]
        for pod in self.deployment_pods(name):
            self.delete_pod(pod.name, pod.namespace)
        template = deployment["spec"]["template"]
        labels = template["metadata"]["labels"]
        containers = template["spec"]["containers"]
        specs = {c["name"]: {k: v for k, v in c.items() if k != "name"} for c in containers}
        first = containers[0]
        command = [*first.get("command", []), *first.get("args", [])] or None
        for _ in range(deployment["spec"].get("replicas", 1)):
            pod_name = f"{name}-{uuid.uuid4().hex[:10]}"
            pod = Pod(
                name=pod_name,
                namespace=deployment["metadata"]["namespace"],
                labels=dict(labels),
                containers=tuple(specs),
                specs=specs,
                owner=name,
            )
            pod.container = self._start_container(pod_name, command)
            self._record("ADDED", pod)

    # -- access control and watch history ------------------------------------------------

    def deny(self, verb: str, resource: str) -> None:
        """Answer ``verb`` on ``resource`` (``pods/exec``...) with 403 from now on."""
        self.denied.add((verb, resource))

    def expire_history(self) -> None:
        """Compact the watch cache: the open watches end, and a watch from any earlier
        version now gets 410 Gone (so a client must list again to go on)."""
        with self.lock:
            self.history.clear()
            # Past every version a client has seen, as compaction during a quiet spell is.
            self.resource_version += 1
            self.compacted_version = self.resource_version

        def end_watches() -> None:
            for queue in list(self.watchers):
                queue.put_nowait(None)

        self.server.call_soon(end_watches)

    # -- internals ---------------------------------------------------------------------------

    def _record(self, kind: str, pod: Pod) -> None:
        with self.lock:
            self.resource_version += 1
            pod.resource_version = self.resource_version
            if kind == "DELETED":
                self.pods.pop((pod.namespace, pod.name), None)
            else:
                self.pods[(pod.namespace, pod.name)] = pod
            change = (self.resource_version, kind, pod.to_json(), pod)
            self.history.append(change)

        def publish() -> None:
            for queue in list(self.watchers):
                queue.put_nowait(change)

        self.server.call_soon(publish)

    def _start_container(self, name: str, command: list[str] | None = None) -> Any:
        return self.docker.containers.run(
            TEST_IMAGE,
            command or ["sleep", "infinity"],
            name=f"podlink-kube-{name}-{uuid.uuid4().hex[:6]}",
            detach=True,
            init=True,
            labels={TEST_LABEL: "1"},
        )

    def _remove_container(self, pod: Pod) -> None:
        container, pod.container = pod.container, None
        if container is not None:
            try:
                container.remove(force=True)
            except Exception:  # already gone with its engine: nothing to clean
                pass

    async def docker_exec(
        self, pod: Pod, argv: list[str], *, stdin: bool = True
    ) -> asyncio.subprocess.Process:
        # Without stdin the command's input is closed, as with an exec that asked for none.
        return await asyncio.create_subprocess_exec(
            "docker",
            "exec",
            *(["-i"] if stdin else []),
            pod.container.id,
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    def dial(self, pod: Pod, port: int) -> socket.socket:
        """Connect to ``port`` on the pod's loopback, as the kubelet does for port-forward."""
        pid = int(self.docker.api.inspect_container(pod.container.id)["State"]["Pid"])
        return netns.dial(pid, port)

    def forward_error(self, pod: Pod, port: int, error: BaseException) -> str:
        """What the kubelet writes on a port-forward's error channel when its dial failed
        (containerd's wording; the "pod" is the sandbox's id and the uid is left empty)."""
        sandbox = pod.container.id
        if isinstance(error, OSError) and error.errno is not None:
            # Go spells system errors in lower case: "connect: connection refused".
            reason = f"connect: {os.strerror(error.errno).lower()}"
        else:
            reason = str(error)
        return (
            f"error forwarding port {port} to pod {sandbox}, uid : failed to execute portforward "
            f'in network namespace "/var/run/netns/cni-{pod.uid}": '
            f'failed to connect to localhost:{port} inside namespace "{sandbox}", IPv4: dial tcp4 '
            f"127.0.0.1:{port}: {reason} IPv6 dial tcp6: address localhost: no suitable address "
            "found "
        )
