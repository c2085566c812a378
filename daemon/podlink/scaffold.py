"""`podlink init`: look at a project and write a commented starter podlink.yaml.

Detection is best effort and never fails: unreadable or broken files are skipped. The
target is picked in this order: a Kubernetes Deployment in the manifests, a Dockerfile, a
compose file, and otherwise the local target. Every guessed value is checked before it is
written (ports in range, remote paths absolute) so that the starter file always loads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import yaml

from podlink.config import CONFIG_FILE_NAME, MAX_PORT, is_system_folder

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


# ---------------------------------------------------------------------------------------
# Rendering.


def render_starter_config(folder: Path) -> str:
    """A commented podlink.yaml for the project in ``folder``."""
    hints = detect_project(folder)
    target_lines, remote, ports = _target_section(hints)
    sections = [
        _HEADER,
        ["version: 1", ""],
        target_lines,
        _deploy_section(hints),
        _sync_section(remote),
        _ports_section(ports),
        _run_section(hints.run_command, hints.python_entry),
        _DEBUG_SECTION,
        _test_section(hints.test_command),
        _build_section(hints),
    ]
    return "\n".join(line for section in sections for line in section) + "\n"


def write_starter_config(folder: Path, *, force: bool = False) -> Path:
    """Write the starter podlink.yaml into ``folder``; refuse to replace one unless ``force``."""
    path = folder / CONFIG_FILE_NAME
    text = render_starter_config(folder)
    try:
        with path.open("w" if force else "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; pass --force to overwrite it") from None
    return path


_HEADER = [
    "# podlink: sync this folder into a dev target, run the app there, debug and test it.",
    "# Written by `podlink init` from what it found in the project; edit to taste.",
    "# A mistake here is reported with its line and key.",
]
_DEBUG_SECTION = [
    "debug: {port: 5678, justMyCode: true}   # debugpy's port in the target",
    "",
]
_BUILD_SECTION = [
    "# build:                  # a build step run in the target; output becomes diagnostics",
    '#   command: ["python3", "-m", "compileall", "-q", "."]',
]


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when YAML reads it back unchanged, else quoted."""
    if re.fullmatch(r"[A-Za-z0-9_./-]+", value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def _flow_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(value, ensure_ascii=False) for value in values) + "]"


def _remote_or_default(*candidates: str | None) -> str:
    """The first usable working directory from the project files, else /app.

    A system folder (``/``, ``/usr/src``) is not usable: podlink.yaml refuses it as a remote.
    """
    for candidate in candidates:
        if not candidate or not candidate.startswith("/") or "$" in candidate:
            continue
        path = PurePosixPath(candidate)
        if ".." not in path.parts and not is_system_folder(path.as_posix()):
            return path.as_posix()
    return DEFAULT_REMOTE


def _commented(lines: Iterable[str]) -> list[str]:
    # Keep the two-space indent under `target:` so uncommenting a block is all it takes.
    return ["  # " + line.removeprefix("  ") for line in lines]


def _target_section(hints: ProjectHints) -> tuple[list[str], str, tuple[int, ...]]:
    """The `target:` lines, the remote path that fits it, and the ports it suggests."""
    if hints.deployment_name is not None:
        active, others = _kubernetes_block(hints), [_docker_block(hints), _LOCAL_BLOCK]
        remote = _remote_or_default(hints.container_workdir, hints.dockerfile_workdir)
        ports = hints.container_ports or hints.dockerfile_ports
    elif hints.dockerfile is not None:
        active, others = _docker_build_block(hints), [_kubernetes_block(hints), _LOCAL_BLOCK]
        remote = _remote_or_default(hints.dockerfile_workdir)
        ports = hints.dockerfile_ports
    elif hints.compose_container is not None:
        active, others = _docker_compose_block(hints), [_kubernetes_block(hints), _LOCAL_BLOCK]
        remote = _remote_or_default(hints.compose_workdir)
        ports = hints.compose_ports
    else:
        active, others = _LOCAL_BLOCK, [_docker_block(hints), _kubernetes_block(hints)]
        remote, ports = DEFAULT_REMOTE, ()
    lines = ["target:                    # exactly one of local | docker | kubernetes", *active]
    for block in others:
        lines += _commented(block)
    return [*lines, ""], remote, ports


