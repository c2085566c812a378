"""The protocol schema as typed values: loading and validating protocol/schema.json, the
names the generated files derive from it, and what every generated file shares (its paths,
notice and line length).

Standard library only, like the rest of the generator.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path("protocol/schema.json")
PYTHON_OUTPUT = Path("daemon/podlink/protocol.py")
TYPESCRIPT_OUTPUT = Path("vscode-extension/src/protocol.ts")
README_OUTPUT = Path("protocol/README.md")

GENERATED_NOTICE = "Generated from protocol/schema.json by protocol/generate.py; do not edit."
REGENERATE_COMMAND = "python protocol/generate.py"
LINE_LENGTH = 100

PRIMITIVE_TYPES = ("string", "integer", "number", "boolean", "object")
PYTHON_PRIMITIVES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "object": "dict[str, Any]",
}
TYPESCRIPT_PRIMITIVES = {
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "object": "Record<string, unknown>",
}
STRUCT_OPTIONS = 'msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True'
ERROR_REASON_ENUM = "ErrorReason"
GENERATED_CLASSES = (
    "RequestSpec",
    "NotificationSpec",
    "ErrorCode",
    "RequestBinder",
    "PodlinkHandlers",
)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ANNOTATION_NAMES = {"str", "int", "float", "bool", "dict", "tuple", "msgspec", "Any", "Literal"}


class SchemaError(Exception):
    """The schema is malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Field:
    wire_name: str
    python_name: str
    type: str
    optional: bool
    doc: str

    @property
    def needs_explicit_name(self) -> bool:
        # msgspec's camel renaming of the Python name must give back the wire name exactly;
        # a keyword's trailing underscore is not a word break to msgspec, so name it outright.
        return msgspec_camel(self.python_name) != self.wire_name or self.python_name != snake_case(
            self.wire_name
        )


@dataclasses.dataclass(frozen=True)
class Struct:
    name: str
    doc: str
    fields: tuple[Field, ...]


@dataclasses.dataclass(frozen=True)
class Enum:
    name: str
    values: tuple[str, ...]
    doc: str


@dataclasses.dataclass(frozen=True)
class Alias:
    name: str
    type: str
    doc: str


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    params: str
    result: str | None
    doc: str


@dataclasses.dataclass(frozen=True)
class Notification:
    method: str
    params: str | None
    lsp_params: str | None
    doc: str


@dataclasses.dataclass(frozen=True)
class ErrorEntry:
    code: int
    reason: str
    doc: str


@dataclasses.dataclass(frozen=True)
class Protocol:
    title: str
    version: int
    doc: str
    transport: tuple[str, ...]
    aliases: tuple[Alias, ...]
    enums: tuple[Enum, ...]
    structs: tuple[Struct, ...]
    requests: tuple[Request, ...]
    notifications: tuple[Notification, ...]
    errors: tuple[ErrorEntry, ...]

    @property
    def messages(self) -> tuple[Request | Notification, ...]:
        return (*self.requests, *self.notifications)

    def struct(self, name: str) -> Struct:
        return next(struct for struct in self.structs if struct.name == name)

    def shared_structs(self) -> tuple[Struct, ...]:
        """Structs used by several messages or by other types, as opposed to one method's own."""
        field_types = {
            element_type(field.type) for struct in self.structs for field in struct.fields
        }
        uses: dict[str, int] = {}
        for message in self.messages:
            for type_expr in message_types(message):
                uses[element_type(type_expr)] = uses.get(element_type(type_expr), 0) + 1
        return tuple(
            struct
            for struct in self.structs
            if struct.name in field_types or uses.get(struct.name, 0) != 1
        )


# Naming


