"""JUnit XML for CI systems, from a run's results (local ids, so local paths)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence

from podlink import protocol

_PROBLEM_TAGS = {"failed": "failure", "errored": "error"}


def junit_xml(
    results: Sequence[protocol.TestResultParams], *, suite: str, duration_seconds: float
) -> bytes:
    """One ``<testsuite>`` holding a ``<testcase>`` per result, as pytest's own report does."""
    counts = {outcome: 0 for outcome in ("passed", "failed", "errored", "skipped")}
    for result in results:
        counts[result.outcome] += 1
    root = ElementTree.Element("testsuites")
    suite_element = ElementTree.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(counts["failed"]),
        errors=str(counts["errored"]),
        skipped=str(counts["skipped"]),
        time=f"{duration_seconds:.3f}",
    )
    for result in results:
        classname, name, file = _names(result.id)
        case = ElementTree.SubElement(
            suite_element,
            "testcase",
            classname=classname,
            name=name,
            file=file,
            time=f"{(result.duration_ms or 0) / 1000:.3f}",
        )
        if result.location is not None:
            case.set("line", str(result.location.range.start.line + 1))
        message = result.message or ""
        tag = _PROBLEM_TAGS.get(result.outcome)
        if tag is not None:
            problem = ElementTree.SubElement(case, tag, message=message.split("\n", 1)[0])
            problem.text = message
        elif result.outcome == "skipped":
            ElementTree.SubElement(case, "skipped", message=message)
        if result.output:
            ElementTree.SubElement(case, "system-out").text = result.output
    ElementTree.indent(root)
    data: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def _names(test_id: str) -> tuple[str, str, str]:
    """``tests/test_a.py::TestX::test_y[1]`` -> ("tests.test_a.TestX", "test_y[1]", file)."""
    file, _, rest = test_id.partition("::")
    parts = rest.split("::") if rest else [file]
    module = file.removesuffix(".py").replace("/", ".")
    classname = ".".join([module, *parts[:-1]])
    return classname, parts[-1], file