_LOCAL_BLOCK = [
    "  local:                   # a folder on this machine; the app runs here too",
    "    root: .podlink/target  # remote paths live under it: /app is .podlink/target/app",
]


def _docker_block(hints: ProjectHints) -> list[str]:
    if hints.dockerfile is not None:
        return _docker_build_block(hints)
    if hints.compose_container is not None:
        return _docker_compose_block(hints)
    return [
        "  docker:",
        "    image: python:3.12-slim  # a dev container from this image, or:",
        "    # container: web-dev     # attach to a running container",
        "    # build: {context: ., dockerfile: Dockerfile}",
    ]


def _docker_build_block(hints: ProjectHints) -> list[str]:
    dockerfile = _scalar((hints.dockerfile or Path("Dockerfile")).as_posix())
    return [
        "  docker:                  # a dev container built from the Dockerfile, or:",
        f"    build: {{context: ., dockerfile: {dockerfile}}}",
        "    # container: web-dev     # attach to a running container",
        "    # image: python:3.12-slim",
    ]


def _docker_compose_block(hints: ProjectHints) -> list[str]:
    container = _scalar(hints.compose_container or "web-dev")
    if hints.compose_container_named:
        note = f"container_name of service {hints.compose_service}"
    else:
        note = f"the name compose gives service {hints.compose_service}; check `docker ps`"
    compose_file = hints.compose_file.as_posix() if hints.compose_file else "compose file"
    return [
        f"  docker:                  # attach to a container of {compose_file}",
        f"    # {hints.compose_reason}",
        f"    container: {container}  # {note}",
        f"    # start it first: docker compose -f {compose_file} up -d",
    ]


def _kubernetes_block(hints: ProjectHints) -> list[str]:
    if hints.deployment_name is None:
        return [
            "  kubernetes:",
            "    # context: kind-dev     # kubeconfig context; the current one when unset",
            "    namespace: default",
            '    pod: {selector: "app=web"}   # or {name: web-7d9c...}',
            "    container: web",
            '    devMode: {deployment: web, command: ["sleep", "infinity"]}',
        ]
    labels = hints.pod_labels or (("app", hints.deployment_name),)
    selector = ",".join(f"{key}={value}" for key, value in labels)
    namespace = hints.deployment_namespace
    deployment = _scalar(hints.deployment_name)
    lines = [
        f"  kubernetes:              # the Deployment {hints.deployment_name}",
        "    # context: kind-dev     # kubeconfig context; the current one when unset",
        f"    namespace: {_scalar(namespace)}" if namespace else "    # namespace: default",
        f"    pod: {{selector: {_scalar(selector)}}}   # from the Deployment's matchLabels",
    ]
    if hints.container_name:
        why = f"  # {hints.container_reason}" if hints.container_reason else ""
        lines.append(f"    container: {_scalar(hints.container_name)}{why}")
    dev_mode = f"devMode: {{deployment: {deployment}, command: {_flow_list(DEV_MODE_COMMAND)}}}"
    if hints.run_command is None:
        # Without a run command nothing would start the app once dev mode idles the pod.
        return [
            *lines,
            "    # Set run: below, then let podlink run the app in place of the",
            "    # Deployment's own command (restored when the session stops):",
            f"    # {dev_mode}",
        ]
    return [
        *lines,
        "    # devMode swaps the Deployment's command for an idle one so that podlink runs",
        "    # the app; the Deployment is restored when the session stops.",
        f"    {dev_mode}",
    ]


def _deploy_section(hints: ProjectHints) -> list[str]:
    """The manifests that hold the Deployment, applied before the pod is picked: the first
    overlay where the project has kustomizations, else the files."""
    if hints.deployment_name is None or not hints.kubernetes_manifests:
        return []
    if hints.kustomizations:
        chosen, *others = (path.as_posix() for path in hints.kustomizations)
        lines = [
            "deploy:                    # applied (server-side apply) by `podlink up` first",
            f"  manifests: {_flow_list([chosen])}",
            f"  # Assumed: the kustomization in {chosen} is the one to deploy; podlink renders",
            "  # it with `kubectl kustomize` (or `kustomize build`).",
        ]
        if others:
            lines.append(f"  # Also here: {', '.join(others)}.")
        return [*lines, _IMAGE_SWAP_COMMENT, ""]
    manifests = [path.as_posix() for path in hints.kubernetes_manifests]
    return [
        "deploy:                    # applied (server-side apply) by `podlink up` first",
        f"  manifests: {_flow_list(manifests)}",
        "  # The files that hold workloads; add the Services and ConfigMaps they need.",
        _IMAGE_SWAP_COMMENT,
        "",
    ]