def msgspec_camel(python_name: str) -> str:
    """The wire name msgspec's ``rename="camel"`` gives a Python attribute name."""
    first, *rest = python_name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def snake_case(camel_name: str) -> str:
    """``lastLatencyMs`` to ``last_latency_ms``; a run of capitals is one word (``durationMS``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", camel_name).lower()


def python_attribute_name(wire_name: str) -> str:
    name = snake_case(wire_name)
    return f"{name}_" if keyword.iskeyword(name) else name


def method_stem(method: str) -> str:
    """The last segment of a method name: ``startSession`` for ``podlink/startSession``."""
    return method.rsplit("/", 1)[-1]


def constant_name(camel_name: str) -> str:
    return snake_case(camel_name).upper()


def element_type(type_expr: str) -> str:
    while type_expr.endswith("[]"):
        type_expr = type_expr[:-2]
    return type_expr


def message_types(message: Request | Notification) -> list[str]:
    types = [message.params] if message.params is not None else []
    if isinstance(message, Request) and message.result is not None:
        types.append(message.result)
    return types


# Loading and validation


def load_protocol(schema_file: Path) -> Protocol:
    try:
        raw = json.loads(schema_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SchemaError(f"{schema_file}: {error}") from error
    protocol = parse_protocol(expect(raw, dict, "the schema"))
    validate_protocol(protocol)
    return protocol


def expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SchemaError(f"{where}: expected {kind.__name__}, found {value!r}")
    return value


def text(entry: dict[str, Any], key: str, where: str) -> str:
    value: str = expect(entry.get(key), str, f"{where}.{key}")
    return value


def doc_of(entry: dict[str, Any], where: str) -> str:
    doc = text(entry, "doc", where)
    # Docs land in Python docstrings, JSDoc comments and Markdown tables, wrapped by word.
    if doc != " ".join(doc.split()) or not doc.endswith("."):
        raise SchemaError(f"{where}.doc: one line, single spaces, ending with a period: {doc!r}")
    if any(fragment in doc for fragment in ('"""', "\\", "*/")) or doc.startswith('"'):
        raise SchemaError(f"{where}.doc: cannot be embedded in a docstring or comment: {doc!r}")
    return doc


