"""Dev mode: a Deployment turned into a dev environment for as long as a session lasts.

``devMode: {deployment, command, image?}`` patches the Deployment so that podlink, not the
image's entrypoint, runs the app: one replica (so every sync and request meets the same
pod), the chosen container's command replaced and its args cleared (the pod only has to
stay up), optionally a dev image, and no readiness, liveness or startup probe (a debugger
paused at a breakpoint must not get the pod restarted or taken out of its Service).

What was there before is written into the Deployment itself, in the annotation
``podlink.dev/original`` (JSON), next to ``podlink.dev/session`` naming the machine and
folder of the session that holds it. Keeping both on the object, not on this machine,
means a crashed session can be cleaned up from anywhere (``podlink purge`` lists
``patched_deployments`` and restores them) and a second session sees who holds the
Deployment and is refused instead of stacking its patch on top of a patched spec.

Patches go out as the official client sends a dict body, as strategic merge patches: the
container is addressed by name inside ``containers`` and a field given as null is removed,
so restoring a field that was absent removes it again. Every patch carries the
``resourceVersion`` it was computed from, so a concurrent change makes it fail (409) and
it is recomputed rather than overwriting that change.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from podlink.config import DevModeConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.kubernetes.cluster import REQUEST_TIMEOUT

log = logging.getLogger(__name__)

ORIGINAL_ANNOTATION = "podlink.dev/original"
OWNER_ANNOTATION = "podlink.dev/session"
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
CHANGED_CONTAINER_FIELDS = ("command", "args", "image", *PROBES)
PATCH_ATTEMPTS = 5
POD_WAIT_SECONDS = 180.0
POD_POLL_SECONDS = 0.5


def session_owner(folder: Path) -> str:
    """Who holds a Deployment: this machine and the workspace folder, readable by people."""
    return f"{socket.gethostname()}:{folder.resolve()}"


@dataclass(frozen=True)
class OriginalSpec:
    """The fields dev mode changes, as they were; None for a field that was absent."""

    replicas: int | None
    container: str
    fields: dict[str, Any]

    def to_annotation(self) -> str:
        return json.dumps(
            {"replicas": self.replicas, "container": self.container, "fields": self.fields},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_annotation(cls, text: str) -> OriginalSpec:
        data = json.loads(text)
        return cls(
            replicas=data.get("replicas"),
            container=str(data["container"]),
            fields={name: data.get("fields", {}).get(name) for name in CHANGED_CONTAINER_FIELDS},
        )

    def restore_patch(self, resource_version: str) -> dict[str, Any]:
        """Puts every changed field back (null removes one that was absent) and drops the
        annotations."""
        return {
            "metadata": {
                "resourceVersion": resource_version,
                "annotations": {ORIGINAL_ANNOTATION: None, OWNER_ANNOTATION: None},
            },
            "spec": {
                "replicas": self.replicas,
                "template": {"spec": {"containers": [{"name": self.container, **self.fields}]}},
            },
        }


class DevMode:
    """One session's hold on a Deployment: ``engage`` patches it, ``release`` restores it."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        config: DevModeConfig,
        *,
        container: str | None,
        owner: str,
    ) -> None:
        self._apps = client.AppsV1Api(api)
        self._namespace = namespace
        self._config = config
        self._wanted_container = container
        self.owner = owner
        self.container = container or ""
        self.selector = ""
        self.engaged = False

    @property
    def deployment(self) -> str:
        return self._config.deployment

    def engage(self) -> None:
        """Patch the Deployment into dev mode (again, harmlessly, if this session holds it)."""
        for _ in range(PATCH_ATTEMPTS):
            current = read_deployment(self._apps, self._namespace, self.deployment)
            annotations = current["metadata"].get("annotations") or {}
            holder = annotations.get(OWNER_ANNOTATION)
            if holder is not None and holder != self.owner:
                raise TargetUnavailable(self._held_by(holder))
            self.container = self._pick_container(current)
            if holder == self.owner and ORIGINAL_ANNOTATION in annotations:
                # Reconnecting: the annotation has the real original, the spec is ours.
                original = OriginalSpec.from_annotation(annotations[ORIGINAL_ANNOTATION])
            else:
                original = capture_original(current, self.container)
            try:
                self._apps.patch_namespaced_deployment(
                    self.deployment,
                    self._namespace,
                    self._dev_patch(current, original),
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as error:
                if error.status == 409:
                    continue  # changed since it was read: look again
                raise
            self.selector = selector_text(current["spec"].get("selector") or {})
            self.engaged = True
            return
        raise TargetUnavailable(
            f"deployment {self.deployment} in namespace {self._namespace!r} kept changing "
            f"while devMode patched it ({PATCH_ATTEMPTS} attempts); try again"
        )

    def _dev_patch(self, current: dict[str, Any], original: OriginalSpec) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": self.container,
            "command": list(self._config.command),
            "args": None,
            **dict.fromkeys(PROBES),
        }
        if self._config.image is not None:
            container["image"] = self._config.image
        return {
            "metadata": {
                "resourceVersion": current["metadata"]["resourceVersion"],
                "annotations": {
                    ORIGINAL_ANNOTATION: original.to_annotation(),
                    OWNER_ANNOTATION: self.owner,
                },
            },
            "spec": {"replicas": 1, "template": {"spec": {"containers": [container]}}},
        }

    def _pick_container(self, deployment: dict[str, Any]) -> str:
        containers = deployment["spec"]["template"]["spec"].get("containers") or []
        names = [each["name"] for each in containers]
        wanted = self._wanted_container
        where = f"deployment {self.deployment}"
        if wanted is not None and wanted not in names:
            raise TargetUnavailable(
                f"{where} has no container {wanted!r}; its containers are: {', '.join(names)}"
            )
        if wanted is None and len(names) != 1:
            raise TargetUnavailable(
                f"{where} has several containers ({', '.join(names)}); set "
                "target.kubernetes.container to the one devMode should run the app in"
            )
        return wanted or names[0]

    def _held_by(self, holder: str) -> str:
        return (
            f"deployment {self.deployment} in namespace {self._namespace!r} is already in "
            f"podlink dev mode for {holder} (annotation {OWNER_ANNOTATION}); stop that "
            "session to release it, or, if it is gone, run `podlink purge` to restore the "
            "Deployment's original spec"
        )

    def runs_dev_spec(self, pod: Any) -> bool:
        """The pod comes from the patched template: it runs the dev command (and image)."""
        for each in pod.spec.containers or []:
            if each.name == self.container:
                same_image = self._config.image is None or each.image == self._config.image
                return (
                    list(each.command or []) == list(self._config.command)
                    and not each.args
                    and same_image
                )
        return False

    def wait_for_pod(
        self, core: Any, is_ready: Callable[[Any], bool], seconds: float = POD_WAIT_SECONDS
    ) -> None:
        """Until a Ready pod of the patched template runs, or ``seconds`` pass; the pod
        lookup that follows explains a pod that never got there."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            listing = core.list_namespaced_pod(
                self._namespace, label_selector=self.selector, _request_timeout=REQUEST_TIMEOUT
            )
            if any(
                not pod.metadata.deletion_timestamp and self.runs_dev_spec(pod) and is_ready(pod)
                for pod in listing.items
            ):
                return
            time.sleep(POD_POLL_SECONDS)

    def release(self) -> bool:
        """Restore the Deployment if this session still holds it; True when restored."""
        if not self.engaged:
            return False
        restored = restore_deployment(self._apps, self._namespace, self.deployment, self.owner)
        self.engaged = False
        return restored


def read_deployment(apps: Any, namespace: str, name: str) -> dict[str, Any]:
    """The Deployment's JSON exactly as served: a restore must not depend on which fields
    the client's models know."""
    try:
        response = apps.read_namespaced_deployment(
            name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as error:
        if error.status == 404:
            raise TargetUnavailable(
                f"no deployment named {name!r} in namespace {namespace!r} for devMode; "
                f"`kubectl get deployments -n {namespace}` lists them"
            ) from error
        raise
    body: dict[str, Any] = json.loads(response.data)
    return body


def capture_original(deployment: dict[str, Any], container: str) -> OriginalSpec:
    spec = deployment["spec"]
    current = next(c for c in spec["template"]["spec"]["containers"] if c["name"] == container)
    return OriginalSpec(
        replicas=spec.get("replicas"),
        container=container,
        fields={name: current.get(name) for name in CHANGED_CONTAINER_FIELDS},
    )


def selector_text(selector: dict[str, Any]) -> str:
    """A LabelSelector as the ``labelSelector`` query parameter writes it."""
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(expression.get("values") or [])
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }[operator]
        )
    return ",".join(terms)


