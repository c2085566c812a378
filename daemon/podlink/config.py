"""podlink.yaml: load it, check it, and explain what is wrong with file, line and key.

Loading runs in stages, and every complaint names the file, the line and the key:

1. PyYAML composes the text into a node tree. Syntax errors carry their own mark; duplicate
   keys, which PyYAML would otherwise collapse silently, are found in that tree.
2. The tree is indexed by key path (``sync[0].remote``) so that any later stage can say on
   which line a key sits.
3. The plain data is checked for unknown keys against the schema (suggesting the closest
   known key), lightly normalized (command strings split, env values kept as written), and
   converted into typed structs by msgspec, whose error path is mapped back to a line.
4. Rules that span fields (one target kind, sync roots inside the workspace and not
   overlapping, distinct local ports...) run on the typed result.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeAlias

import msgspec
import msgspec.inspect as schema
import yaml
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
    """A process in the target that already serves debugpy on ``port`` (started by the image
    with ``python -m debugpy --listen 127.0.0.1:PORT ...``): attach to it, restart nothing."""

    port: int


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


# ---------------------------------------------------------------------------------------
# Public entry points.


def load_config(folder: Path, config_file: str | Path | None = None) -> Config:
    """Read and check the workspace's podlink.yaml (or ``config_file``, relative to ``folder``)."""
    folder = folder.resolve()
    path = folder / (CONFIG_FILE_NAME if config_file is None else Path(config_file))
    if config_file is not None and not path.resolve().is_relative_to(folder):
        # A client names the file: it must not make the daemon read (and quote) any other.
        raise ConfigError(
            path,
            f"the configuration file must be inside the workspace folder {folder}",
            hint="move it into the folder, or give a path relative to the folder",
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if config_file is None:
            raise ConfigError(
                path,
                f"no {CONFIG_FILE_NAME} in {folder}",
                hint="run `podlink init` to create one",
            ) from None
        raise ConfigError(path, "the configuration file does not exist") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read the file: {exc.strerror or exc}") from None
    return parse_config(_decode(data, path), path=path, folder=folder)


def parse_config(text: str, *, path: Path, folder: Path) -> Config:
    """Check the text of a podlink.yaml read from ``path`` for the workspace ``folder``."""
    source, data = _compose(text, path)
    _check_known_keys(source, data, _RAW_SCHEMA, ())
    _split_command_strings(source, data)
    _keep_command_words_as_written(source, data)
    _keep_env_values_as_written(source, data)
    _keep_ports_as_written(source, data)
    raw = _convert(source, data)
    return _check_rules(source, raw, folder=folder.resolve(), path=path)


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(path, "the file is not UTF-8 text", line=line) from None


# ---------------------------------------------------------------------------------------
# Stage 1 and 2: YAML nodes, duplicate keys, and where each key path sits.


class _Source:
    """The file being checked, and the line and node of each key path in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[KeyPath, int] = {}
        self.nodes: dict[KeyPath, yaml.Node] = {}

    def line_of(self, key_path: KeyPath) -> int | None:
        # A key that is not in the file (a default, a missing key) is reported on its parent.
        for length in range(len(key_path), -1, -1):
            line = self.lines.get(key_path[:length])
            if line is not None:
                return line
        return None

    def error(self, key_path: KeyPath, problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            self.path,
            problem,
            line=self.line_of(key_path),
            key=_dotted(key_path) or None,
            hint=hint,
        )


def _dotted(key_path: KeyPath) -> str:
    text = ""
    for segment in key_path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else segment
    return text


def _compose(text: str, path: Path) -> tuple[_Source, dict[Any, Any]]:
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(path, f"invalid character: {exc.reason}", line=line) from None
    try:
        root = loader.get_single_node()
        source = _Source(path)
        if root is None:
            raise ConfigError(
                path,
                "the file is empty",
                hint=f"write at least `version: {SUPPORTED_VERSION}`, or run `podlink init`",
            )
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(
                path,
                f"the top level must be a mapping of keys, got {_describe_node(root)}",
                line=root.start_mark.line + 1,
                hint="start with `version: 1` and sections such as target:, sync:, run:",
            )
        _index(source, root, (), root.start_mark.line + 1, ancestors=set())
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(path, exc) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    assert isinstance(data, dict)
    return source, data


def _syntax_error(path: Path, exc: yaml.MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    problem = ", ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
    hint = None
    if "\\t" in problem:
        hint = "YAML does not allow tabs for indentation"
    elif "<block" in problem:
        hint = "check the indentation of this line and the ones above it"
    return ConfigError(
        path,
        f"invalid YAML: {problem}",
        line=mark.line + 1 if mark is not None else None,
        hint=hint,
    )


def _describe_node(node: yaml.Node) -> str:
    # Named by kind only: the message must never quote what the file holds.
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a single value" if isinstance(node, yaml.ScalarNode) else "a value"


def _index(
    source: _Source, node: yaml.Node, key_path: KeyPath, line: int, *, ancestors: set[int]
) -> None:
    if id(node) in ancestors:
        raise source.error(key_path, "a YAML alias refers to itself", hint="remove the loop")
    source.lines[key_path] = line
    source.nodes[key_path] = node
    inner = ancestors | {id(node)}
    if isinstance(node, yaml.MappingNode):
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            # Complex keys and merge keys (<<) are left to later stages.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            name, key_line = key_node.value, key_node.start_mark.line + 1
            child = (*key_path, name)
            if name in first_lines:
                raise ConfigError(
                    source.path,
                    f"duplicate key, already given on line {first_lines[name]}",
                    line=key_line,
                    key=_dotted(child),
                    hint="remove one of them",
                )
            first_lines[name] = key_line
            _index(source, value_node, child, key_line, ancestors=inner)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _index(source, item, (*key_path, position), item.start_mark.line + 1, ancestors=inner)


# ---------------------------------------------------------------------------------------
# Stage 3: unknown keys, normalization, conversion.


def _check_known_keys(source: _Source, value: object, info: schema.Type, key_path: KeyPath) -> None:
    info = _member_for_value(info, value)
    if isinstance(info, schema.StructType) and isinstance(value, dict):
        fields = {field.encode_name: field for field in info.fields}
        for key, item in value.items():
            field = fields.get(key) if isinstance(key, str) else None
            if field is None:
                raise _unknown_key(source, key_path, key, list(fields))
            _check_known_keys(source, item, field.type, (*key_path, key))
    elif isinstance(info, (schema.ListType, schema.VarTupleType)) and isinstance(value, list):
        for position, item in enumerate(value):
            _check_known_keys(source, item, info.item_type, (*key_path, position))


def _member_for_value(info: schema.Type, value: object) -> schema.Type:
    """The member of a union that a mapping or a list would be converted to."""
    if not isinstance(info, schema.UnionType):
        return info
    for member in info.types:
        if isinstance(value, dict) and isinstance(member, schema.StructType):
            return member
        if isinstance(value, list) and isinstance(member, (schema.ListType, schema.VarTupleType)):
            return member
    return info


def _unknown_key(source: _Source, key_path: KeyPath, key: object, known: list[str]) -> ConfigError:
    name = str(key)
    where = (*key_path, name)
    problem = f"unknown key '{name}'"
    if not key_path and name in _TARGET_KINDS:
        return source.error(
            where, problem, hint=f"target kinds go under target:, as in `target: {{{name}: ...}}`"
        )
    folded = {candidate.lower(): candidate for candidate in known}
    camel = folded.get(name.replace("_", "").replace("-", "").lower())
    if camel is not None:
        return source.error(where, problem, hint=f"keys are camelCase: write {camel}")
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return source.error(where, problem, hint=f"did you mean '{close[0]}'?")
    return source.error(where, problem, hint="known keys here: " + ", ".join(known))


def _mapping_at(data: Mapping[Any, Any], key_path: KeyPath) -> dict[Any, Any] | None:
    value: object = data
    for segment in key_path:
        if not isinstance(value, dict):
            return None
        value = value.get(segment)
    return value if isinstance(value, dict) else None


def _split_command_strings(source: _Source, data: dict[Any, Any]) -> None:
    # People write `command: python -m app`; split it as a shell would, without a shell.
    for section_path in _COMMAND_SECTIONS:
        section = _mapping_at(data, section_path)
        if section is None or not isinstance(section.get("command"), str):
            continue
        try:
            section["command"] = shlex.split(section["command"])
        except ValueError as exc:
            raise source.error(
                (*section_path, "command"),
                f"cannot split the command into words: {exc}",
                hint="write it as a list, e.g. [python3, -m, app]",
            ) from None


def _keep_command_words_as_written(source: _Source, data: dict[Any, Any]) -> None:
    # In `[python3, -m, http.server, 8000]` the 8000 is a word of the command, not a number.
    for section_path in _COMMAND_SECTIONS:
        command_path = (*section_path, "command")
        words = _value_at(data, command_path)
        if isinstance(words, list):
            for position, word in enumerate(words):
                words[position] = _as_written(source, (*command_path, position), word)


def _keep_env_values_as_written(source: _Source, data: dict[Any, Any]) -> None:
    # `PORT: 8000` and `DEBUG: yes` mean the text as written, not YAML's int or bool.
    for section_path in _ENV_SECTIONS:
        env = _mapping_at(data, (*section_path, "env"))
        if env is None:
            continue
        for name, value in list(env.items()):
            where = (*section_path, "env", str(name))
            if not isinstance(name, str):
                raise source.error(where, "environment variable names must be strings")
            if value is None:
                raise source.error(where, "has no value", hint='write "" for an empty value')
            env[name] = _as_written(source, where, value)
            if not isinstance(env[name], str):
                raise source.error(where, f"expected a string, got {_describe_value(value)}")


def _as_written(source: _Source, key_path: KeyPath, value: object) -> object:
    """A number, boolean or date as the text the user wrote; any other value unchanged."""
    node = source.nodes.get(key_path)
    if value is not None and not isinstance(value, str) and isinstance(node, yaml.ScalarNode):
        return node.value
    return value


def _keep_ports_as_written(source: _Source, data: dict[Any, Any]) -> None:
    # YAML 1.1 reads an unquoted 8080:59 as a base-60 number; the user meant LOCAL:REMOTE.
    ports = data.get("ports")
    if not isinstance(ports, list):
        return
    for position, value in enumerate(ports):
        node = source.nodes.get(("ports", position))
        if isinstance(value, int) and isinstance(node, yaml.ScalarNode) and ":" in node.value:
            ports[position] = node.value


_ERROR_PATH = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<where>[^`]*)`)?$", re.DOTALL)
_ERROR_PATH_SEGMENT = re.compile(r"\.(?P<key>[^.\[]+)|\[(?P<index>\d+)\]|\[\.\.\.\]")
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")


def _convert(source: _Source, data: dict[Any, Any]) -> _RawConfig:
    try:
        return msgspec.convert(data, _RawConfig)
    except msgspec.ValidationError as exc:
        raise _explain(source, data, str(exc)) from None


def _explain(source: _Source, data: object, message: str) -> ConfigError:
    """Turn msgspec's ``Expected `str`, got `int` - at `$.x[0]``` into words and a line."""
    match = _ERROR_PATH.match(message)
    what = match.group("what") if match else message
    key_path = _parse_error_path(match.group("where") or "") if match else ()
    missing = _MISSING_FIELD.match(what)
    if missing:
        return source.error(key_path, f"missing required key '{missing.group('name')}'")
    unknown = _UNKNOWN_FIELD.match(what)
    if unknown:
        return source.error((*key_path, unknown.group("name")), "unknown key")
    info = _type_at(_RAW_SCHEMA, key_path)
    if info is None:
        return source.error(key_path, what)
    value = _value_at(data, key_path)
    problem = f"expected {_expected(key_path, info)}, got {_describe_value(value, info)}"
    return source.error(key_path, problem, hint=_literal_hint(info, value))


def _parse_error_path(text: str) -> KeyPath:
    segments: list[str | int] = []
    for found in _ERROR_PATH_SEGMENT.finditer(text):
        if found.group("key") is not None:
            segments.append(found.group("key"))
        elif found.group("index") is not None:
            segments.append(int(found.group("index")))
        else:
            break  # a dict key msgspec does not name: stop at the dict
    return tuple(segments)


def _type_at(info: schema.Type, key_path: KeyPath) -> schema.Type | None:
    for segment in key_path:
        info = _member_for_segment(info, segment)
        if isinstance(info, schema.StructType) and isinstance(segment, str):
            field = next((f for f in info.fields if f.encode_name == segment), None)
            if field is None:
                return None
            info = field.type
        elif isinstance(info, (schema.ListType, schema.VarTupleType)) and isinstance(segment, int):
            info = info.item_type
        elif isinstance(info, schema.DictType) and isinstance(segment, str):
            info = info.value_type
        else:
            return None
    return info


def _member_for_segment(info: schema.Type, segment: str | int) -> schema.Type:
    if not isinstance(info, schema.UnionType):
        return info
    wanted: tuple[type[schema.Type], ...] = (
        (schema.ListType, schema.VarTupleType)
        if isinstance(segment, int)
        else (schema.StructType, schema.DictType)
    )
    return next((member for member in info.types if isinstance(member, wanted)), info)


def _value_at(data: object, key_path: KeyPath) -> object:
    for segment in key_path:
        if isinstance(data, dict):
            data = data.get(segment)
        elif isinstance(data, list) and isinstance(segment, int) and segment < len(data):
            data = data[segment]
        else:
            return None
    return data


_COMMAND_SHAPE = 'a command: a list of strings, or one string such as "python3 -m app"'
_PORT_FORMS = '8000, "8000", or "LOCAL:REMOTE" like "9000:8000"'
_PORT_SHAPE = f"a port: {_PORT_FORMS}"


def _expected(key_path: KeyPath, info: schema.Type) -> str:
    if key_path and key_path[-1] == "command":
        return _COMMAND_SHAPE
    if key_path == ("ports",):
        return f"a list of ports, each {_PORT_FORMS}"
    if len(key_path) == 2 and key_path[0] == "ports":
        return _PORT_SHAPE
    return _describe_type(info)


def _describe_type(info: schema.Type) -> str:
    if isinstance(info, schema.UnionType):
        members = [m for m in info.types if not isinstance(m, schema.NoneType)]
        return " or ".join(_describe_type(member) for member in members)
    if isinstance(info, schema.LiteralType):
        return "one of " + ", ".join(repr(value) for value in info.values)
    if isinstance(info, (schema.ListType, schema.VarTupleType)):
        return f"a list of {_describe_plural(info.item_type)}"
    if isinstance(info, schema.DictType):
        return f"a mapping of names to {_describe_plural(info.value_type)}"
    return _SINGULAR.get(type(info), "a value")


def _describe_plural(info: schema.Type) -> str:
    if isinstance(info, schema.UnionType):
        members = [m for m in info.types if not isinstance(m, schema.NoneType)]
        return " or ".join(_describe_plural(member) for member in members)
    return _PLURAL.get(type(info), "values")


_SINGULAR: dict[type[schema.Type], str] = {
    schema.StrType: "a string",
    schema.IntType: "an integer",
    schema.FloatType: "a number",
    schema.BoolType: "true or false",
    schema.StructType: "a mapping",
    schema.NoneType: "nothing",
}
_PLURAL: dict[type[schema.Type], str] = {
    schema.StrType: "strings",
    schema.IntType: "integers",
    schema.StructType: "mappings",
}


def _describe_value(value: object, info: schema.Type | None = None) -> str:
    if isinstance(info, schema.LiteralType) and isinstance(value, str | int | bool):
        return _yaml_word(value)
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"{_yaml_word(value)} (a boolean)"
    for kind, words in _VALUE_KINDS:
        if isinstance(value, kind):
            return words
    return f"a {type(value).__name__}"


_VALUE_KINDS: tuple[tuple[type[object], str], ...] = (
    (str, "a string"),
    (int, "an integer"),
    (float, "a number"),
    (list, "a list"),
    (dict, "a mapping"),
)


def _yaml_word(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _literal_hint(info: schema.Type, value: object) -> str | None:
    if not isinstance(info, schema.LiteralType) or not isinstance(value, str):
        return None
    choices = [str(choice) for choice in info.values]
    close = difflib.get_close_matches(value, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else None


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
        if raw.debug.attach is not None:
            _check_port_number(source, ("debug", "attach", "port"), raw.debug.attach.port)
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
