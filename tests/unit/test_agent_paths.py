"""The agent's lexical path checks, and the promises that keep agent.py a single portable file."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from podlink.agent import agent, wire
from podlink.agent.agent import PathEscape, check_link_target, split_relative_path, temp_name
from podlink.sync.core import names

AGENT_FILE = Path(agent.__file__)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/..", "'..'"),
        ("..", "'..'"),
        ("/etc/passwd", "absolute"),
        ("/", "absolute"),
        ("", "empty"),
        (".", "'.'"),
        ("./a", "'.'"),
        ("a/./b", "'.'"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("x\x00y", "NUL"),
        ("bad\udcffname", "Unicode"),
        (None, "string"),
        (b"a/b", "string"),
        (["a"], "string"),
    ],
)
def test_refused_paths_say_why(path: object, reason: str) -> None:
    with pytest.raises(PathEscape) as refused:
        split_relative_path(path)
    assert refused.value.code == "escape"
    assert reason in refused.value.message


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("a b/c", ["a b", "c"]),
        ("ünï/cødé.py", ["ünï", "cødé.py"]),
        ("new\nline", ["new\nline"]),
        ("-rf", ["-rf"]),
        ("back\\slash", ["back\\slash"]),
        ("...", ["..."]),
        ("..hidden/.x", ["..hidden", ".x"]),
        ("a/b/c.txt", ["a", "b", "c.txt"]),
        ("日本語/🎉", ["日本語", "🎉"]),
    ],
)
def test_legal_names_are_accepted(path: str, parts: list[str]) -> None:
    assert split_relative_path(path) == parts


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("l", "a/b"),
        ("a/l", "../b.txt"),
        ("a/l", ".."),
        ("a/b/l", "../../c"),
        ("l", "./x/./y"),
        ("a/l", "b/../../c"),
    ],
)
def test_link_targets_inside_the_root_are_accepted(link: str, target: str) -> None:
    assert check_link_target(link.split("/"), target, link) == target


@pytest.mark.parametrize(
    ("link", "target", "reason"),
    [
        ("l", "..", "outside"),
        ("l", "../x", "outside"),
        ("a/l", "../../x", "outside"),
        ("a/l", "b/../../../x", "outside"),
        ("l", "/etc/passwd", "absolute"),
        ("l", "", "non-empty"),
        ("l", "a\x00b", "not valid text"),
        ("l", None, "non-empty"),
    ],
)
def test_link_targets_that_escape_are_refused(link: str, target: object, reason: str) -> None:
    with pytest.raises(PathEscape) as refused:
        check_link_target(link.split("/"), target, link)
    assert reason in refused.value.message


@pytest.mark.parametrize("name", ["x" * 255, "é" * 127, "short.py", "🎉" * 63])
def test_temp_names_fit_the_file_system_limit(name: str) -> None:
    temp = temp_name(name)
    assert temp.startswith(names.TEMP_PREFIX)
    assert len(temp.encode("utf-8")) <= 255
    assert temp != temp_name(name)


def test_agent_constants_match_the_wire_module() -> None:
    for message_type in wire.MessageType:
        assert getattr(agent, message_type.name) == message_type.value, message_type.name
    assert agent.HEADER_FORMAT == wire.HEADER_FORMAT
    assert agent.HEADER.size == wire.HEADER_SIZE == 9
    assert agent.MAX_PAYLOAD == wire.MAX_PAYLOAD
    assert agent.PROTOCOL_VERSION == wire.PROTOCOL_VERSION
    assert agent.AGENT_VERSION == wire.AGENT_VERSION
    assert agent.TEMP_PREFIX == names.TEMP_PREFIX


def test_agent_errno_codes_are_documented_error_codes() -> None:
    documented = {value for name, value in vars(wire.ErrorCode).items() if name.isupper()}
    assert set(agent.ERRNO_CODES.values()) <= documented


def test_agent_imports_only_the_standard_library() -> None:
    tree = ast.parse(AGENT_FILE.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported
    assert imported - {"__future__"} <= sys.stdlib_module_names


def test_agent_parses_as_python_3_8() -> None:
    ast.parse(AGENT_FILE.read_text(encoding="utf-8"), feature_version=(3, 8))


@pytest.mark.parametrize(
    "newer_api",
    ["removeprefix", "removesuffix", "file_digest", "functools.cache", "zip(strict"],
)
def test_agent_avoids_apis_newer_than_3_8(newer_api: str) -> None:
    assert newer_api not in AGENT_FILE.read_text(encoding="utf-8")
