"""Stages 1 and 2 of loading: the YAML node tree, duplicate keys, and the line of each key
path, so that every later complaint can point at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from podlink.config.model import SUPPORTED_VERSION, ConfigError, KeyPath

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
