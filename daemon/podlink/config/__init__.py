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

from pathlib import Path

from podlink.config.convert import (
    _check_known_keys,
    _convert,
    _keep_command_words_as_written,
    _keep_env_values_as_written,
    _keep_ports_as_written,
    _split_command_strings,
)
from podlink.config.model import (
    _RAW_SCHEMA,
    CONFIG_FILE_NAME,
    MAX_PORT,
    SUPPORTED_VERSION,
    BuildConfig,
    CommandConfig,
    Config,
    ConfigError,
    DebugAttachConfig,
    DebugConfig,
    DeployConfig,
    DeployImageConfig,
    DevModeConfig,
    DockerBuildConfig,
    DockerTargetConfig,
    HelmReleaseConfig,
    ImageBuildConfig,
    KeyPath,
    KubernetesTargetConfig,
    LocalTargetConfig,
    PodSelectorConfig,
    PortConfig,
    RunConfig,
    SyncEntryConfig,
    TargetConfig,
)
from podlink.config.rules import _check_rules, is_system_folder
from podlink.config.source import _compose

__all__ = [
    "CONFIG_FILE_NAME",
    "MAX_PORT",
    "SUPPORTED_VERSION",
    "BuildConfig",
    "CommandConfig",
    "Config",
    "ConfigError",
    "DebugAttachConfig",
    "DebugConfig",
    "DeployConfig",
    "DeployImageConfig",
    "DevModeConfig",
    "DockerBuildConfig",
    "DockerTargetConfig",
    "HelmReleaseConfig",
    "ImageBuildConfig",
    "KeyPath",
    "KubernetesTargetConfig",
    "LocalTargetConfig",
    "PodSelectorConfig",
    "PortConfig",
    "RunConfig",
    "SyncEntryConfig",
    "TargetConfig",
    "is_system_folder",
    "load_config",
    "parse_config",
]

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
