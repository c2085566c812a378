"""Generate the protocol's Python types, TypeScript types and reference from schema.json.

``python protocol/generate.py`` rewrites the generated files; ``--check`` only compares them
with what the schema produces, names each stale one and exits 1, so CI catches a schema edit
that was not followed by a regeneration. ``--root`` points both modes at another checkout.

Standard library only: it runs before the project's dependencies are installed. The Python
output is emitted already in ``ruff format`` style (line length 100), because the check
compares bytes and a formatter pass after generation would make every run look stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import keyword
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
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


# Python


def python_type(type_expr: str) -> str:
    if type_expr.endswith("[]"):
        return f"tuple[{python_type(type_expr[:-2])}, ...]"
    return PYTHON_PRIMITIVES.get(type_expr, type_expr)


def python_string(value: str) -> str:
    return json.dumps(value)


def docstring(doc: str, indent: str) -> list[str]:
    one_line = f'{indent}"""{doc}"""'
    if len(one_line) <= LINE_LENGTH:
        return [one_line]
    wrapped = textwrap.wrap(
        doc,
        width=LINE_LENGTH,
        initial_indent=f'{indent}"""',
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [*wrapped, f'{indent}"""']


def string_argument(name: str, value: str, indent: str) -> list[str]:
    """``name="value",`` split into implicitly concatenated pieces when it is too long."""
    line = f"{indent}{name}={python_string(value)},"
    if len(line) <= LINE_LENGTH:
        return [line]
    width = LINE_LENGTH - len(indent) - len(name) - len('="",')
    pieces = textwrap.wrap(value, width=width, break_long_words=False, break_on_hyphens=False)
    quoted = [python_string(piece + " ") for piece in pieces[:-1]] + [python_string(pieces[-1])]
    return [
        f"{indent}{name}={quoted[0]}",
        *(f"{indent}{piece}" for piece in quoted[1:-1]),
        f"{indent}{quoted[-1]},",
    ]


def python_literal(enum: Enum) -> list[str]:
    values = ", ".join(python_string(value) for value in enum.values)
    line = f"{enum.name} = Literal[{values}]"
    if len(line) <= LINE_LENGTH:
        return [line]
    # One value per line with a trailing comma, which ruff format keeps as it is.
    return [
        f"{enum.name} = Literal[",
        *(f"    {python_string(value)}," for value in enum.values),
        "]",
    ]


def python_struct(struct: Struct) -> list[str]:
    header = f"class {struct.name}({STRUCT_OPTIONS}):"
    if len(header) > LINE_LENGTH:
        header = f"class {struct.name}(\n    {STRUCT_OPTIONS}\n):"
    lines = [*header.split("\n"), *docstring(struct.doc, "    ")]
    if struct.fields:
        lines.append("")
    for field in struct.fields:
        annotation = python_type(field.type)
        if field.optional:
            annotation = f"{annotation} | None"
        if field.needs_explicit_name:
            default = "default=None, " if field.optional else ""
            value = f" = msgspec.field({default}name={python_string(field.wire_name)})"
        else:
            value = " = None" if field.optional else ""
        lines.append(f"    {field.python_name}: {annotation}{value}")
        lines.extend(docstring(field.doc, "    "))
    return lines


