"""What `podlink init` finds in a project: a Kubernetes Deployment in the manifests, a
Dockerfile, a compose file, the Python entry point, pytest. Best effort: unreadable or
broken files are skipped."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import yaml

from podlink.config import MAX_PORT

DEFAULT_REMOTE = "/app"
DEV_MODE_COMMAND = ("sleep", "infinity")
DOCKERFILE_NAMES = ("Dockerfile", "Containerfile")
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "Pod"})
MANIFEST_SEARCH_DEPTH = 3
MAX_FILE_BYTES = 1 << 20
# Besides hidden folders: these hold dependencies and caches, not the project's manifests.
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml")
SKIPPED_FOLDERS = frozenset({"node_modules", "venv", "__pycache__", "site-packages"})
SYNC_EXCLUDES = (".git/", ".venv/", "node_modules/", "__pycache__/", ".podlink/")
PYTEST_COMMAND = ("python3", "-m", "pytest")


class ProjectHints(msgspec.Struct, frozen=True, kw_only=True):
    """What `podlink init` found. Paths are relative to the project folder.

    ``container_name`` and the ``container_*`` fields describe the app container of the
    first Deployment (the first one that is not a known sidecar); ``compose_*`` the compose
    service that builds from or mounts this folder, else the first one.
    """

    dockerfile: Path | None = None
    dockerfile_ports: tuple[int, ...] = ()
    dockerfile_workdir: str | None = None
    compose_file: Path | None = None
    compose_service: str | None = None
    # container_name from the compose file, else the name compose gives: PROJECT-SERVICE-1.
    compose_container: str | None = None
    compose_container_named: bool = False
    compose_ports: tuple[int, ...] = ()
    compose_workdir: str | None = None
    # Why that service: it builds from or mounts this folder, or it is simply the first.
    compose_reason: str | None = None
    kubernetes_manifests: tuple[Path, ...] = ()
    # Folders with a kustomization.yaml that no other kustomization names as a base: the
    # overlays one of which is deployed (rendered by kustomize), in name order.
    kustomizations: tuple[Path, ...] = ()
    deployment_name: str | None = None
    deployment_namespace: str | None = None
    pod_labels: tuple[tuple[str, str], ...] = ()
    container_name: str | None = None
    # The image the app container runs, as the manifest names it.
    container_image: str | None = None
    container_ports: tuple[int, ...] = ()
    container_workdir: str | None = None
    container_reason: str | None = None
    python_entry: Path | None = None
    run_command: tuple[str, ...] | None = None
    test_command: tuple[str, ...] | None = None


# ---------------------------------------------------------------------------------------
# Detection.


def detect_project(folder: Path) -> ProjectHints:
    """Look at ``folder`` for a Dockerfile, a compose file, Kubernetes manifests and Python."""
    manifests = tuple(_find_workload_manifests(folder))
    entry = _find_python_entry(folder)
    return ProjectHints(
        **_dockerfile_hints(folder),
        **_compose_hints(folder),
        **_deployment_hints(folder, manifests),
        kubernetes_manifests=manifests,
        kustomizations=_find_overlays(folder),
        python_entry=entry,
        run_command=_run_command(entry),
        test_command=PYTEST_COMMAND if _uses_pytest(folder) else None,
    )


def _first_existing(folder: Path, names: Iterable[str]) -> Path | None:
    return next((Path(name) for name in names if (folder / name).is_file()), None)


def _read_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _dockerfile_hints(folder: Path) -> dict[str, Any]:
    dockerfile = _first_existing(folder, DOCKERFILE_NAMES)
    text = _read_text(folder / dockerfile) if dockerfile else None
    if dockerfile is None or text is None:
        return {"dockerfile": dockerfile}
    ports: list[int] = []
    workdir: str | None = None
    for instruction, arguments in _dockerfile_instructions(text):
        if instruction == "EXPOSE":
            ports.extend(_port_numbers(arguments.split()))
        elif instruction == "WORKDIR":
            workdir = arguments.strip().strip("\"'")
    return {
        "dockerfile": dockerfile,
        "dockerfile_ports": _unique(ports),
        "dockerfile_workdir": workdir,
    }


def _dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    for line in text.replace("\\\n", " ").splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and not words[0].startswith("#"):
            yield words[0].upper(), words[1]


def _port_numbers(specs: Iterable[object]) -> list[int]:
    """Container ports from ``8000``, ``"8000/tcp"``, ``"127.0.0.1:9000:8000"``; others skipped."""
    ports = []
    for spec in specs:
        text = str(spec).rsplit(":", 1)[-1].split("/", 1)[0].strip()
        if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PORT:
            ports.append(int(text))
    return ports


def _unique(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(values))


def _load_yaml_documents(path: Path) -> list[object]:
    text = _read_text(path)
    if text is None:
        return []
    try:
        return list(yaml.safe_load_all(text))
    except (yaml.YAMLError, ValueError, RecursionError):
        return []


def _get(value: object, *keys: str | int) -> object:
    """``value[k1][k2]...``, or None where the shape does not match."""
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and key < len(value):
            value = value[key]
        else:
            return None
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _compose_hints(folder: Path) -> dict[str, Any]:
    compose_file = _first_existing(folder, COMPOSE_FILE_NAMES)
    documents = _load_yaml_documents(folder / compose_file) if compose_file else []
    services = _get(documents[0], "services") if documents else None
    if compose_file is None or not isinstance(services, Mapping) or not services:
        return {"compose_file": compose_file}
    service_name, service, reason, mounted_at = _app_service(folder, services)
    named = _text(_get(service, "container_name"))
    project = _text(_get(documents[0], "name")) or folder.resolve().name
    ports = _get(service, "ports")
    return {
        "compose_reason": reason,
        "compose_file": compose_file,
        "compose_service": str(service_name),
        "compose_container": named or f"{_compose_project_name(project)}-{service_name}-1",
        "compose_container_named": named is not None,
        "compose_ports": _unique(_compose_ports(ports if isinstance(ports, list) else [])),
        "compose_workdir": mounted_at or _text(_get(service, "working_dir")),
    }


def _app_service(folder: Path, services: Mapping[Any, Any]) -> tuple[str, object, str, str | None]:
    """The service to attach to, why, and where it mounts this folder (if it does).

    The first service is often a database or a cache; the app's own is the one whose image
    is built from this folder or that mounts it (then the mount is where the code lives).
    """
    here = folder.resolve()
    first = str(next(iter(services)))
    for name, service in services.items():
        mounted_at = _mount_of(here, _get(service, "volumes"))
        build = _get(service, "build")
        context = build if isinstance(build, str) else _text(_get(build, "context"))
        builds_here = context is not None and (folder / context).resolve() == here
        if builds_here or mounted_at:
            what = "builds from" if builds_here else f"mounts this folder at {mounted_at}"
            reason = f"service {name}: it {what}" + (" this folder" if builds_here else "")
            if str(name) != first:
                reason += f" (not {first}, the first service)"
            return str(name), service, reason, mounted_at
    return first, services[next(iter(services))], f"service {first}: the first service", None


def _mount_of(here: Path, volumes: object) -> str | None:
    """Where a compose service's ``volumes`` mount the folder ``here``, if they do."""
    for volume in volumes if isinstance(volumes, list) else []:
        target: str | None
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.partition(":")[0]
        else:
            source, target = _text(_get(volume, "source")) or "", _text(_get(volume, "target"))
        # A bind mount's source is a path (named volumes are bare names).
        if target and source.startswith((".", "/")) and (here / source).resolve() == here:
            return target
    return None