def entries(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = expect(raw.get(key, []), list, key)
    return [expect(item, dict, f"{key}[{index}]") for index, item in enumerate(items)]


def parse_protocol(raw: dict[str, Any]) -> Protocol:
    transport = expect(raw.get("transport"), list, "transport")
    return Protocol(
        title=text(raw, "title", "schema"),
        version=expect(raw.get("protocolVersion"), int, "protocolVersion"),
        doc=doc_of(raw, "schema"),
        transport=tuple(
            expect(paragraph, str, f"transport[{index}]")
            for index, paragraph in enumerate(transport)
        ),
        aliases=tuple(
            Alias(
                name=text(alias, "name", "aliases"),
                type=text(alias, "type", "aliases"),
                doc=doc_of(alias, f"aliases.{alias.get('name')}"),
            )
            for alias in entries(raw, "aliases")
        ),
        enums=tuple(parse_enum(enum) for enum in entries(raw, "enums")),
        structs=tuple(parse_struct(struct) for struct in entries(raw, "structs")),
        requests=tuple(
            Request(
                method=text(request, "method", "requests"),
                params=text(request, "params", f"requests.{request.get('method')}"),
                result=optional_text(request, "result", f"requests.{request.get('method')}"),
                doc=doc_of(request, f"requests.{request.get('method')}"),
            )
            for request in entries(raw, "requests")
        ),
        notifications=tuple(
            Notification(
                method=text(notification, "method", "notifications"),
                params=optional_text(notification, "params", "notifications"),
                lsp_params=optional_text(notification, "lspParams", "notifications"),
                doc=doc_of(notification, f"notifications.{notification.get('method')}"),
            )
            for notification in entries(raw, "notifications")
        ),
        errors=tuple(
            ErrorEntry(
                code=expect(error.get("code"), int, "errors.code"),
                reason=text(error, "reason", "errors"),
                doc=doc_of(error, f"errors.{error.get('reason')}"),
            )
            for error in entries(raw, "errors")
        ),
    )


def optional_text(entry: dict[str, Any], key: str, where: str) -> str | None:
    return None if entry.get(key) is None else text(entry, key, where)


def parse_enum(raw: dict[str, Any]) -> Enum:
    name = text(raw, "name", "enums")
    values = expect(raw.get("values"), list, f"enums.{name}.values")
    return Enum(
        name=name,
        values=tuple(expect(value, str, f"enums.{name}.values") for value in values),
        doc=doc_of(raw, f"enums.{name}"),
    )


def parse_struct(raw: dict[str, Any]) -> Struct:
    name = text(raw, "name", "structs")
    fields = []
    for field in entries(raw, "fields"):
        wire_name = text(field, "name", f"structs.{name}.fields")
        where = f"structs.{name}.{wire_name}"
        fields.append(
            Field(
                wire_name=wire_name,
                python_name=python_attribute_name(wire_name),
                type=text(field, "type", where),
                optional=expect(field.get("optional", False), bool, f"{where}.optional"),
                doc=doc_of(field, where),
            )
        )
    return Struct(name=name, doc=doc_of(raw, f"structs.{name}"), fields=tuple(fields))


def with_error_reasons(protocol: Protocol) -> Protocol:
    """Add the ErrorReason union, derived from the error table so it cannot drift from it."""
    reasons = Enum(
        name=ERROR_REASON_ENUM,
        values=tuple(error.reason for error in protocol.errors),
        doc="The reason in the data of a podlink error; one per error code.",
    )
    return dataclasses.replace(protocol, enums=(*protocol.enums, reasons))


def validate_protocol(protocol: Protocol) -> None:
    names = [
        *(alias.name for alias in protocol.aliases),
        *(enum.name for enum in protocol.enums),
        *(struct.name for struct in protocol.structs),
        ERROR_REASON_ENUM,
        *GENERATED_CLASSES,
    ]
    require_unique(names, "type name")
    for name in names:
        if not IDENTIFIER.fullmatch(name) or name in PRIMITIVE_TYPES:
            raise SchemaError(f"type name {name!r} is not a usable identifier")
    known = {*names, *PRIMITIVE_TYPES}

    def check_type(type_expr: str, where: str) -> None:
        if element_type(type_expr) not in known:
            raise SchemaError(f"{where}: unknown type {type_expr!r}")

    for alias in protocol.aliases:
        if alias.type not in PRIMITIVE_TYPES:
            raise SchemaError(f"aliases.{alias.name}: an alias must name a primitive type")
    for enum in protocol.enums:
        if not enum.values:
            raise SchemaError(f"enums.{enum.name}: no values")
        require_unique(enum.values, f"value of {enum.name}")
    struct_names = {struct.name for struct in protocol.structs}
    for struct in protocol.structs:
        require_unique([field.wire_name for field in struct.fields], f"field of {struct.name}")
        for field in struct.fields:
            check_type(field.type, f"structs.{struct.name}.{field.wire_name}")
            if not IDENTIFIER.fullmatch(field.wire_name):
                raise SchemaError(f"structs.{struct.name}: bad field name {field.wire_name!r}")
            if field.python_name in ANNOTATION_NAMES:
                # Annotations resolve in the class namespace too, where the field would win.
                raise SchemaError(f"structs.{struct.name}: {field.wire_name!r} hides a type")
    for message in protocol.messages:
        for type_expr in message_types(message):
            check_type(type_expr, message.method)
        if message.params is not None and message.params not in struct_names:
            raise SchemaError(f"{message.method}: params must name a struct")
        if isinstance(message, Notification) and (message.params is None) == (
            message.lsp_params is None
        ):
            raise SchemaError(f"{message.method}: give exactly one of params and lspParams")
        if not IDENTIFIER.fullmatch(method_stem(message.method)):
            raise SchemaError(f"{message.method}: the last segment must be an identifier")
    require_unique([message.method for message in protocol.messages], "method")
    method_keys = [method_stem(message.method) for message in protocol.messages]
    require_unique(method_keys, "method name's last segment")
    reserved = {"PROTOCOL_VERSION", "REQUESTS", "NOTIFICATIONS", "ERROR_REASONS"}
    if reserved & {constant_name(key) for key in method_keys}:
        raise SchemaError("a method constant would shadow a module constant")
    require_unique([error.code for error in protocol.errors], "error code")
    require_unique([error.reason for error in protocol.errors], "error reason")


def require_unique(values: Sequence[object], what: str) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise SchemaError(f"duplicate {what}: {value!r}")
        seen.add(value)


def finish(lines: list[str], output: Path) -> str:
    too_long = [line for line in lines if len(line) > LINE_LENGTH and output.suffix == ".py"]
    if too_long:
        raise SchemaError(f"{output}: line longer than {LINE_LENGTH}: {too_long[0]!r}")
    return "\n".join(lines) + "\n"
