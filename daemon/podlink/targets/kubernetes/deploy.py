"""``deploy:``: apply the workspace's manifests with server-side apply, then wait for rollouts.

Manifests are files or folders of YAML (a folder: its ``*.yaml`` and ``*.yml`` files, by
name), each possibly holding several documents, applied in the order given. A folder with
a kustomization file is rendered by kustomize instead, and ``helm`` releases by ``helm
template`` (``render``); what they print is applied the same way, after the manifests. Every object
goes through the API server's server-side apply as field manager ``podlink`` (conflicts
forced: podlink owns what the workspace says), in the target's namespace unless the object
names one. Applying an unchanged manifest changes nothing, so a Deployment keeps its
generation and no pod is replaced. Each Deployment applied is then waited for as
``kubectl rollout status`` does.

A manifest that does not parse is a ConfigError on its file and line; a refusal by the
server names the file, the object and the server's reason; a 403 the verb and resource to
grant.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from kubernetes import dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

from podlink.config import ConfigError, DeployConfig, DeployImageConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.kubernetes.ledger import AppliedObject
from podlink.targets.kubernetes.render import (
    KUSTOMIZATION_FILES,
    kustomization_of,
    render_helm,
    render_kustomization,
)

# The dynamic client is untyped.
_dynamic_module: Any = dynamic

log = logging.getLogger(__name__)

FIELD_MANAGER = "podlink"
ROLLOUT_SECONDS = 300.0
# A rollout is watched: the loop waits on it before anything else can start, and a watch
# hears of each status change as it happens. Polling is the fallback when a watch fails.
POLL_SECONDS = 0.1
# The server ends a watch after this long; the wait then reads the Deployment afresh.
WATCH_SECONDS = 30
REQUEST_TIMEOUT = (10, 60)
MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Manifest:
    """One object of a manifest file: where it is written, and its body."""

    path: Path
    line: int
    body: dict[str, Any]
    # The path as the user knows it: relative to the workspace.
    shown: str = ""
    # The command whose output held the object ("" for a file applied as written); ``line``
    # is then a line of that output, not of a file.
    rendered_by: str = ""

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def label(self) -> str:
        """``Deployment/web (k8s/web.yaml:3)``, for messages; for a rendered object
        ``Deployment/web (k8s/dev, rendered by kubectl kustomize)``."""
        where = self.shown or str(self.path)
        if self.rendered_by:
            return f"{self.kind}/{self.name} ({where}, rendered by {self.rendered_by})"
        return f"{self.kind}/{self.name} ({where}:{self.line})"


def manifest_files(folder: Path, deploy: DeployConfig) -> list[Path]:
    """The files and kustomizations the section names, in order: a folder's YAML files
    sorted by name; a folder that is a kustomization as itself."""
    files: list[Path] = []
    for entry in deploy.manifests:
        path = (folder / entry).resolve()
        if path.is_dir() and kustomization_of(path) is None:
            files.extend(_folder_files(folder, entry, path))
        else:
            files.append(path)
    return files


def _folder_files(workspace: Path, entry: str, path: Path) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
    for file in files:
        if file.name in KUSTOMIZATION_FILES:
            # Its folder is a base or an overlay: applying it file by file would apply the
            # raw base and every overlay at once.
            nested = file.parent.relative_to(workspace.resolve()).as_posix()
            raise ConfigError(
                file,
                f"the folder {entry} holds the kustomization {nested}; podlink renders a "
                "kustomization only when deploy.manifests names its folder",
                hint=f"list {nested} (the overlay to deploy) in deploy.manifests, not {entry}",
            )
    return files


def load_manifests(folder: Path, deploy: DeployConfig, namespace: str = "") -> list[Manifest]:
    """Every object of the manifests, kustomizations and helm releases, with the image put
    in place. ``namespace``: the one helm renders a release for. Raises ConfigError."""
    manifests: list[Manifest] = []
    workspace = folder.resolve()
    for path in manifest_files(folder, deploy):
        shown = path.relative_to(workspace).as_posix()
        if path.is_dir():
            text, renderer = render_kustomization(path)
            rendered = _parse_text(path, text)
            manifests.extend(replace(each, shown=shown, rendered_by=renderer) for each in rendered)
        else:
            manifests.extend(replace(each, shown=shown) for each in _parse_file(path))
    for release in deploy.helm:
        text = render_helm(workspace, release, namespace)
        chart = (workspace / release.chart).resolve()
        blame = chart if chart.is_dir() else workspace
        shown = f"helm release {release.release}"
        rendered = _parse_text(blame, text)
        manifests.extend(
            replace(each, shown=shown, rendered_by="helm template") for each in rendered
        )
    if deploy.image is not None:
        for manifest in manifests:
            replace_image(manifest.body, deploy.image)
    return manifests


def _parse_file(path: Path) -> list[Manifest]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, f"cannot read the manifest: {error}") from None
    return _parse_text(path, text)


def _parse_text(path: Path, text: str) -> list[Manifest]:
    manifests = []
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node said there is one
            body = loader.construct_document(node)
            if body is not None:
                manifests.append(_check_object(path, node.start_mark.line + 1, body))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = ", ".join(p for p in (error.context, error.problem) if p) or "invalid YAML"
        raise ConfigError(
            path,
            f"invalid YAML: {problem}",
            line=mark.line + 1 if mark is not None else None,
            hint="the manifest must be valid YAML; documents are separated by ---",
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(path, f"invalid YAML: {error}") from None
    finally:
        loader.dispose()
    return manifests


def _check_object(path: Path, line: int, body: object) -> Manifest:
    if not isinstance(body, dict):
        raise ConfigError(
            path, "a manifest document must be a mapping (a Kubernetes object)", line=line
        )
    for key in ("apiVersion", "kind"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise ConfigError(path, f"the object has no {key}", line=line, key=key)
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise ConfigError(
            path, f"the {body['kind']} has no metadata.name", line=line, key="metadata.name"
        )
    return Manifest(path, line, body)


def replace_image(body: dict[str, Any], image: DeployImageConfig) -> None:
    for spec in _pod_specs(body):
        for key in ("containers", "initContainers"):
            for container in spec.get(key) or []:
                if isinstance(container, dict) and _is_image(container.get("image"), image.name):
                    container["image"] = image.replace


def _pod_specs(body: dict[str, Any]) -> list[dict[str, Any]]:
    spec = body.get("spec")
    if not isinstance(spec, dict):
        return []
    if body.get("kind") == "Pod":
        return [spec]
    template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get(
        "template"
    )
    pod_spec = (template or {}).get("spec") if isinstance(template, dict) else None
    return [pod_spec] if isinstance(pod_spec, dict) else []


def _is_image(value: object, name: str) -> bool:
    """``web``, ``web:1.0`` and ``web@sha256:...`` are all the image ``web``."""
    if not isinstance(value, str):
        return False
    repository = value.split("@", 1)[0]
    last_slash = repository.rfind("/")
    if repository.rfind(":") > last_slash:
        repository = repository[: repository.rfind(":")]
    return value == name or repository == name


class Deployer:
    """Applies manifests to one cluster and waits for their rollouts. Blocking."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        on_log: Callable[[str], None],
        *,
        where: str,
        rollout_seconds: float = ROLLOUT_SECONDS,
        on_created: Callable[[AppliedObject], None] | None = None,
    ) -> None:
        """``on_created`` hears of each object the apply created (not one it changed)."""
        self._api = api
        self._on_created = on_created
        self._namespace = namespace
        self._on_log = on_log
        self._where = where
        self._rollout_seconds = rollout_seconds
        self._dynamic: Any = None

    def deploy(self, manifests: Sequence[Manifest]) -> None:
        applied = [self.apply(manifest) for manifest in manifests]
        for manifest, namespace in zip(manifests, applied, strict=True):
            if manifest.kind == "Deployment" and manifest.body["apiVersion"] == "apps/v1":
                self.wait_for_rollout(manifest, namespace)

    def look_up_kinds(self, manifests: Sequence[Manifest]) -> None:
        """Read the cluster's API resources for these objects now, ahead of ``deploy``.
        Raises TargetUnavailable for a kind the cluster does not have."""
        for manifest in manifests:
            self._resource(manifest)

    def apply(self, manifest: Manifest) -> str:
        """Server-side apply one object; the namespace it went to ("" if cluster-wide)."""
        resource = self._resource(manifest)
        namespace = ""
        if resource.namespaced:
            namespace = manifest.body["metadata"].get("namespace") or self._namespace
        existed = self._on_created is None or self._exists(manifest, resource, namespace)
        try:
            result = self._client().server_side_apply(
                resource,
                body=manifest.body,
                name=manifest.name,
                namespace=namespace or None,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except DynamicApiError as error:
            raise self._refused(manifest, error, resource.name, namespace) from error
        except Exception as error:
            raise TargetUnavailable(
                f"applying {manifest.label}: cannot reach the API server ({self._where}): {error}"
            ) from error
        metadata = result.to_dict().get("metadata") or {}
        generation = metadata.get("generation")
        if not existed and self._on_created is not None:
            self._on_created(
                AppliedObject(
                    manifest.body["apiVersion"],
                    manifest.kind,
                    namespace,
                    manifest.name,
                    str(metadata.get("uid", "")),
                )
            )
        where = f" in namespace {namespace}" if namespace else ""
        self._on_log(
            f"applied {manifest.kind.lower()}/{manifest.name}{where}"
            + (f" (generation {generation})" if generation else "")
        )
        return namespace

    def _exists(self, manifest: Manifest, resource: Any, namespace: str) -> bool:
        try:
            self._client().get(
                resource,
                name=manifest.name,
                namespace=namespace or None,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except DynamicApiError as error:
            # Not allowed to look (403): not counted as created, so purge never deletes it;
            # the apply itself reports what it is refused.
            return int(getattr(error, "status", 0) or 0) != 404
        return True

    def _client(self) -> Any:
        if self._dynamic is None:
            try:
                self._dynamic = _dynamic_module.DynamicClient(self._api)
            except Exception as error:
                raise TargetUnavailable(
                    f"reading the API server's resource list ({self._where}): {error}"
                ) from error
        return self._dynamic

    def _resource(self, manifest: Manifest) -> Any:
        api_version = manifest.body["apiVersion"]
        try:
            return self._client().resources.get(api_version=api_version, kind=manifest.kind)
        except ResourceNotFoundError:
            raise TargetUnavailable(
                f"{manifest.label}: the cluster has no kind {manifest.kind!r} in "
                f"apiVersion {api_version!r} ({self._where}); check apiVersion and kind, or "
                "install the CustomResourceDefinition first"
            ) from None

    def _refused(
        self, manifest: Manifest, error: DynamicApiError, resource: str, namespace: str
    ) -> TargetUnavailable:
        status = int(getattr(error, "status", 0) or 0)
        message = _server_message(error)
        if status == 403:
            from podlink.targets.kubernetes.cluster import explain_failure

            wrapped = ApiException(status=status, reason=str(getattr(error, "reason", "")))
            wrapped.body = getattr(error, "body", None)
            return TargetUnavailable(
                explain_failure(
                    wrapped,
                    attempted=f"applying {manifest.label}",
                    where=self._where,
                    namespace=namespace or self._namespace,
                    verb="patch",
                    resource=resource,
                )
            )
        return TargetUnavailable(
            f"applying {manifest.label}: the API server refused it ({status}): {message}"
        )

    def wait_for_rollout(self, manifest: Manifest, namespace: str) -> None:
        """Until the Deployment's controller saw the applied spec and every replica is
        updated and available, with a line each time the counts change."""
        resource = self._resource(manifest)
        deadline = time.monotonic() + self._rollout_seconds
        progress = _RolloutProgress(manifest.name, self._on_log)
        while True:
            try:
                body = (
                    self._client()
                    .get(
                        resource,
                        name=manifest.name,
                        namespace=namespace,
                        _request_timeout=REQUEST_TIMEOUT,
                    )
                    .to_dict()
                )
            except DynamicApiError as error:
                raise self._refused(manifest, error, resource.name, namespace) from error
            if progress.done(body):
                return
            self._check_deadline(manifest, deadline, progress.last)
            version = str((body.get("metadata") or {}).get("resourceVersion") or "")
            if not self._watch_until_done(
                resource, manifest, namespace, version, progress, deadline
            ):
                time.sleep(POLL_SECONDS)

    def _watch_until_done(
        self,
        resource: Any,
        manifest: Manifest,
        namespace: str,
        version: str,
        progress: _RolloutProgress,
        deadline: float,
    ) -> bool:
        """Follow the Deployment's changes after ``version``: True once rolled out, False
        when the watch ended or failed (the caller reads it again)."""
        remaining = max(1, int(deadline - time.monotonic()) + 1)
        try:
            events = self._client().watch(
                resource,
                namespace=namespace,
                name=manifest.name,
                resource_version=version or None,
                timeout=min(WATCH_SECONDS, remaining),
            )
            for event in events:
                body = event.get("raw_object")
                if event.get("type") not in ("ADDED", "MODIFIED") or not isinstance(body, dict):
                    return False  # deleted, or an ERROR such as an expired version
                if progress.done(body):
                    return True
                self._check_deadline(manifest, deadline, progress.last)
        except TargetUnavailable:
            raise
        except Exception as error:  # the GET that follows reports what is really wrong
            log.debug("watching deployment/%s failed: %s", manifest.name, error)
        return False

    def _check_deadline(self, manifest: Manifest, deadline: float, progress: str) -> None:
        if time.monotonic() > deadline:
            raise TargetUnavailable(
                f"deployment/{manifest.name} did not roll out in "
                f"{self._rollout_seconds:.0f} s ({progress}); `podlink logs --all` and "
                f"`kubectl describe deployment {manifest.name}` tell why"
            )


class _RolloutProgress:
    """A Deployment's rollout as seen so far: a line when the counts change, an error when
    it is stuck."""

    def __init__(self, name: str, on_log: Callable[[str], None]) -> None:
        self._name = name
        self._on_log = on_log
        self.last = ""

    def done(self, body: dict[str, Any]) -> bool:
        done, progress, stuck = _rollout_state(body)
        if progress != self.last:
            self._on_log(f"deployment/{self._name}: {progress}")
            self.last = progress
        if stuck and not done:
            raise TargetUnavailable(f"deployment/{self._name} does not roll out: {stuck}")
        return done


def _rollout_state(body: dict[str, Any]) -> tuple[bool, str, str]:
    """Whether the rollout is done, a line on its progress, and why it is stuck ("")."""
    wanted = (body.get("spec") or {}).get("replicas", 1)
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation", 0)
    observed = status.get("observedGeneration", 0) >= generation
    updated = status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    total = status.get("replicas", 0)
    done = observed and updated == wanted and available == wanted and total == wanted
    if not observed:
        progress = "waiting for the controller to see the new spec"
    else:
        progress = f"{updated}/{wanted} updated, {available}/{wanted} available"
        if total > updated:
            progress += f", {total - updated} old pending termination"
    stuck = ""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == (
            "ProgressDeadlineExceeded"
        ):
            stuck = str(condition.get("message") or "progress deadline exceeded")
    return done, progress, stuck


def _server_message(error: DynamicApiError) -> str:
    body = getattr(error, "body", None)
    try:
        parsed = json.loads(body or "{}")
    except (TypeError, ValueError):
        parsed = {}
    message = parsed.get("message") if isinstance(parsed, dict) else None
    return str(message or getattr(error, "reason", "") or error)