def restore_deployment(apps: Any, namespace: str, name: str, owner: str | None = None) -> bool:
    """Put a dev-mode Deployment back as it was and drop the annotations. With ``owner``,
    only while that session still holds it. True when something was restored."""
    for _ in range(PATCH_ATTEMPTS):
        current = read_deployment(apps, namespace, name)
        annotations = current["metadata"].get("annotations") or {}
        holder = annotations.get(OWNER_ANNOTATION)
        if ORIGINAL_ANNOTATION not in annotations or (owner is not None and holder != owner):
            return False
        original = OriginalSpec.from_annotation(annotations[ORIGINAL_ANNOTATION])
        try:
            apps.patch_namespaced_deployment(
                name,
                namespace,
                original.restore_patch(current["metadata"]["resourceVersion"]),
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 409:
                continue
            raise
        log.info("restored deployment %s in namespace %s (was held by %s)", name, namespace, holder)
        return True
    raise TargetUnavailable(
        f"deployment {name} in namespace {namespace!r} kept changing while podlink restored "
        f"it ({PATCH_ATTEMPTS} attempts); try again"
    )


@dataclass(frozen=True)
class PatchedDeployment:
    """A Deployment that dev mode patched, and the session that holds it."""

    namespace: str
    name: str
    holder: str

    def __str__(self) -> str:
        return (
            f"deployment {self.name} in namespace {self.namespace} "
            f"(patched by podlink dev mode for {self.holder})"
        )


def patched_deployments(api: Any, namespace: str) -> list[PatchedDeployment]:
    """Every Deployment in ``namespace`` that dev mode left patched, whichever session did it."""
    apps = client.AppsV1Api(api)
    # Raw JSON, as for a single Deployment: the annotation must come back byte for byte.
    response: Any = apps.list_namespaced_deployment(
        namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
    )
    found = []
    for item in json.loads(response.data).get("items", []):
        annotations = item["metadata"].get("annotations") or {}
        if ORIGINAL_ANNOTATION in annotations:
            holder = str(annotations.get(OWNER_ANNOTATION) or "an unknown session")
            found.append(PatchedDeployment(namespace, item["metadata"]["name"], holder))
    return sorted(found, key=lambda deployment: deployment.name)
