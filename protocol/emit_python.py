"""The generated Python module: msgspec structs, the request and notification tables, the
error codes, and the typed handler protocol with the ``bind`` that registers it.

The output is emitted already in ``ruff format`` style (line length 100), because the check
compares bytes and a formatter pass after generation would make every run look stale.
"""

from __future__ import annotations

import json
import textwrap

from schema_model import (
    ERROR_REASON_ENUM,
    GENERATED_NOTICE,
    LINE_LENGTH,
    PYTHON_OUTPUT,
    PYTHON_PRIMITIVES,
    STRUCT_OPTIONS,
    Enum,
    Protocol,
    Request,
    Struct,
    constant_name,
    finish,
    method_stem,
    snake_case,
    with_error_reasons,
)

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
