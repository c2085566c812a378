"""The double's objects (pods, events) and their JSON as the Kubernetes API serves them.

Field names and shapes follow the core/v1 API reference (Pod, PodStatus, ContainerStatus,
Event, Status); only the fields a client of podlink's kind reads are filled in.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any


def timestamp(seconds: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A ``Status`` object: the body of every error response."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


@dataclass
class Pod:
    """One pod. ``container`` is the Docker container behind it (None while Pending); every
    container name of a multi-container pod runs in that one Docker container."""

    name: str
    namespace: str
    labels: dict[str, str]
    containers: tuple[str, ...] = ("app",)
    image: str = "podlink-test-python:bookworm"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=timestamp)
    resource_version: int = 0
    phase: str = "Running"
    ready: bool = True
    restart_count: int = 0
    waiting_reason: str | None = None
    waiting_message: str = ""
    scheduling_message: str | None = None
    terminating: bool = False
    container: Any = None
    # The container fields of the pod template it came from (command, args, probes...), by
    # container name, and the Deployment that owns it.
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "labels": dict(self.labels),
            "resourceVersion": str(self.resource_version),
            "creationTimestamp": self.created,
        }
        if self.terminating:
            metadata["deletionTimestamp"] = timestamp()
        conditions = [
            {"type": "Ready", "status": "True" if self.ready else "False"},
        ]
        if self.scheduling_message is not None:
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": self.scheduling_message,
                }
            )
        status: dict[str, Any] = {"phase": self.phase, "conditions": conditions}
        if self.phase != "Pending":
            status["containerStatuses"] = [self._container_status(name) for name in self.containers]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {
                "containers": [
                    {"name": n, "image": self.image, **self.specs.get(n, {})}
                    for n in self.containers
                ]
            },
            "status": status,
        }

    def _container_status(self, name: str) -> dict[str, Any]:
        if self.waiting_reason is not None:
            state: dict[str, Any] = {
                "waiting": {"reason": self.waiting_reason, "message": self.waiting_message}
            }
        else:
            state = {"running": {"startedAt": self.created}}
        return {
            "name": name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.waiting_reason is None,
            "restartCount": self.restart_count,
            "state": state,
        }


@dataclass
class Event:
    pod: Pod
    reason: str
    message: str
    type: str = "Warning"
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    stamp: str = field(default_factory=timestamp)

    def to_json(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{self.pod.name}.{self.name}", "namespace": self.pod.namespace},
            "involvedObject": {
                "kind": "Pod",
                "name": self.pod.name,
                "namespace": self.pod.namespace,
                "uid": self.pod.uid,
            },
            "reason": self.reason,
            "message": self.message,
            "type": self.type,
            "count": 1,
            "firstTimestamp": self.stamp,
            "lastTimestamp": self.stamp,
        }


def matches_fields(pod: Pod, selector: str) -> bool:
    """The one field selector clients use on pods here: ``metadata.name=NAME``."""
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if key == "metadata.name" and pod.name != value:
            return False
        if key == "metadata.namespace" and pod.namespace != value:
            return False
    return True
