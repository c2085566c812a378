"""``podlink purge`` for what a workspace's ledger lists: applied objects, pushed tags, imports.

An object is deleted only while it still has the uid podlink recorded (one made again under
the same name by someone else stays), in the foreground, and purge waits until it is gone
with what it owns (a Deployment's ReplicaSets and pods), so that the namespace is as it was
when purge returns. Every call blocks: run it in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import dynamic
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

from podlink.targets.kubernetes import ledger as kubernetes_ledger
from podlink.targets.kubernetes.delivery import delete_pushed, remove_imported
from podlink.targets.kubernetes.ledger import (
    AppliedObject,
    Entry,
    ImportedImage,
    Ledger,
    LocalImage,
    PushedTag,
)

_dynamic_module: Any = dynamic

GONE_SECONDS = 120.0
POLL_SECONDS = 0.25
REQUEST_TIMEOUT = (10, 30)

Listed = TypeVar("Listed", bound=Entry)


def ledger_lines(ledger: Ledger) -> list[str]:
    """What purge would remove, one line each, objects first."""
    return [
        *(f"delete {entry}" for entry in reversed(ledger.objects)),
        *(f"delete {entry}" for entry in ledger.pushed),
        *(f"delete {entry}" for entry in ledger.imported),
        *(f"remove {entry}" for entry in ledger.built),
    ]


def remove_ledger(
    folder: Path, ledger: Ledger, api: Any, on_removed: Callable[[str], None]
) -> list[str]:
    """Delete what ``ledger`` lists (objects in reverse order of creation); the failures."""
    client = _dynamic_module.DynamicClient(api) if ledger.objects else None
    failures = _remove_each(
        folder,
        reversed(ledger.objects),
        lambda entry: _delete_object(client, entry),
        "deleted",
        on_removed,
    )
    images: list[PushedTag | ImportedImage] = [*ledger.pushed, *ledger.imported]
    failures += _remove_each(folder, images, _delete_delivered, "deleted", on_removed)
    if ledger.built:
        failures += _remove_built_images(folder, ledger.built, on_removed)
    return failures


def _remove_built_images(
    folder: Path, built: Sequence[LocalImage], on_removed: Callable[[str], None]
) -> list[str]:
    """Untag the images ``podlink up`` built, through one connection to the Engine."""
    from podlink.targets.docker.exec import EngineUnavailable, open_engine

    try:
        _, engine = open_engine()
    except EngineUnavailable as error:
        return [f"{entry} was not removed: {error}" for entry in built]
    try:
        return _remove_each(
            folder, built, lambda local: _remove_local_image(engine, local), "removed", on_removed
        )
    finally:
        engine.close()


def _remove_each(
    folder: Path,
    entries: Iterable[Listed],
    remove: Callable[[Listed], bool],
    verb: str,
    on_removed: Callable[[str], None],
) -> list[str]:
    """Remove each entry and strike it from the ledger; the failures, which stay listed.
    ``remove`` says False when the thing was no longer podlink's (struck, not reported)."""
    failures: list[str] = []
    for entry in entries:
        try:
            if remove(entry):
                on_removed(f"{verb} {entry}")
        except RuntimeError as error:
            failures.append(str(error))
            continue
        kubernetes_ledger.forget(folder, entry)
    return failures


def _delete_delivered(image: PushedTag | ImportedImage) -> bool:
    if isinstance(image, PushedTag):
        delete_pushed(image)
    else:
        remove_imported(image)
    return True


def _remove_local_image(engine: Any, entry: LocalImage) -> bool:
    """Untag (and so delete) a built image, unforced: one a container still uses stays."""
    import docker.errors

    try:
        if engine.images.get(entry.reference).id != entry.image_id:
            return False  # the tag names another image now
        engine.images.remove(entry.reference)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as error:
        raise RuntimeError(f"cannot remove {entry}: {error.explanation or error}") from error
    return True


def _delete_object(client: Any, entry: AppliedObject) -> bool:
    """Delete one object and wait until it is gone; False if it was not podlink's any more."""
    try:
        resource = client.resources.get(api_version=entry.api_version, kind=entry.kind)
    except ResourceNotFoundError:
        return False  # its kind went away, and the object with it
    namespace = entry.namespace or None
    current = _get(client, resource, entry, namespace)
    if current is None or (current.get("metadata") or {}).get("uid") != entry.uid:
        return False
    try:
        client.delete(
            resource,
            name=entry.name,
            namespace=namespace,
            body={"propagationPolicy": "Foreground", "preconditions": {"uid": entry.uid}},
            _request_timeout=REQUEST_TIMEOUT,
        )
    except DynamicApiError as error:
        if error.status in (404, 409):
            return False
        raise RuntimeError(_refusal(entry, error)) from error
    deadline = time.monotonic() + GONE_SECONDS
    while (still := _get(client, resource, entry, namespace)) is not None:
        if (still.get("metadata") or {}).get("uid") != entry.uid:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{entry} was deleted but is still there after {GONE_SECONDS:.0f} s "
                "(a finalizer holds it: `kubectl get -o yaml` shows which)"
            )
        time.sleep(POLL_SECONDS)
    return True


def _get(client: Any, resource: Any, entry: AppliedObject, namespace: str | None) -> Any:
    try:
        body = client.get(
            resource, name=entry.name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT
        )
    except DynamicApiError as error:
        if error.status == 404:
            return None
        raise RuntimeError(_refusal(entry, error)) from error
    return body.to_dict()


def _refusal(entry: AppliedObject, error: DynamicApiError) -> str:
    if error.status == 403:
        return (
            f"not allowed to delete {entry}: grant the verbs get and delete on "
            f"{entry.kind.lower()}s ({entry.api_version}) to your user"
        )
    return f"cannot delete {entry}: {error.status} {error.reason}"
