"""Container logs of pods, as ``kubectl logs`` reads them: the ``log`` subresource of a pod.

One pod's log comes through as the API server sends it. Several pods' logs (``--all``) are
read each on a thread of its own and merged line by line, every line prefixed with the pod's
name, in the order the lines arrive.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from podlink.config import KubernetesTargetConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.capabilities import LogRequest
from podlink.targets.kubernetes.cluster import REQUEST_TIMEOUT, explain_failure, status_of

if TYPE_CHECKING:
    from podlink.targets.kubernetes.connection import ClusterConnection

from podlink.targets.kubernetes.pods import is_ready, last_events, named_pod, pick_container

CHUNK_BYTES = 64 * 1024
CONNECT_SECONDS = 10
# How long a followed log may stay quiet (the client takes no "never"): a day.
QUIET_SECONDS = 24 * 3600


class PodLog:
    """One pod's (or several pods') log: iterate for chunks, ``close()`` to stop early."""

    def __init__(self, responses: list[tuple[str, Any]], *, prefixed: bool) -> None:
        self._responses = responses
        self._prefixed = prefixed

    def __iter__(self) -> Iterator[bytes]:
        if not self._prefixed:
            (_, response), *_ = self._responses
            yield from _chunks(response)
            return
        lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

        def read(prefix: bytes, response: Any) -> None:
            try:
                for line in _lines(response):
                    lines.put(prefix + line)
            except Exception:  # a pod that goes away ends its own lines only
                return
            finally:
                lines.put(None)

        for pod, response in self._responses:
            threading.Thread(
                target=read, args=(f"[{pod}] ".encode(), response), daemon=True
            ).start()
        running = len(self._responses)
        while running:
            line = lines.get()
            if line is None:
                running -= 1
            else:
                yield line

    def close(self) -> None:
        """End the reads, also one blocked waiting for output of a followed log."""
        for _, response in self._responses:
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.release_conn()


def _chunks(response: Any) -> Iterator[bytes]:
    while chunk := response.read1(CHUNK_BYTES):
        yield bytes(chunk)


def _lines(response: Any) -> Iterator[bytes]:
    """Whole lines (a last line without its newline gets one)."""
    pending = b""
    for chunk in _chunks(response):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending + b"\n"


def open_pod_logs(
    core: Any,
    namespace: str,
    pods: list[tuple[str, str]],
    request: LogRequest,
    explain: Callable[[ApiException, str], str],
) -> PodLog:
    """Open the log of each ``(pod, container)``. ``explain`` turns an API error of one pod
    into the message of the TargetUnavailable raised."""
    responses: list[tuple[str, Any]] = []
    try:
        for pod, container in pods:
            try:
                response = core.read_namespaced_pod_log(
                    pod,
                    namespace,
                    container=container,
                    follow=request.follow,
                    previous=request.previous,
                    tail_lines=request.tail,
                    _preload_content=False,
                    _request_timeout=(CONNECT_SECONDS, QUIET_SECONDS if request.follow else 60),
                )
            except ApiException as error:
                raise TargetUnavailable(explain(error, pod)) from error
            responses.append((pod, response))
    except BaseException:
        PodLog(responses, prefixed=False).close()
        raise
    return PodLog(responses, prefixed=request.every_pod)


def workload_selector(api: Any, namespace: str, pod: Any) -> str | None:
    """The label selector of the Deployment (or bare ReplicaSet) that owns ``pod``, or None
    for a pod no ReplicaSet owns."""
    apps = client.AppsV1Api(api)
    owner = _owner(pod.metadata, "ReplicaSet")
    if owner is None:
        return None
    replica_set = apps.read_namespaced_replica_set(owner, namespace)
    deployment = _owner(replica_set.metadata, "Deployment")
    if deployment is not None:
        return selector_of(apps.read_namespaced_deployment(deployment, namespace).spec.selector)
    return selector_of(replica_set.spec.selector)


def selector_of(selector: Any) -> str:
    """A LabelSelector object as the string list calls take (matchLabels only; expressions
    in the set-based syntax)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        values = ",".join(expression.values or [])
        operator = expression.operator
        if operator == "In":
            parts.append(f"{expression.key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{expression.key} notin ({values})")
        elif operator == "Exists":
            parts.append(expression.key)
        else:
            parts.append(f"!{expression.key}")
    return ",".join(parts)


def _owner(metadata: Any, kind: str) -> str | None:
    for reference in metadata.owner_references or []:
        if reference.kind == kind and reference.controller:
            return str(reference.name)
    return None


def pods_for_logs(
    api: Any,
    core: Any,
    config: KubernetesTargetConfig,
    namespace: str,
    where: str,
    *,
    every_pod: bool,
) -> list[Any]:
    """The session's pod first (Ready and newest wins), or every pod of its workload."""
    selector = config.pod.selector
    if config.dev_mode is not None:
        deployment = config.dev_mode.deployment
        apps = client.AppsV1Api(api)
        try:
            body = apps.read_namespaced_deployment(
                deployment, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status != 404:
                raise
            raise TargetUnavailable(
                f"no deployment {deployment!r} in namespace {namespace!r} "
                f"({where}): devMode names it; nothing has logs yet"
            ) from error
        selector = selector_of(body.spec.selector)
    if selector is None:
        pod = named_pod(core, namespace, config.pod.name, where)
        if not every_pod:
            return [pod]
        selector = workload_selector(api, namespace, pod)
        if selector is None:
            return [pod]  # a pod of its own: it is the whole workload
    listing = core.list_namespaced_pod(
        namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
    )
    pods = [p for p in listing.items if not p.metadata.deletion_timestamp]
    if not pods:
        raise TargetUnavailable(
            f"no pod in namespace {namespace!r} matches the selector {selector!r} "
            f"({where}), so there is no log to show"
        )
    pods.sort(key=lambda p: (is_ready(p), p.metadata.creation_timestamp or 0), reverse=True)
    if every_pod:
        return sorted(pods, key=lambda p: str(p.metadata.name))
    return pods[:1]


def explain_log_failure(
    error: ApiException, core: Any, namespace: str, where: str, pod: str, container: str
) -> str:
    """Why a pod's log cannot be read: for a container that has not run, with its events."""
    status, message = status_of(error)
    if status in (400, 404):
        events = last_events(core, namespace, pod)
        shown = "; last events: " + "; ".join(events) if events else ""
        return f"cannot read the log of container {container} of pod {pod}: {message}{shown}"
    return explain_failure(
        error,
        attempted=f"reading the log of pod {pod}",
        where=where,
        namespace=namespace,
        verb="get",
        resource="pods/log",
    )


def logs_of(
    cluster: ClusterConnection, config: KubernetesTargetConfig, request: LogRequest
) -> PodLog:
    """The log a ``podlink logs`` request asks for, of the pods ``config`` names. Blocking."""
    if cluster.api is None:
        cluster.api = cluster.open_client()
    core = cluster.core()
    try:
        pods = pods_for_logs(
            cluster.api,
            core,
            config,
            cluster.namespace,
            cluster.where(),
            every_pod=request.every_pod,
        )
    except ApiException as error:
        raise cluster.failure(
            error, "looking up the pods for their logs", "list", "pods"
        ) from error
    except TargetUnavailable:
        raise
    except Exception as error:
        raise cluster.failure(error, "looking up the pods for their logs") from error
    container = pick_container(pods[0], config.container)
    return open_pod_logs(
        core,
        cluster.namespace,
        [(pod.metadata.name, container) for pod in pods],
        request,
        lambda error, pod: explain_log_failure(
            error, core, cluster.namespace, cluster.where(), pod, container
        ),
    )