def _compose_project_name(name: str) -> str:
    # Compose lower-cases the project name and keeps letters, digits, "-" and "_".
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("-_") or "project"


def _compose_ports(entries: Sequence[object]) -> list[int]:
    specs = [_get(entry, "target") if isinstance(entry, Mapping) else entry for entry in entries]
    return _port_numbers(spec for spec in specs if spec is not None)


def _find_workload_manifests(folder: Path) -> Iterator[Path]:
    for path in _yaml_files(folder):
        documents = _load_yaml_documents(path)
        if any(_get(document, "kind") in WORKLOAD_KINDS for document in documents):
            yield path.relative_to(folder)


def _find_overlays(folder: Path) -> tuple[Path, ...]:
    kustomizations = [
        path.parent for path in _yaml_files(folder) if path.name in KUSTOMIZATION_NAMES
    ]
    bases: set[Path] = set()
    for kustomization in kustomizations:
        file = next(kustomization / n for n in KUSTOMIZATION_NAMES if (kustomization / n).is_file())
        documents = _load_yaml_documents(file)
        for key in ("resources", "bases", "components"):
            entries = _get(documents[0], key) if documents else None
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, str) and "://" not in entry:
                    bases.add((kustomization / entry).resolve())
    return tuple(
        kustomization.relative_to(folder)
        for kustomization in kustomizations
        if kustomization.resolve() not in bases
    )


