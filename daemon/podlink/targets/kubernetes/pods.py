"""What podlink reads off a pod: which container it uses, whether commands can run there,
whether it is Ready, how often its container restarted, and its last events."""

from __future__ import annotations

import logging
from typing import Any

from kubernetes.client.exceptions import ApiException

from podlink.targets.base import TargetUnavailable
from podlink.targets.kubernetes.cluster import REQUEST_TIMEOUT

log = logging.getLogger(__name__)

SHOWN_EVENTS = 3


def pick_container(pod: Any, wanted: str | None) -> str:
    """The container podlink uses in ``pod``: ``wanted`` (the configured one) or its only one."""
    names = [c.name for c in pod.spec.containers or []]
    if wanted is not None and wanted not in names:
        raise TargetUnavailable(
            f"pod {pod.metadata.name} has no container {wanted!r}; its containers are: "
            f"{', '.join(names)}"
        )
    if wanted is None and len(names) > 1:
        raise TargetUnavailable(
            f"pod {pod.metadata.name} has several containers ({', '.join(names)}); "
            "set target.kubernetes.container to the one podlink should use"
        )
    return wanted or names[0]


def container_status(pod: Any, container: str) -> Any:
    for each in pod.status.container_statuses or [] if pod.status is not None else []:
        if each.name == container:
            return each
    return None


def restart_count(pod: Any, container: str) -> int:
    status = container_status(pod, container)
    return int(status.restart_count or 0) if status is not None else 0


def is_usable(pod: Any, container: str) -> bool:
    """Commands can run in the container: the pod runs and the container is not waiting."""
    if pod.metadata.deletion_timestamp or pod.status is None or pod.status.phase != "Running":
        return False
    status = container_status(pod, container)
    return status is not None and status.state is not None and status.state.running is not None


def is_ready(pod: Any) -> bool:
    return (
        any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if pod.status is not None
        else False
    )


def last_events(core: Any, namespace: str, pod_name: str) -> list[str]:
    """The last few events of a pod, as "Reason: message"; none when they cannot be read."""
    try:
        listing = core.list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.name={pod_name}",
            _request_timeout=REQUEST_TIMEOUT,
        )
    except Exception as error:  # events are a courtesy: a denied list must not hide the cause
        log.debug("cannot list events of %s: %s", pod_name, error)
        return []
    items = sorted(listing.items, key=lambda e: str(e.last_timestamp or ""))
    return [f"{e.reason}: {e.message}" for e in items[-SHOWN_EVENTS:]]


def named_pod(core: Any, namespace: str, name: str | None, where: str) -> Any:
    """The pod ``pod: {name: ...}`` names; TargetUnavailable saying how to list them."""
    name = name or ""
    try:
        return core.read_namespaced_pod(name, namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as error:
        if error.status != 404:
            raise
        raise TargetUnavailable(
            f"no pod named {name!r} in namespace {namespace!r} "
            f"({where}); `kubectl get pods -n {namespace}` lists them"
        ) from error
