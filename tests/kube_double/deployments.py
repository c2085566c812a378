"""The double's Deployments (apps/v1): the object, the patch semantics, and the rollout.

A Deployment is kept as the JSON the API serves. A patch is applied as its Content-Type says:
``application/strategic-merge-patch+json`` (what the official client sends for a dict body)
merges maps, deletes a field given as null and merges lists of named things (containers,
env...) element by element on their merge key, as the API reference's ``patchMergeKey``
says; ``application/merge-patch+json`` (RFC 7396) replaces lists whole. A changed pod
template or replica count starts a rollout, which the controller in ``cluster.py`` carries
out the way the Recreate strategy does: the old pods go, then the new ones start.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from tests.kube_double.objects import status_body, timestamp

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_MERGE_PATCH = "application/merge-patch+json"

# patchMergeKey of the list fields a Deployment's pod template has (core/v1 PodSpec...).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class PatchError(Exception):
    """A patch the API server refuses: ``code`` and a Status body."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_body(code, reason, message)


def new_deployment(
    name: str,
    namespace: str,
    labels: dict[str, str],
    containers: list[dict[str, Any]],
    replicas: int,
) -> dict[str, Any]:
    """A Deployment as a client would create it, with the fields the server fills in."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "creationTimestamp": timestamp(),
            "labels": dict(labels),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": copy.deepcopy(containers)},
            },
        },
        "status": {},
    }


def apply_patch(current: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """The Deployment after ``patch``; ``current`` is left as it was."""
    if not isinstance(patch, dict):
        raise PatchError(400, "BadRequest", "this double accepts object patches only")
    wanted = patch.get("metadata", {}).get("resourceVersion")
    have = current["metadata"]["resourceVersion"]
    if wanted is not None and str(wanted) != have:
        # The optimistic-concurrency precondition a patch may carry.
        name = current["metadata"]["name"]
        raise PatchError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on deployments.apps "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
        )
    media_type = content_type.split(";")[0].strip()
    patched: dict[str, Any]
    if media_type == STRATEGIC_MERGE_PATCH:
        patched = strategic_merge(current, patch)
    elif media_type == JSON_MERGE_PATCH:
        patched = json_merge(current, patch)
    else:
        raise PatchError(
            415, "UnsupportedMediaType", f"the double does not apply {media_type!r} patches"
        )
    # What the client may not change: identity, and the server's bookkeeping.
    for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
        patched["metadata"][key] = current["metadata"][key]
    patched["status"] = current.get("status", {})
    for map_key in ("annotations", "labels"):
        if patched["metadata"].get(map_key) == {}:
            del patched["metadata"][map_key]
    if patched["spec"] != current["spec"]:
        patched["metadata"]["generation"] = current["metadata"]["generation"] + 1
    return patched


def json_merge(target: Any, patch: Any) -> Any:
    """RFC 7396: maps merge, null deletes, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge(result.get(key), value)
    return copy.deepcopy(result)


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    """Kubernetes strategic merge: like RFC 7396, but lists with a merge key merge by it."""
    if isinstance(patch, dict):
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge(result.get(key), value, key)
        return result
    merge_key = MERGE_KEYS.get(field)
    if isinstance(patch, list) and merge_key and isinstance(target, list):
        merged = copy.deepcopy(target)
        for element in patch:
            position = next(
                (i for i, old in enumerate(merged) if old.get(merge_key) == element.get(merge_key)),
                None,
            )
            if position is None:
                merged.append(strategic_merge({}, element))
            else:
                merged[position] = strategic_merge(merged[position], element)
        return merged
    return copy.deepcopy(patch)


def rollout_key(deployment: dict[str, Any]) -> str:
    """What, when it changes, makes the controller replace the Deployment's pods."""
    spec = deployment["spec"]
    return json.dumps([spec.get("replicas", 1), spec["template"]], sort_keys=True)