def _yaml_files(folder: Path) -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(folder):
        depth = len(Path(directory).relative_to(folder).parts)
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if depth < MANIFEST_SEARCH_DEPTH
            and not name.startswith(".")
            and name not in SKIPPED_FOLDERS
        )
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")) and name not in COMPOSE_FILE_NAMES:
                yield Path(directory, name)


def _deployment_hints(folder: Path, manifests: Iterable[Path]) -> dict[str, Any]:
    deployment = next(
        (
            document
            for manifest in manifests
            for document in _load_yaml_documents(folder / manifest)
            if _get(document, "kind") == "Deployment" and _text(_get(document, "metadata", "name"))
        ),
        None,
    )
    if deployment is None:
        return {}
    container, reason = _app_container(_get(deployment, "spec", "template", "spec", "containers"))
    container_ports = _get(container, "ports")
    port_specs = [
        _get(port, "containerPort")
        for port in (container_ports if isinstance(container_ports, list) else [])
    ]
    return {
        "deployment_name": _text(_get(deployment, "metadata", "name")),
        "deployment_namespace": _text(_get(deployment, "metadata", "namespace")),
        "pod_labels": _pod_labels(deployment),
        "container_name": _text(_get(container, "name")),
        "container_image": _text(_get(container, "image")),
        "container_ports": _unique(_port_numbers(s for s in port_specs if s is not None)),
        "container_workdir": _text(_get(container, "workingDir")),
        "container_reason": reason,
    }


# Containers that service meshes, secret stores and proxies inject beside the app.
KNOWN_SIDECARS = frozenset(
    {
        "istio-proxy",
        "istio-init",
        "linkerd-proxy",
        "linkerd-init",
        "envoy",
        "envoy-sidecar",
        "consul-connect-envoy-sidecar",
        "vault-agent",
        "vault-agent-init",
        "cloud-sql-proxy",
        "cloudsql-proxy",
        "oauth2-proxy",
        "datadog-agent",
        "fluent-bit",
        "fluentd",
        "otel-collector",
        "jaeger-agent",
    }
)


def _app_container(containers: object) -> tuple[object, str | None]:
    """The first container that is not a known sidecar, and why it was picked (when the
    first container was skipped)."""
    listed = containers if isinstance(containers, list) else []
    names = [_text(_get(container, "name")) or "" for container in listed]
    for index, container in enumerate(listed):
        if names[index] not in KNOWN_SIDECARS:
            skipped = ", ".join(names[:index])
            verb = "is a sidecar" if index == 1 else "are sidecars"
            return container, f"{skipped} {verb}" if index else None
    return (listed[0] if listed else None), None


def _pod_labels(deployment: object) -> tuple[tuple[str, str], ...]:
    for labels in (
        _get(deployment, "spec", "selector", "matchLabels"),
        _get(deployment, "spec", "template", "metadata", "labels"),
    ):
        if isinstance(labels, Mapping) and labels:
            return tuple((str(key), _label_value(value)) for key, value in labels.items())
    return ()


def _label_value(value: object) -> str:
    # YAML turns `tier: true` into a bool; the label itself is the text "true".
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _find_python_entry(folder: Path) -> Path | None:
    packages = sorted(
        (path.parent for path in folder.glob("*/__main__.py")),
        key=lambda package: (package.name != "app", package.name),
    )
    for package in packages:
        if package.name.isidentifier() and not package.name.startswith("test"):
            return Path(package.name, "__main__.py")
    return _first_existing(folder, ("main.py", "app.py"))


def _run_command(entry: Path | None) -> tuple[str, ...] | None:
    if entry is None:
        return None
    if entry.name == "__main__.py":
        return ("python3", "-m", entry.parent.name)
    return ("python3", entry.as_posix())


def _uses_pytest(folder: Path) -> bool:
    if any((folder / name).is_dir() for name in ("tests", "test")):
        return True
    if any((folder / name).is_file() for name in ("pytest.ini", "conftest.py")):
        return True
    markers = {
        "pyproject.toml": "[tool.pytest",
        "setup.cfg": "[tool:pytest]",
        "tox.ini": "[pytest]",
    }
    return any(marker in (_read_text(folder / name) or "") for name, marker in markers.items())
