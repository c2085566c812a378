"""The protocol schema, its generated files and the shared contract agree.

The generated Python module is checked against PROTOCOL.md, the contract other editors are
written against, by reading its tables and type block rather than restating names here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

# Imported as a module: pytest would try to collect TestItem and TestResultParams otherwise.
from podlink import protocol

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = REPO_ROOT / "protocol" / "generate.py"
SCHEMA = REPO_ROOT / "protocol" / "schema.json"
SHARED_CONTRACT = REPO_ROOT.parent / "shared" / "PROTOCOL.md"
# Enums whose values the schema documents as open: a client shows a value it does not know
# in a stated way (TestOutcome: as skipped), so values are added without a version bump.
ADDITIVE_ENUMS = {"TestOutcome"}


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args], capture_output=True, text=True, check=False
    )


def test_committed_outputs_are_up_to_date() -> None:
    result = run_generator("--check")
    assert result.returncode == 0, result.stderr


def test_check_names_a_stale_file_and_writes_nothing(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "protocol", tmp_path / "protocol")
    assert run_generator("--root", str(tmp_path)).returncode == 0
    assert run_generator("--check", "--root", str(tmp_path)).returncode == 0
    stale = tmp_path / "daemon/podlink/protocol.py"
    edited = stale.read_text(encoding="utf-8") + "EDITED_BY_HAND = True\n"
    stale.write_text(edited, encoding="utf-8")

    result = run_generator("--check", "--root", str(tmp_path))

    assert result.returncode == 1
    assert "daemon/podlink/protocol.py" in result.stderr
    assert "vscode-extension/src/protocol.ts" not in result.stderr
    assert "run python protocol/generate.py" in result.stderr
    assert stale.read_text(encoding="utf-8") == edited


def test_check_names_missing_files(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "protocol", tmp_path / "protocol")

    result = run_generator("--check", "--root", str(tmp_path))

    assert result.returncode == 1
    assert "daemon/podlink/protocol.py" in result.stderr
    assert "vscode-extension/src/protocol.ts" in result.stderr
    assert "protocol/README.md" not in result.stderr
    assert not (tmp_path / "daemon").exists()


def test_every_struct_field_has_its_schema_name_on_the_wire() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    for struct in schema["structs"]:
        cls = getattr(protocol, struct["name"])
        wire_names = [field.encode_name for field in msgspec.structs.fields(cls)]
        assert wire_names == [field["name"] for field in struct["fields"]], struct["name"]


def test_session_encodes_camel_case_and_leaves_out_absent_fields() -> None:
    session = protocol.Session(
        id="s1",
        folder="file:///work/app",
        state="ready",
        target=protocol.TargetInfo(kind="docker", name="app-dev"),
        sync=protocol.SyncStatus(
            state="idle",
            pending=0,
            files_synced=12,
            bytes_synced=3400,
            conflicts=(),
            problems=(),
        ),
        ports=(
            protocol.PortForward(local_port=8000, remote_port=80, state="active", connections=1),
        ),
    )

    encoded = json.loads(msgspec.json.encode(session))

    assert encoded == {
        "id": "s1",
        "folder": "file:///work/app",
        "state": "ready",
        "target": {"kind": "docker", "name": "app-dev"},
        "sync": {
            "state": "idle",
            "pending": 0,
            "filesSynced": 12,
            "bytesSynced": 3400,
            "conflicts": [],
            "problems": [],
        },
        "ports": [{"localPort": 8000, "remotePort": 80, "state": "active", "connections": 1}],
    }
    assert msgspec.json.decode(msgspec.json.encode(session), type=protocol.Session) == session


def test_params_decode_from_camel_case() -> None:
    params = msgspec.json.decode(
        b'{"folder": "file:///x", "configFile": "a.yaml"}', type=protocol.StartSessionParams
    )
    assert params == protocol.StartSessionParams(folder="file:///x", config_file="a.yaml")


def test_params_of_the_wrong_type_are_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="folder"):
        msgspec.json.decode(b'{"folder": 3}', type=protocol.StartSessionParams)


def test_error_codes_match_their_reasons() -> None:
    assert set(protocol.ERROR_REASONS) == set(protocol.ErrorCode)
    assert protocol.ErrorCode(-32006) is protocol.ErrorCode.NOT_IMPLEMENTED
    assert protocol.ERROR_REASONS[protocol.ErrorCode.NOT_IMPLEMENTED] == "notImplemented"
    assert set(protocol.ERROR_REASONS.values()) == set(typing.get_args(protocol.ErrorReason))


# The shared contract


def contract_sections() -> dict[str, list[str]]:
    if not SHARED_CONTRACT.is_file():
        pytest.skip(f"the shared contract is not beside the checkout: {SHARED_CONTRACT}")
    sections: dict[str, list[str]] = {}
    heading = ""
    for line in SHARED_CONTRACT.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = line[3:].split(" (")[0].strip()
        sections.setdefault(heading, []).append(line)
    return sections


def table_rows(lines: list[str]) -> list[list[str]]:
    """The body rows of the Markdown tables in ``lines``, cells unescaped and stripped."""
    rows = []
    for line in lines:
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells[0] not in ("method", "code"):
            rows.append(cells)
    return rows


def first_code_span(cell: str) -> str | None:
    match = re.match(r"`([^`]*)`", cell)
    return match.group(1) if match else None


def contract_types() -> dict[str, str]:
    """Each entry of the contract's type block, name to definition, comments removed."""
    block = "\n".join(contract_sections()["Types"])
    body = block.split("```")[1]
    definitions: dict[str, str] = {}
    name = ""
    for line in body.splitlines():
        line = line.split("//")[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            name, line = line.split(None, 1)
            definitions[name] = ""
        definitions[name] += " " + line.strip()
    return {name: " ".join(text.split()) for name, text in definitions.items()}


def contract_fields(object_text: str) -> list[tuple[str, bool, str | None]]:
    """``{a: T, b?}`` as (name, optional, type or None) triples."""
    inner = object_text.strip()[1:-1].strip()
    fields = []
    for part in filter(None, (piece.strip() for piece in inner.split(","))):
        match = re.fullmatch(r"(\w+)(\?)?(?:\s*:\s*(.+))?", part)
        assert match, part
        fields.append((match.group(1), bool(match.group(2)), match.group(3)))
    return fields


def contract_notation(type_text: str, enums: dict[str, str]) -> str:
    """A contract type written the way ``described`` writes Python types."""
    type_text = " ".join(type_text.split())
    if type_text.endswith("[]"):
        return contract_notation(type_text[:-2], enums) + "[]"
    if type_text == "DocumentUri":
        return "string"
    return enums.get(type_text, type_text)


def described(annotation: Any) -> str:
    """A resolved Python annotation in the contract's notation."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(value) for value in typing.get_args(annotation))
    if origin is tuple:
        return described(typing.get_args(annotation)[0]) + "[]"
    if origin is dict:
        return "object"
    primitives = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in primitives:
        return primitives[annotation]
    return str(annotation.__name__)


def assert_fields_match(cls: type[msgspec.Struct], object_text: str, enums: dict[str, str]) -> None:
    """The contract's fields exist with the same optionality and type; added ones are optional."""
    fields = {field.encode_name: field for field in msgspec.structs.fields(cls)}
    hints = typing.get_type_hints(cls)
    expected = contract_fields(object_text)
    for name, optional, type_text in expected:
        assert name in fields, f"{cls.__name__} lacks {name}"
        assert fields[name].required != optional, f"{cls.__name__}.{name} optionality"
        if type_text is not None:
            actual = described(hints[fields[name].name])
            expected_type = contract_notation(type_text, enums)
            if " ".join(type_text.split()) in ADDITIVE_ENUMS:
                actual = " | ".join(actual.split(" | ")[: len(expected_type.split(" | "))])
            assert actual == expected_type, f"{cls.__name__}.{name}"
    added = set(fields) - {name for name, _, _ in expected}
    assert all(not fields[name].required for name in added), f"{cls.__name__} adds required {added}"


def contract_enums() -> dict[str, str]:
    return {name: text for name, text in contract_types().items() if not text.startswith("{")}


def check_message_shape(cell: str, actual: Any, enums: dict[str, str]) -> None:
    shape = first_code_span(cell)
    assert shape is not None, cell
    if shape.startswith("{"):
        object_text = re.match(r"\{[^{}]*\}", shape)
        assert object_text, shape
        assert isinstance(actual, type) and issubclass(actual, msgspec.Struct), shape
        assert_fields_match(actual, object_text.group(0), enums)
    elif shape == "null":
        assert actual is None
    else:
        assert described(actual) == shape


def test_contract_types_match() -> None:
    enums = contract_enums()
    for name, text in contract_types().items():
        if text.startswith("{"):
            assert_fields_match(getattr(protocol, name), text, enums)
        elif name in ADDITIVE_ENUMS:
            # Values may be added after the contract's own, which clients treat as unknown.
            values = described(getattr(protocol, name)).split(" | ")
            contract_values = text.split(" | ")
            assert values[: len(contract_values)] == contract_values, name
        else:
            assert described(getattr(protocol, name)) == text, name


def test_contract_requests_match() -> None:
    enums = contract_enums()
    rows = table_rows(contract_sections()["Requests"])
    assert rows
    for method_cell, params_cell, result_cell in rows:
        method = first_code_span(method_cell)
        assert method in protocol.REQUESTS, method
        spec = protocol.REQUESTS[method]
        check_message_shape(params_cell, spec.params, enums)
        check_message_shape(result_cell, spec.result, enums)


def test_contract_notifications_match() -> None:
    enums = contract_enums()
    rows = table_rows(contract_sections()["Notifications"])
    assert rows
    for method_cell, params_cell in rows:
        method = first_code_span(method_cell)
        assert method in protocol.NOTIFICATIONS, method
        spec = protocol.NOTIFICATIONS[method]
        if params_cell.startswith("`"):
            check_message_shape(params_cell, spec.params, enums)
        else:
            # Standard LSP notifications: the contract describes their use, not their shape.
            assert spec.params is None


def test_contract_errors_match() -> None:
    rows = table_rows(contract_sections()["Errors"])
    assert rows
    for code_cell, reason_cell in rows:
        code = protocol.ErrorCode(int(code_cell))
        assert protocol.ERROR_REASONS[code] == first_code_span(reason_cell)


def test_the_server_binds_a_handler_to_every_request_of_the_protocol() -> None:
    from podlink.server.lsp import create_server

    features = create_server().protocol.fm.features
    unanswered = [method for method in protocol.REQUESTS if method not in features]
    assert unanswered == []
