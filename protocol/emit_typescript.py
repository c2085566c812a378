"""The generated TypeScript module the extension imports: interfaces, unions, the method
names and the request, notification and error-code maps."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence

from schema_model import (
    GENERATED_NOTICE,
    LINE_LENGTH,
    TYPESCRIPT_OUTPUT,
    TYPESCRIPT_PRIMITIVES,
    Protocol,
    finish,
    method_stem,
    with_error_reasons,
)

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