def python_module(protocol: Protocol) -> str:
    protocol = with_error_reasons(protocol)
    typing_names = "Any, Literal, Protocol"  # the handler binding needs Any and Protocol
    out = [
        f"# {GENERATED_NOTICE}",
        '"""The podlink protocol: the messages between the daemon and its clients, as types.',
        "",
        "Structs are frozen msgspec structs. Their snake_case attributes travel as the camelCase",
        "names of the protocol (``last_latency_ms`` is ``lastLatencyMs``), absent optional fields",
        "are left out of the JSON, and arrays decode to tuples. String unions are ``Literal``",
        "aliases. ``REQUESTS`` and ``NOTIFICATIONS`` map each method to its params and result",
        "types; ``ErrorCode`` and ``ERROR_REASONS`` give the errors. ``PodlinkHandlers`` is the",
        "typed handler of every request and ``bind`` registers one with a server, so a missing",
        "or mistyped handler is a type error. The reference is",
        "protocol/README.md; the source is protocol/schema.json.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "import dataclasses",
        "import enum",
        "from collections.abc import Awaitable, Callable",
        f"from typing import {typing_names}",
        "",
        "import msgspec",
        "",
        f"PROTOCOL_VERSION = {protocol.version}",
        *docstring(
            "The version clients find under capabilities.experimental.podlink.protocolVersion.",
            "",
        ),
    ]
    for alias in protocol.aliases:
        out += ["", f"{alias.name} = {python_type(alias.type)}", *docstring(alias.doc, "")]
    for enum in protocol.enums:
        out += ["", *python_literal(enum), *docstring(enum.doc, "")]
    for struct in protocol.structs:
        out += ["", "", *python_struct(struct)]
    out += ["", ""]
    for message in protocol.messages:
        stem = method_stem(message.method)
        out.append(f"{constant_name(stem)} = {python_string(message.method)}")
    out += [
        "",
        "",
        "@dataclasses.dataclass(frozen=True)",
        "class RequestSpec:",
        '    """A request a client sends and the daemon answers."""',
        "",
        "    method: str",
        "    params: type[msgspec.Struct]",
        "    result: type | None",
        '    """The type msgspec decodes the result into; None when the result is JSON null."""',
        "    doc: str",
        "",
        "",
        "@dataclasses.dataclass(frozen=True)",
        "class NotificationSpec:",
        '    """A notification the daemon sends to its clients."""',
        "",
        "    method: str",
        "    params: type[msgspec.Struct] | None",
        '    """None for standard LSP notifications, whose params types LSP itself defines."""',
        "    doc: str",
        "",
        "",
        "REQUESTS: dict[str, RequestSpec] = {",
    ]
    for request in protocol.requests:
        constant = constant_name(method_stem(request.method))
        result = "None" if request.result is None else python_type(request.result)
        out += [
            f"    {constant}: RequestSpec(",
            f"        method={constant},",
            f"        params={request.params},",
            f"        result={result},",
            *string_argument("doc", request.doc, "        "),
            "    ),",
        ]
    out += ["}", "", "NOTIFICATIONS: dict[str, NotificationSpec] = {"]
    for notification in protocol.notifications:
        constant = constant_name(method_stem(notification.method))
        out += [
            f"    {constant}: NotificationSpec(",
            f"        method={constant},",
            f"        params={notification.params},",
            *string_argument("doc", notification.doc, "        "),
            "    ),",
        ]
    out += [
        "}",
        "",
        "",
        "class ErrorCode(enum.IntEnum):",
        '    """The JSON-RPC error codes of podlink requests; every error carries an ErrorData."""',
        "",
    ]
    for error in protocol.errors:
        out += [f"    {constant_name(error.reason)} = {error.code}", *docstring(error.doc, "    ")]
    out += ["", "", f"ERROR_REASONS: dict[ErrorCode, {ERROR_REASON_ENUM}] = {{"]
    for error in protocol.errors:
        reason = python_string(error.reason)
        out.append(f"    ErrorCode.{constant_name(error.reason)}: {reason},")
    out.append("}")
    out += python_handlers(protocol)
    return finish(out, PYTHON_OUTPUT)


def handler_name(request: Request) -> str:
    """The Python method that answers a request: ``start_session`` for ``startSession``."""
    return snake_case(method_stem(request.method))


def python_handlers(protocol: Protocol) -> list[str]:
    """The typed handler protocol and the binding that registers each handler by the table."""
    out = [
        "",
        "",
        "class RequestBinder(Protocol):",
        '    """Where ``bind`` registers handlers: a server that decodes params, calls the handler',
        '    and encodes its result."""',
        "",
        "    def bind_request(",
        "        self, spec: RequestSpec, handler: Callable[[Any], Awaitable[object]]",
        "    ) -> None: ...",
        "",
        "",
        "class PodlinkHandlers(Protocol):",
        '    """One typed handler per request; ``bind`` registers every one of them."""',
    ]
    for request in protocol.requests:
        result = "None" if request.result is None else python_type(request.result)
        name = handler_name(request)
        signature = f"    async def {name}(self, params: {request.params}) -> {result}: ..."
        out += [""]
        if len(signature) <= LINE_LENGTH:
            out.append(signature)
        else:
            out += [
                f"    async def {handler_name(request)}(",
                f"        self, params: {request.params}",
                f"    ) -> {result}: ...",
            ]
    out += [
        "",
        "",
        "def bind(server: RequestBinder, handlers: PodlinkHandlers) -> None:",
        '    """Register the handler of every request in REQUESTS with the server."""',
    ]
    for request in protocol.requests:
        constant = constant_name(method_stem(request.method))
        out.append(
            f"    server.bind_request(REQUESTS[{constant}], handlers.{handler_name(request)})"
        )
    return out


def finish(lines: list[str], output: Path) -> str:
    too_long = [line for line in lines if len(line) > LINE_LENGTH and output.suffix == ".py"]
    if too_long:
        raise SchemaError(f"{output}: line longer than {LINE_LENGTH}: {too_long[0]!r}")
    return "\n".join(lines) + "\n"


# TypeScript


def typescript_type(type_expr: str) -> str:
    if type_expr.endswith("[]"):
        return f"{typescript_type(type_expr[:-2])}[]"
    return TYPESCRIPT_PRIMITIVES.get(type_expr, type_expr)


