"""Stage 3 of loading: unknown keys (with the closest known one), light normalization, and
the conversion into typed structs, with msgspec's error path mapped back to a line.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.inspect as schema
import yaml

from podlink.config.model import (
    _COMMAND_SECTIONS,
    _ENV_SECTIONS,
    _RAW_SCHEMA,
    _TARGET_KINDS,
    ConfigError,
    KeyPath,
    _RawConfig,
)
from podlink.config.source import _Source

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
