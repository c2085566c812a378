"""The configuration's types: the typed result of loading podlink.yaml, the raw file as
written, ConfigError and the limits every stage shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeAlias

import msgspec
import msgspec.inspect as schema
from msgspec import UNSET, UnsetType

from podlink.errors import PodlinkError
from podlink.protocol import ErrorCode

CONFIG_FILE_NAME = "podlink.yaml"
SUPPORTED_VERSION = 1
MAX_PORT = 65535

# A position in the document: mapping keys are strings, list positions are ints.
KeyPath: TypeAlias = tuple[str | int, ...]


class ConfigError(PodlinkError):
    """podlink.yaml cannot be used. ``str()`` gives one line: ``file:line: key: problem (hint)``.

    ``line`` is 1-based and None when unknown; ``key`` is dotted with list indices
    (``sync[0].remote``) and None when the problem is about the file as a whole.
    """

    def __init__(
        self,
        path: Path,
        problem: str,
        *,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.problem = problem
        self.hint = hint
        detail = {"file": str(path), "line": line, "key": key}
        super().__init__(ErrorCode.CONFIG_INVALID, self._format(), detail)

    def _format(self) -> str:
        where = _display_path(self.path)
        if self.line is not None:
            where += f":{self.line}"
        message = f"{where}: {self.key}: {self.problem}" if self.key else f"{where}: {self.problem}"
        return f"{message} ({self.hint})" if self.hint else message


def _display_path(path: Path) -> str:
    # Short paths read better in terminals; editors get the full path from ``err.path``.
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except (ValueError, OSError):
            pass
    return str(path)


# ---------------------------------------------------------------------------------------
# The typed configuration.


class _Section(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """A section of podlink.yaml: camelCase keys in the file, unknown keys refused.

    Subclasses repeat ``frozen`` and ``kw_only`` so that type checkers see them too.
    """


class LocalTargetConfig(_Section, frozen=True, kw_only=True):
    """A directory on this machine; relative ``root`` is relative to the workspace folder."""

    root: str = ".podlink/target"


class DockerBuildConfig(_Section, frozen=True, kw_only=True):
    context: str = "."
    dockerfile: str = "Dockerfile"


class DockerTargetConfig(_Section, frozen=True, kw_only=True):
    """Exactly one of: ``container`` (attach to it), ``image`` or ``build`` (create one)."""

    container: str | None = None
    image: str | None = None
    build: DockerBuildConfig | None = None


class PodSelectorConfig(_Section, frozen=True, kw_only=True):
    """Exactly one of: a pod ``name``, or a label ``selector`` such as ``app=web``."""

    name: str | None = None
    selector: str | None = None


class DevModeConfig(_Section, frozen=True, kw_only=True):
    """Patch this Deployment to run ``command`` (and ``image``) while a session lasts."""

    deployment: str
    command: tuple[str, ...] = ("sleep", "infinity")
    image: str | None = None


class KubernetesTargetConfig(_Section, frozen=True, kw_only=True):
    context: str | None = None
    namespace: str | None = None
    pod: PodSelectorConfig
    container: str | None = None
    dev_mode: DevModeConfig | None = None


TargetConfig: TypeAlias = LocalTargetConfig | DockerTargetConfig | KubernetesTargetConfig


class DeployImageConfig(_Section, frozen=True, kw_only=True):
    """Containers whose image is ``name`` (with any tag or digest) run ``replace`` instead."""

    name: str
    replace: str


class HelmReleaseConfig(_Section, frozen=True, kw_only=True):
    """A chart rendered by ``helm template`` (helm on PATH), then applied like a manifest.

    ``chart`` is a folder in the workspace or a reference helm resolves (``repo/name``,
    ``oci://...``); ``values`` are files in the workspace, ``set`` single values, as helm's
    ``-f`` and ``--set``.
    """

    chart: str
    release: str
    values: tuple[str, ...] = ()
    set: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)


class DeployConfig(_Section, frozen=True, kw_only=True):
    """Manifest files or folders (relative to the workspace) applied before the pod is picked.

    A folder holding a ``kustomization.yaml`` is rendered by kustomize rather than read
    file by file; ``helm`` releases are rendered by ``helm template`` and applied after the
    manifests. At least one manifest or release."""

    manifests: tuple[str, ...] = ()
    helm: tuple[HelmReleaseConfig, ...] = ()
    image: DeployImageConfig | None = None


class SyncEntryConfig(_Section, frozen=True, kw_only=True):
    """``local`` (relative to the workspace folder) mirrored to ``remote`` in the target."""

    local: str = "."
    remote: str = "/app"
    mode: Literal["upload", "two-way"] = "upload"
    exclude: tuple[str, ...] = ()
    # A pass that would delete more than this share of the tree's files pauses the sync.
    max_delete_share: float = 0.5
    # "user", "user:group", "uid" or "uid:gid" in the target; None: the target's default user.
    owner: str | None = None
    # Upload mode: a first sync deletes what the remote folder held that the workspace does
    # not have. False: podlink leaves those files alone for good and lists them.
    delete_unknown: bool = False


class PortConfig(_Section, frozen=True, kw_only=True):
    """A forward of ``remote_port`` in the target to ``local_port`` on this machine.

    ``local_port`` None means: the same number, or the next free one.
    """

    remote_port: int
    local_port: int | None = None


class RunConfig(_Section, frozen=True, kw_only=True):
    command: tuple[str, ...]
    restart: Literal["on-sync", "never"] = "on-sync"
    env: dict[str, str] = msgspec.field(default_factory=dict)
    cwd: str | None = None


class DebugAttachConfig(_Section, frozen=True, kw_only=True):
    """A process that already runs in the target: attach to it, restart nothing. Exactly one
    of ``port`` (it serves debugpy there, started by the image with ``python -m debugpy
    --listen 127.0.0.1:PORT ...``) or ``pid`` (debugpy is injected into it, which needs gdb
    and permission to ptrace in the target)."""

    port: int | None = None
    pid: int | None = None


class DebugConfig(_Section, frozen=True, kw_only=True):
    port: int = 5678
    just_my_code: bool = True
    attach: DebugAttachConfig | None = None


class CommandConfig(_Section, frozen=True, kw_only=True):
    command: tuple[str, ...]
    env: dict[str, str] = msgspec.field(default_factory=dict)
    cwd: str | None = None


class ImageBuildConfig(_Section, frozen=True, kw_only=True):
    """An image built on this machine for a kubernetes target, then delivered to the cluster.

    ``name`` is the repository (``127.0.0.1:5000/web``, ``web``); podlink tags it with a tag
    made from the build's inputs. ``deliver``: ``registry`` pushes, ``kind``/``minikube``
    load it into that local cluster, ``containerd`` imports it through ``containerdSocket``;
    ``auto`` picks by the name and the kubeconfig context.
    """

    name: str
    context: str = "."
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = msgspec.field(default_factory=dict)
    target: str | None = None
    deliver: Literal["auto", "registry", "kind", "minikube", "containerd"] = "auto"
    containerd_socket: str | None = None


class BuildConfig(CommandConfig, frozen=True, kw_only=True):
    """``command`` runs in the target (``podlink build``); ``image`` is built before a
    kubernetes session deploys. At least one of them."""

    command: tuple[str, ...] = ()
    image: ImageBuildConfig | None = None


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """A checked podlink.yaml. ``Config(folder=..., path=None)`` is the all-defaults config."""

    folder: Path
    path: Path | None
    version: int = SUPPORTED_VERSION
    target: TargetConfig = msgspec.field(default_factory=LocalTargetConfig)
    sync: tuple[SyncEntryConfig, ...] = msgspec.field(default_factory=lambda: (SyncEntryConfig(),))
    ports: tuple[PortConfig, ...] = ()
    run: RunConfig | None = None
    debug: DebugConfig = msgspec.field(default_factory=DebugConfig)
    test: CommandConfig | None = None
    build: BuildConfig | None = None
    deploy: DeployConfig | None = None

    def local_root(self, entry: SyncEntryConfig) -> Path:
        """The absolute, symlink-resolved local directory of a sync entry."""
        return (self.folder / entry.local).resolve()

    @property
    def local_target_root(self) -> Path | None:
        """The local target's folder on this machine (resolved); None for other targets."""
        if isinstance(self.target, LocalTargetConfig):
            return (self.folder / self.target.root).resolve()
        return None

    @property
    def target_kind(self) -> Literal["local", "docker", "kubernetes"]:
        if isinstance(self.target, DockerTargetConfig):
            return "docker"
        if isinstance(self.target, KubernetesTargetConfig):
            return "kubernetes"
        return "local"


# The file as written, before cross-field rules: UNSET tells "absent" from "empty".
class _RawTarget(_Section, frozen=True, kw_only=True):
    local: LocalTargetConfig | UnsetType | None = UNSET
    docker: DockerTargetConfig | UnsetType | None = UNSET
    kubernetes: KubernetesTargetConfig | UnsetType | None = UNSET


class _RawConfig(_Section, frozen=True, kw_only=True):
    version: int = SUPPORTED_VERSION
    target: _RawTarget | UnsetType | None = UNSET
    sync: tuple[SyncEntryConfig, ...] | UnsetType = UNSET
    ports: tuple[str | int, ...] = ()
    run: RunConfig | None = None
    debug: DebugConfig | None = None
    test: CommandConfig | None = None
    build: BuildConfig | None = None
    deploy: DeployConfig | None = None


_RAW_SCHEMA = schema.type_info(_RawConfig)
_TARGET_KINDS = ("local", "docker", "kubernetes")
_COMMAND_SECTIONS: tuple[KeyPath, ...] = (
    ("run",),
    ("test",),
    ("build",),
    ("target", "kubernetes", "devMode"),
)
_ENV_SECTIONS: tuple[KeyPath, ...] = (("run",), ("test",), ("build",))