def jsdoc(doc: str, indent: str = "") -> list[str]:
    one_line = f"{indent}/** {doc} */"
    if len(one_line) <= LINE_LENGTH:
        return [one_line]
    wrapped = textwrap.wrap(
        doc,
        width=LINE_LENGTH,
        initial_indent=f"{indent} * ",
        subsequent_indent=f"{indent} * ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [f"{indent}/**", *wrapped, f"{indent} */"]


def typescript_union(name: str, values: Sequence[str]) -> list[str]:
    quoted = [json.dumps(value) for value in values]
    line = f"export type {name} = {' | '.join(quoted)};"
    if len(line) <= LINE_LENGTH:
        return [line]
    return [
        f"export type {name} =",
        *(f"  | {value}" for value in quoted[:-1]),
        f"  | {quoted[-1]};",
    ]


def typescript_module(protocol: Protocol) -> str:
    protocol = with_error_reasons(protocol)
    out = [
        f"// {GENERATED_NOTICE}",
        "",
        "/**",
        " * The podlink protocol: the messages between the daemon and its clients, as types.",
        " *",
        " * Interfaces use the protocol's own camelCase names. `Methods` holds every method name,",
        " * `RequestMap` and `NotificationMap` tie each podlink method to its types, and",
        " * `ErrorCodes` gives the JSON-RPC error code of each error reason. The reference is",
        " * protocol/README.md; the source is protocol/schema.json.",
        " */",
        "",
        "/** The version clients find under capabilities.experimental.podlink.protocolVersion. */",
        f"export const PROTOCOL_VERSION = {protocol.version};",
    ]
    for alias in protocol.aliases:
        alias_line = f"export type {alias.name} = {typescript_type(alias.type)};"
        out += ["", *jsdoc(alias.doc), alias_line]
    for enum in protocol.enums:
        out += ["", *jsdoc(enum.doc), *typescript_union(enum.name, enum.values)]
    for struct in protocol.structs:
        out += ["", *jsdoc(struct.doc)]
        if not struct.fields:
            out.append(f"export type {struct.name} = Record<string, never>;")
            continue
        out.append(f"export interface {struct.name} {{")
        for field in struct.fields:
            optional = "?" if field.optional else ""
            out += [
                *jsdoc(field.doc, "  "),
                f"  {field.wire_name}{optional}: {typescript_type(field.type)};",
            ]
        out.append("}")
    out += ["", "/** Every method name, keyed by its last segment. */", "export const Methods = {"]
    for message in protocol.messages:
        out.append(f"  {method_stem(message.method)}: {json.dumps(message.method)},")
    out += [
        "} as const;",
        "",
        "/** The params and result type of each request. */",
        "export interface RequestMap {",
    ]
    for request in protocol.requests:
        result = "null" if request.result is None else typescript_type(request.result)
        out += [
            *jsdoc(request.doc, "  "),
            f"  {json.dumps(request.method)}: {{ params: {request.params}; result: {result} }};",
        ]
    out += [
        "}",
        "",
        "/** The params type of each podlink notification; LSP defines the standard ones. */",
        "export interface NotificationMap {",
    ]
    for notification in protocol.notifications:
        if notification.params is not None:
            out += [
                *jsdoc(notification.doc, "  "),
                f"  {json.dumps(notification.method)}: {notification.params};",
            ]
    out += [
        "}",
        "",
        "/** The JSON-RPC error code of each error reason; every error carries an ErrorData. */",
        "export const ErrorCodes = {",
    ]
    for error in protocol.errors:
        out += [*jsdoc(error.doc, "  "), f"  {error.reason}: {error.code},"]
    out.append("} as const;")
    return finish(out, TYPESCRIPT_OUTPUT)


# Markdown reference


def markdown_cell(value: str) -> str:
    return value.replace("|", "\\|")


def readme(protocol: Protocol) -> str:
    protocol = with_error_reasons(protocol)
    shared = {struct.name for struct in protocol.shared_structs()}
    anchored = shared | {enum.name for enum in protocol.enums}
    anchored |= {alias.name for alias in protocol.aliases}

    def type_link(type_expr: str) -> str:
        name = element_type(type_expr)
        if name in anchored:
            return f"[`{type_expr}`](#{name.lower()})"
        return f"`{type_expr}`"

    def field_table(struct: Struct) -> list[str]:
        rows = ["| field | type | description |", "| --- | --- | --- |"]
        for field in struct.fields:
            name = f"`{field.wire_name}{'?' if field.optional else ''}`"
            rows.append(f"| {name} | {type_link(field.type)} | {markdown_cell(field.doc)} |")
        return rows

    def shape(label: str, type_expr: str | None) -> list[str]:
        """A method's params or result: a link to a shared type, or the method's own fields."""
        if type_expr is None:
            return [f"{label}: `null`."]
        if element_type(type_expr) in shared or element_type(type_expr) in PRIMITIVE_TYPES:
            return [f"{label}: {type_link(type_expr)}."]
        struct = protocol.struct(element_type(type_expr))
        if not struct.fields:
            return [f"{label} (`{type_expr}`): none; send `{{}}`."]
        return [f"{label} (`{type_expr}`):", "", *field_table(struct)]

    out = [
        f"# {protocol.title}",
        "",
        f"<!-- {GENERATED_NOTICE} -->",
        "",
        protocol.doc,
        "",
        "This reference, the Python types in `daemon/podlink/protocol.py` and the TypeScript types",
        "in `vscode-extension/src/protocol.ts` are generated from `protocol/schema.json`: edit the",
        f"schema, then run `{REGENERATE_COMMAND}`. `{REGENERATE_COMMAND} --check` fails when a",
        "generated file is stale.",
        "",
        f"Protocol version: **{protocol.version}**.",
        "",
        "## Transport",
    ]
    for paragraph in protocol.transport:
        out += ["", paragraph]
    out += ["", "## Requests (client → daemon)", "", "| method | result | description |"]
    out.append("| --- | --- | --- |")
    for request in protocol.requests:
        result = "`null`" if request.result is None else type_link(request.result)
        doc = markdown_cell(request.doc)
        out.append(f"| [`{request.method}`](#{anchor(request.method)}) | {result} | {doc} |")
    for request in protocol.requests:
        out += ["", f"### `{request.method}`", "", request.doc, ""]
        out += [*shape("Params", request.params), "", *shape("Result", request.result)]
    out += ["", "## Notifications (daemon → client)", "", "| method | params | description |"]
    out.append("| --- | --- | --- |")
    for notification in protocol.notifications:
        params = (
            f"LSP `{notification.lsp_params}`"
            if notification.params is None
            else type_link(notification.params)
        )
        doc = markdown_cell(notification.doc)
        method = f"[`{notification.method}`](#{anchor(notification.method)})"
        out.append(f"| {method} | {params} | {doc} |")
    for notification in protocol.notifications:
        out += ["", f"### `{notification.method}`", "", notification.doc, ""]
        if notification.params is None:
            out.append(f"Params: the standard LSP `{notification.lsp_params}`.")
        else:
            out += shape("Params", notification.params)
    out += ["", "## Types"]
    for struct in protocol.structs:
        if struct.name in shared:
            out += ["", f"### `{struct.name}`", "", struct.doc, "", *field_table(struct)]
    for enum in protocol.enums:
        values = " \\| ".join(f'`"{value}"`' for value in enum.values)
        out += ["", f"### `{enum.name}`", "", enum.doc, "", f"One of {values}."]
    for alias in protocol.aliases:
        out += ["", f"### `{alias.name}`", "", alias.doc, "", f"A `{alias.type}`."]
    out += [
        "",
        "## Errors",
        "",
        "Errors are JSON-RPC errors whose `data` is an [`ErrorData`](#errordata).",
        "",
        "| code | reason | description |",
        "| --- | --- | --- |",
    ]
    for error in protocol.errors:
        out.append(f"| {error.code} | `{error.reason}` | {markdown_cell(error.doc)} |")
    return finish(out, README_OUTPUT)


def anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation other than - and _ dropped."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


# Command line

GENERATORS: dict[Path, Callable[[Protocol], str]] = {
    PYTHON_OUTPUT: python_module,
    TYPESCRIPT_OUTPUT: typescript_module,
    README_OUTPUT: readme,
}


def render_all(root: Path) -> dict[Path, str]:
    protocol = load_protocol(root / SCHEMA_PATH)
    return {output: generate(protocol) for output, generate in GENERATORS.items()}


def stale_outputs(root: Path, rendered: dict[Path, str]) -> list[Path]:
    stale = []
    for output, content in rendered.items():
        target = root / output
        if not target.is_file() or target.read_bytes() != content.encode("utf-8"):
            stale.append(output)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a generated file differs from what the schema gives",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the repository root holding protocol/schema.json (default: this checkout)",
    )
    options = parser.parse_args(argv)
    root: Path = options.root
    try:
        rendered = render_all(root)
    except SchemaError as error:
        print(f"{root / SCHEMA_PATH}: {error}", file=sys.stderr)
        return 2
    stale = stale_outputs(root, rendered)
    if options.check:
        for output in stale:
            print(f"stale: {output.as_posix()}", file=sys.stderr)
        if stale:
            print(f"generated protocol files are stale; run {REGENERATE_COMMAND}", file=sys.stderr)
            return 1
        return 0
    for output in stale:
        (root / output).parent.mkdir(parents=True, exist_ok=True)
        (root / output).write_text(rendered[output], encoding="utf-8", newline="\n")
        print(f"wrote {output.as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