_IMAGE_SWAP_COMMENT = (
    "  # image: {name: web, replace: registry.example/web:dev}   # swap the built image in"
)


def _build_section(hints: ProjectHints) -> list[str]:
    """An image built from the Dockerfile for the Deployment's container, when there are both."""
    image = _repository(hints.container_image or "")
    if hints.dockerfile is None or hints.deployment_name is None or not image:
        return _BUILD_SECTION
    container = f"container {hints.container_name}" if hints.container_name else "the app"
    if ("/" in image and any(mark in image.split("/")[0] for mark in ".:")) or image.startswith(
        "localhost/"
    ):
        delivery = f"pushed to {image.split('/')[0]} (with your `docker login` credentials)"
    else:
        delivery = "loaded into a kind or minikube cluster (name a registry host to push)"
    return [
        "build:                     # run by `podlink up` before it deploys",
        "  image:",
        f"    # Assumed: {hints.dockerfile.as_posix()} builds the image that {container} of",
        f"    # Deployment {hints.deployment_name} runs ({hints.container_image}). podlink tags it",
        "    # by the build's content and the manifests run that tag.",
        f"    name: {_scalar(image)}",
        "    context: .",
        f"    dockerfile: {_scalar(hints.dockerfile.as_posix())}",
        '    # args: {PYTHON_VERSION: "3.12"}   # build arguments; target: dev for a stage',
        f"    # deliver: auto           # here: {delivery}",
        '  # command: ["python3", "-m", "compileall", "-q", "."]   # run in the target',
        "",
    ]


def _repository(image: str) -> str:
    """``registry:5000/web`` of ``registry:5000/web:1.0`` or ``web@sha256:...``."""
    repository = image.split("@", 1)[0]
    if repository.rfind(":") > repository.rfind("/"):
        repository = repository[: repository.rfind(":")]
    return repository


def _sync_section(remote: str) -> list[str]:
    return [
        "sync:",
        "  - local: .",
        f"    remote: {_scalar(remote)}",
        "    mode: upload             # upload | two-way",
        f"    exclude: {_flow_list(SYNC_EXCLUDES)}   # on top of .gitignore and .podlinkignore",
        "",
    ]


def _ports_section(ports: Sequence[int]) -> list[str]:
    if not ports:
        return [
            '# ports: ["8000", "9000:8000"]   # remote 8000 -> local 8000 (or the next free',
            "#                                # port); local 9000 -> remote 8000",
            "",
        ]
    return [
        f"ports: {_flow_list(str(port) for port in ports)}"
        "   # remote -> same local port, or the next free one",
        "",
    ]


def _run_section(command: Sequence[str] | None, entry: Path | None) -> list[str]:
    if command is None or entry is None:
        return [
            "# run:                    # the app, started in the target and restarted on sync",
            '#   command: ["python3", "-m", "app"]',
            "#   restart: on-sync      # on-sync | never",
            "#   env: {APP_ENV: dev}",
            "",
        ]
    return [
        f"run:                       # guessed from {entry.as_posix()}; check it",
        f"  command: {_flow_list(command)}",
        "  restart: on-sync           # on-sync | never",
        "  # env: {APP_ENV: dev}",
        "",
    ]


def _test_section(command: Sequence[str] | None) -> list[str]:
    if command is None:
        return [
            "# test:                   # run by `podlink test`, results shown in the editor",
            '#   command: ["python3", "-m", "pytest"]',
            "",
        ]
    return [
        "test:                       # run by `podlink test`, results shown in the editor",
        f"  command: {_flow_list(command)}",
        "",
    ]
