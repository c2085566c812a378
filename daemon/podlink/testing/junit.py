"""JUnit XML for CI systems, from a run's results (local ids, so local paths).

It reads like pytest's own ``--junit-xml`` report (xunit2): the same ``classname`` and
``name`` for every test id, ``<skipped type="pytest.xfail">`` for an expected failure, a
passed test case for an unexpected pass, and characters XML 1.0 cannot carry (an ANSI
colour code in captured output, a bell, a form feed) shown as ``#x1B`` the way pytest does.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from urllib.parse import unquote, urlparse

from podlink import protocol

_PROBLEM_TAGS = {"failed": "failure", "errored": "error"}
# What XML 1.0 allows (Char), less DEL, which pytest's report escapes as well.
_NOT_XML = re.compile("[^\t\n\r\x20-\x7e\x80-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 forbids written visibly: ``\\x1b`` -> ``#x1B``."""

    def visible(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"#x{code:02X}" if code <= 0xFF else f"#x{code:04X}"

    return _NOT_XML.sub(visible, text)


def junit_xml(
    results: Sequence[protocol.TestResultParams], *, suite: str, duration_seconds: float
) -> bytes:
    """One ``<testsuite>`` holding a ``<testcase>`` per result, as pytest's own report does.

    A file collected twice (as tests and, with ``--doctest-modules``, as doctests) reports
    its collection error or skip twice under one id; pytest's report has one case for it.
    """
    firsts: dict[str, protocol.TestResultParams] = {}
    for result in results:
        firsts.setdefault(result.id, result)
    results = list(firsts.values())
    counts = {outcome: 0 for outcome in ("failed", "errored", "skipped")}
    for result in results:
        counted = "skipped" if result.outcome == "xfailed" else result.outcome
        if counted in counts:
            counts[counted] += 1
    root = ElementTree.Element("testsuites")
    suite_element = ElementTree.SubElement(
        root,
        "testsuite",
        name=xml_text(suite),
        tests=str(len(results)),
        failures=str(counts["failed"]),
        errors=str(counts["errored"]),
        skipped=str(counts["skipped"]),
        time=f"{duration_seconds:.3f}",
    )
    for result in results:
        classname, name, file = junit_names(result.id)
        case = ElementTree.SubElement(
            suite_element,
            "testcase",
            classname=xml_text(classname),
            name=xml_text(name),
            file=xml_text(file),
            time=f"{(result.duration_ms or 0) / 1000:.3f}",
        )
        if result.location is not None:
            case.set("line", str(result.location.range.start.line + 1))
        message = xml_text(result.message or "")
        tag = _PROBLEM_TAGS.get(result.outcome)
        if tag is not None:
            problem = ElementTree.SubElement(case, tag, message=message.split("\n", 1)[0])
            problem.text = message
        elif result.outcome == "skipped":
            skipped = ElementTree.SubElement(case, "skipped", type="pytest.skip", message=message)
            if result.location is not None:
                line = result.location.range.start.line + 1
                skipped.text = f"{_local_path(result.location.uri)}:{line}: {message}"
        elif result.outcome == "xfailed":
            ElementTree.SubElement(
                case, "skipped", type="pytest.xfail", message=message.split("\n", 1)[0]
            )
        # Unknown outcomes and xpassed (pytest's report shows an unexpected pass as passed)
        # have no element of their own.
        if result.output:
            ElementTree.SubElement(case, "system-out").text = xml_text(result.output)
    ElementTree.indent(root)
    data: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def junit_names(test_id: str) -> tuple[str, str, str]:
    """A test id's ``classname``, ``name`` and file, as pytest's report names them.

    ``tests/test_a.py::TestX::test_y[1]`` -> ("tests.test_a.TestX", "test_y[1]", file); the
    parameters in brackets are opaque (``test_p[::a]`` is one name), and an id that is only a
    file (a file skipped or broken as a whole) is ("", "tests.test_a", file).
    """
    file, separator, rest = test_id.partition("::")
    module = re.sub(r"\.py$", "", file.replace("/", "."))
    if not separator:
        return "", module, file
    names, bracket, parameters = rest.partition("[")
    parts = names.split("::")
    parts[-1] += bracket + parameters
    return ".".join([module, *parts[:-1]]), parts[-1], file


def _local_path(uri: str) -> str:
    return unquote(urlparse(uri).path)
