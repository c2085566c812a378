"""Stage 4 of loading: rules that span fields (one target kind, sync roots inside the
workspace and apart, distinct local ports...), run on the typed result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import msgspec
from msgspec import UNSET, UnsetType

from podlink.config.convert import _PORT_SHAPE
from podlink.config.model import (
    _TARGET_KINDS,
    MAX_PORT,
    SUPPORTED_VERSION,
    BuildConfig,
    Config,
    DebugConfig,
    DeployConfig,
    DockerTargetConfig,
    HelmReleaseConfig,
    KeyPath,
    KubernetesTargetConfig,
    LocalTargetConfig,
    PortConfig,
    SyncEntryConfig,
    TargetConfig,
    _RawConfig,
    _RawTarget,
)
from podlink.config.source import _Source

# ---------------------------------------------------------------------------------------
# Stage 4: rules across fields.


def _check_rules(source: _Source, raw: _RawConfig, *, folder: Path, path: Path) -> Config:
    if raw.version != SUPPORTED_VERSION:
        raise source.error(
            ("version",),
            f"version {raw.version} is not supported",
            hint=f"this podlink reads version {SUPPORTED_VERSION}",
        )
    for section_path, section in (
        (("run",), raw.run),
        (("test",), raw.test),
        (("build",), raw.build),
    ):
        if section is not None and not (isinstance(section, BuildConfig) and section.image):
            _check_command(source, (*section_path, "command"), section.command)
    if raw.debug is not None:
        _check_port_number(source, ("debug", "port"), raw.debug.port)
        attach = raw.debug.attach
        if attach is not None:
            _require_exactly_one(
                source,
                ("debug", "attach"),
                {"port": attach.port is not None, "pid": attach.pid is not None},
                "port attaches to a process serving debugpy, pid injects debugpy into one",
            )
            if attach.port is not None:
                _check_port_number(source, ("debug", "attach", "port"), attach.port)
            if attach.pid is not None and attach.pid < 1:
                raise source.error(
                    ("debug", "attach", "pid"), f"pid {attach.pid} is not a process id (1 or more)"
                )
    target = _check_target(source, raw.target)
    config = Config(
        folder=folder,
        path=path,
        version=raw.version,
        target=target,
        sync=_check_sync(source, raw.sync, folder, target),
        ports=_check_ports(source, raw.ports),
        run=raw.run,
        debug=raw.debug or DebugConfig(),
        test=raw.test,
        build=raw.build,
        deploy=_check_deploy(source, raw.deploy, folder, target),
    )
    _check_image_build(source, raw.build, folder, config.target)
    return config


def _check_image_build(
    source: _Source, build: BuildConfig | None, folder: Path, target: TargetConfig
) -> None:
    image = build.image if build is not None else None
    if image is None:
        return
    if not isinstance(target, KubernetesTargetConfig):
        raise source.error(
            ("build", "image"),
            "builds an image for a kubernetes target, but the target is not a kubernetes one",
            hint="a docker target builds its own image with target: {docker: {build: ...}}",
        )
    if not image.name.strip() or ":" in image.name.rsplit("/", 1)[-1] or "@" in image.name:
        raise source.error(
            ("build", "image", "name"),
            f"{image.name!r} is not an image repository without a tag",
            hint="name the repository only, e.g. 127.0.0.1:5000/web: podlink picks the tag",
        )
    context = (folder / image.context).resolve()
    if not context.is_relative_to(folder) or not context.is_dir():
        raise source.error(
            ("build", "image", "context"),
            f"'{image.context}' is not a folder inside the workspace {folder}",
            hint="name the build context relative to the workspace, e.g. .",
        )
    if not (context / image.dockerfile).is_file():
        raise source.error(
            ("build", "image", "dockerfile"),
            f"there is no {image.dockerfile} in {context}",
            hint="name the Dockerfile relative to the build context",
        )
    if image.deliver == "containerd" and not image.containerd_socket:
        raise source.error(
            ("build", "image", "containerdSocket"),
            "deliver: containerd needs the socket of the cluster's containerd",
            hint="e.g. containerdSocket: /run/containerd/containerd.sock",
        )


def _check_deploy(
    source: _Source, deploy: DeployConfig | None, folder: Path, target: TargetConfig
) -> DeployConfig | None:
    if deploy is None:
        return None
    if not isinstance(target, KubernetesTargetConfig):
        raise source.error(
            ("deploy",),
            "deploys manifests to Kubernetes, but the target is not a kubernetes one",
            hint="set target: {kubernetes: ...}, or remove deploy:",
        )
    if not deploy.manifests and not deploy.helm:
        raise source.error(
            ("deploy", "manifests"),
            "needs at least one file or folder (or a helm: release)",
            hint="for example: [k8s/]",
        )
    for position, manifest in enumerate(deploy.manifests):
        where = ("deploy", "manifests", position)
        resolved = (folder / manifest).resolve()
        if not resolved.is_relative_to(folder):
            raise source.error(
                where,
                f"'{manifest}' resolves to {resolved}, outside the workspace folder {folder}",
                hint="keep manifests inside the workspace",
            )
        if not resolved.exists():
            raise source.error(
                where,
                f"'{manifest}' does not exist",
                hint="name a YAML file or a folder of them, relative to the workspace",
            )
    for position, release in enumerate(deploy.helm):
        _check_helm_release(source, ("deploy", "helm", position), release, folder)
    if deploy.image is not None:
        for key, value in (("name", deploy.image.name), ("replace", deploy.image.replace)):
            if not value.strip():
                raise source.error(("deploy", "image", key), "is empty", hint="name an image")
    return deploy


# What helm accepts as a release name: a DNS label of at most 53 characters.
_RELEASE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?")


def _check_helm_release(
    source: _Source, where: KeyPath, release: HelmReleaseConfig, folder: Path
) -> None:
    if not _RELEASE_NAME.fullmatch(release.release):
        raise source.error(
            (*where, "release"),
            f"{release.release!r} is not a helm release name",
            hint="lowercase letters, digits and '-', at most 53 characters, e.g. web",
        )
    if not release.chart.strip():
        raise source.error((*where, "chart"), "is empty", hint="name a chart folder, e.g. chart/")
    chart = (folder / release.chart).resolve()
    # A chart that is no folder here is one helm resolves itself (repo/name, oci://...).
    local = release.chart.startswith((".", "/")) or chart.exists()
    if local and (not chart.is_relative_to(folder) or not chart.is_dir()):
        raise source.error(
            (*where, "chart"),
            f"'{release.chart}' is not a chart folder inside the workspace {folder}",
            hint="name the folder that holds Chart.yaml, relative to the workspace",
        )
    for position, values in enumerate(release.values):
        path = (folder / values).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise source.error(
                (*where, "values", position),
                f"'{values}' is not a file inside the workspace {folder}",
                hint="name a values file relative to the workspace",
            )


def _check_command(source: _Source, key_path: KeyPath, command: Sequence[str]) -> None:
    if not command or not command[0].strip():
        raise source.error(
            key_path,
            "the command is empty",
            hint="give the program and its arguments, e.g. [python3, -m, app]",
        )


def _check_port_number(source: _Source, key_path: KeyPath, port: int) -> int:
    if not 1 <= port <= MAX_PORT:
        raise source.error(key_path, f"port {port} is out of range 1-{MAX_PORT}")
    return port


def _require_exactly_one(
    source: _Source, section_path: KeyPath, given: Mapping[str, bool], purpose: str
) -> None:
    choices = ", ".join(given)
    present = sorted(
        (name for name, is_given in given.items() if is_given),
        key=lambda name: source.line_of((*section_path, name)) or 0,
    )
    if not present:
        raise source.error(section_path, f"give one of {choices}", hint=purpose)
    if len(present) > 1:
        first, second = present[:2]
        first_line = source.line_of((*section_path, first))
        raise source.error(
            (*section_path, second),
            f"cannot be combined with {first} (line {first_line})",
            hint=f"give only one of {choices}: {purpose}",
        )


def _check_target(source: _Source, raw: _RawTarget | UnsetType | None) -> TargetConfig:
    if isinstance(raw, UnsetType):
        return LocalTargetConfig()
    given = {kind: raw is not None and getattr(raw, kind) is not UNSET for kind in _TARGET_KINDS}
    _require_exactly_one(source, ("target",), given, "a session works on one target")
    assert raw is not None
    if not isinstance(raw.docker, UnsetType):
        return _check_docker(source, raw.docker or DockerTargetConfig())
    if isinstance(raw.kubernetes, KubernetesTargetConfig):
        return _check_kubernetes(source, raw.kubernetes)
    if raw.kubernetes is None:
        raise source.error(("target", "kubernetes"), "missing required key 'pod'")
    # `local:` with nothing under it means the local target with its defaults.
    return raw.local if isinstance(raw.local, LocalTargetConfig) else LocalTargetConfig()


def _check_docker(source: _Source, docker: DockerTargetConfig) -> DockerTargetConfig:
    given = {
        "container": docker.container is not None,
        "image": docker.image is not None,
        "build": docker.build is not None,
    }
    purpose = "container attaches to a running container, image and build create one"
    _require_exactly_one(source, ("target", "docker"), given, purpose)
    return docker


def _check_kubernetes(
    source: _Source, kubernetes: KubernetesTargetConfig
) -> KubernetesTargetConfig:
    pod = kubernetes.pod
    given = {"name": pod.name is not None, "selector": pod.selector is not None}
    purpose = "name picks one pod, selector picks by labels such as app=web"
    _require_exactly_one(source, ("target", "kubernetes", "pod"), given, purpose)
    if kubernetes.dev_mode is not None:
        command_path = ("target", "kubernetes", "devMode", "command")
        _check_command(source, command_path, kubernetes.dev_mode.command)
    return kubernetes


def _check_sync(
    source: _Source,
    entries: tuple[SyncEntryConfig, ...] | UnsetType,
    folder: Path,
    target: TargetConfig,
) -> tuple[SyncEntryConfig, ...]:
    if isinstance(entries, UnsetType):
        entries = (SyncEntryConfig(),)
        _check_not_system_folder(source, 0, entries[0].remote, folder, target)
        return entries
    if not entries:
        raise source.error(
            ("sync",), "needs at least one entry", hint="for example: [{local: ., remote: /app}]"
        )
    checked = []
    for position, entry in enumerate(entries):
        _check_local_inside(source, position, entry.local, folder)
        remote = _check_remote(source, position, entry.remote)
        _check_not_system_folder(source, position, remote, folder, target)
        _check_share(source, position, entry.max_delete_share)
        checked.append(msgspec.structs.replace(entry, remote=remote))
    _check_remotes_apart(source, checked)
    return tuple(checked)


def _check_share(source: _Source, position: int, share: float) -> None:
    if not 0 < share <= 1:
        raise source.error(
            ("sync", position, "maxDeleteShare"),
            f"must be a share of the tree above 0 and at most 1, got {share}",
            hint="0.5 pauses a sync that would delete more than half the files; 1 never pauses",
        )


def _check_local_inside(source: _Source, position: int, local: str, folder: Path) -> None:
    resolved = (folder / local).resolve()
    if not resolved.is_relative_to(folder):
        raise source.error(
            ("sync", position, "local"),
            f"'{local}' resolves to {resolved}, outside the workspace folder {folder}",
            hint="sync only folders inside the workspace",
        )


def _check_remote(source: _Source, position: int, remote: str) -> str:
    """The remote path, normalized (``/app/`` -> ``/app``), or an error if unusable."""
    where = ("sync", position, "remote")
    if not remote.startswith("/"):
        raise source.error(
            where,
            f"must be an absolute path in the target, got {remote!r}",
            hint=_absolute_remote_hint(remote),
        )
    parts = [part for part in remote.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise source.error(
            where, f"must not contain '..', got {remote!r}", hint="write the path it leads to"
        )
    return "/" + "/".join(parts)


def _check_not_system_folder(
    source: _Source, position: int, remote: str, folder: Path, target: TargetConfig
) -> None:
    """Refuse a sync root that is a system folder of the target (``/``, ``/usr``, ``/etc``...).

    Upload mode makes the sync root mirror the workspace: over a system folder that would
    put the workspace's files among the system's, and a reset would delete the system's.
    On the local target the folder on this machine counts (``/`` there is its own root).
    """
    where = ("sync", position, "remote")
    if isinstance(target, LocalTargetConfig):
        root = (folder / target.root).resolve()
        real = (root / remote.lstrip("/")).resolve()
        if not is_system_folder(real.as_posix()) and real != Path.home().resolve():
            return
        raise source.error(
            where,
            f"'{remote}' on the local target is {real}, a system folder of this machine "
            f"(target.local.root is {target.root!r})",
            hint="sync into a folder of its own: keep target.local.root inside the workspace "
            "(the default .podlink/target), or give a remote such as /app",
        )
    if is_system_folder(remote):
        raise source.error(
            where,
            f"'{remote}' is a system folder of the target; its files are not podlink's to "
            "replace or delete",
            hint=f"sync into a folder of its own, e.g. {_own_folder_example(remote)}",
        )


# Folders whose contents belong to the system (the Filesystem Hierarchy Standard's, and the
# usual homes). Their subfolders are fine (/usr/src/app, /home/dev/app), except below the
# kernel's own file systems.
_SYSTEM_FOLDERS = frozenset(
    {
        "/",
        *(
            f"/{name}"
            for name in (
                "bin boot dev etc home lib lib32 lib64 libx32 media mnt opt proc root run "
                "sbin srv sys tmp usr var"
            ).split()
        ),
        *(
            f"/usr/{name}"
            for name in "bin include lib lib32 lib64 libexec local sbin share src".split()
        ),
        *(f"/usr/local/{name}" for name in "bin etc include lib sbin share".split()),
        *(f"/var/{name}" for name in "cache lib local log mail opt run spool tmp".split()),
    }
)
_KERNEL_FOLDERS = ("/proc", "/sys", "/dev")


def is_system_folder(path: str) -> bool:
    """Whether a normalized absolute path is a folder whose contents belong to the system."""
    return path in _SYSTEM_FOLDERS or any(
        path.startswith(f"{kernel}/") for kernel in _KERNEL_FOLDERS
    )


def _own_folder_example(remote: str) -> str:
    if remote in ("/", "/opt", "/srv"):
        return "/app" if remote == "/" else f"{remote}/app"
    return "/app"


def _absolute_remote_hint(remote: str) -> str:
    if remote.startswith("~"):
        return "the target's home folder is not known here: write the full path, e.g. /root/app"
    if "\\" in remote or re.match(r"^[A-Za-z]:", remote):
        return "target paths are POSIX paths, e.g. /app"
    relative = PurePosixPath(remote).as_posix()
    if not remote or relative == ".":
        return "for example /app"
    return f"write /{relative}"


def _check_remotes_apart(source: _Source, entries: Sequence[SyncEntryConfig]) -> None:
    for position, entry in enumerate(entries):
        remote = PurePosixPath(entry.remote)
        for earlier_position, earlier in enumerate(entries[:position]):
            other = PurePosixPath(earlier.remote)
            other_key = f"sync[{earlier_position}].remote"
            other_line = source.line_of(("sync", earlier_position, "remote"))
            if remote == other:
                problem = f"'{remote}' is also {other_key} (line {other_line})"
            elif remote.is_relative_to(other) or other.is_relative_to(remote):
                problem = f"'{remote}' and {other_key} '{other}' (line {other_line}) are nested"
            else:
                continue
            raise source.error(
                ("sync", position, "remote"),
                problem,
                hint="sync roots in the target must not overlap",
            )


_PORT_NUMBER = re.compile(r"[0-9]+")


def _check_ports(source: _Source, specs: Iterable[str | int]) -> tuple[PortConfig, ...]:
    ports: list[PortConfig] = []
    local_owner: dict[int, int] = {}
    for position, spec in enumerate(specs):
        port = _parse_port(source, ("ports", position), spec)
        local = port.local_port if port.local_port is not None else port.remote_port
        if local in local_owner:
            owner = local_owner[local]
            raise source.error(
                ("ports", position),
                f"local port {local} is already used by ports[{owner}]"
                f" (line {source.line_of(('ports', owner))})",
                hint=f'give this forward its own local port, e.g. "{local + 1}:{port.remote_port}"',
            )
        local_owner[local] = position
        ports.append(port)
    return tuple(ports)


def _parse_port(source: _Source, key_path: KeyPath, spec: str | int) -> PortConfig:
    if isinstance(spec, int):
        return PortConfig(remote_port=_check_port_number(source, key_path, spec))
    parts = spec.strip().split(":")
    if len(parts) > 2 or not all(_PORT_NUMBER.fullmatch(part) for part in parts):
        raise source.error(
            key_path,
            f"expected {_PORT_SHAPE}, got {spec!r}",
            hint="ports are always forwarded to localhost" if len(parts) > 2 else None,
        )
    numbers = [_check_port_number(source, key_path, int(part)) for part in parts]
    if len(numbers) == 1:
        return PortConfig(remote_port=numbers[0])
    return PortConfig(local_port=numbers[0], remote_port=numbers[1])
