"""The starter podlink.yaml `podlink init` writes from what was found: every guessed value
checked so that the file always loads, and comments that say what was assumed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import yaml

from podlink.config import CONFIG_FILE_NAME, is_system_folder
from podlink.scaffold.detect import (
    DEFAULT_REMOTE,
    DEV_MODE_COMMAND,
    SYNC_EXCLUDES,
    ProjectHints,
    detect_project,
)


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
