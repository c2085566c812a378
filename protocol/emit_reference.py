"""The generated Markdown reference, protocol/README.md: every method, type and error."""

from __future__ import annotations

import re

from schema_model import (
    GENERATED_NOTICE,
    PRIMITIVE_TYPES,
    README_OUTPUT,
    REGENERATE_COMMAND,
    Protocol,
    Struct,
    element_type,
    finish,
    with_error_reasons,
)

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
