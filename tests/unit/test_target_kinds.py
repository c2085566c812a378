"""Target kinds stay inside ``targets/``: the rest of the daemon asks for capabilities.

The classes are found by reading the package, so a new target kind is covered without
naming it here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import podlink
import podlink.targets

PACKAGE = Path(podlink.__file__).parent
TARGETS = Path(podlink.targets.__file__).parent
# config/ parses the target sections, so it knows their kinds by design.
CONFIG = PACKAGE / "config"
KNOWS_THE_KINDS = (TARGETS, CONFIG)


def target_kind_classes() -> set[str]:
    """The classes that implement a target kind, and the config classes that name one."""
    kinds = {
        node.name
        for path in TARGETS.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name.endswith("Target")
    }
    kinds |= {
        node.name
        for path in CONFIG.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name.endswith("TargetConfig")
    }
    return kinds


def kind_checks(path: Path, kinds: set[str]) -> list[str]:
    """Every ``isinstance(x, Kind)`` in ``path`` whose class is a target kind, as file:line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance"):
            continue
        checked = node.args[1]
        names = checked.elts if isinstance(checked, ast.Tuple) else [checked]
        if any(getattr(name, "id", getattr(name, "attr", None)) in kinds for name in names):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


def test_the_kinds_are_found() -> None:
    assert {"LocalTarget", "DockerTarget", "KubernetesTarget", "DockerTargetConfig"} <= (
        target_kind_classes()
    )


def test_no_isinstance_on_a_target_kind_outside_targets() -> None:
    kinds = target_kind_classes()
    outside = [
        path
        for path in PACKAGE.rglob("*.py")
        if not any(path == place or place in path.parents for place in KNOWS_THE_KINDS)
    ]
    checks = [check for path in outside for check in kind_checks(path, kinds)]
    assert checks == [], "ask the target for a capability (targets/capabilities.py) instead"
