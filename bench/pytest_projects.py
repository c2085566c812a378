"""Real projects' test suites, through ``podlink test`` and through plain pytest, compared.

Run (after ``scripts/docker-env``, which starts the engine and builds the test image):

    .venv/bin/python -m bench.pytest_projects [--target docker|local] [--project NAME ...]

Not part of CI: it downloads the projects' sdists from the package index (with pip, at the
pinned versions below, cached under ``~/.cache/podlink-test/sdists``). Each sdist is
unpacked into a workspace and tested two ways in the same target (a throwaway container of
podlink-test-python:bookworm labelled ``podlink.bench=1``, removed at the end; or a local
target with this environment's Python):

1. ``podlink test --junit-xml`` (a whole run: session start, sync, pytest, session stop);
2. plain pytest on the tree podlink synced, in the same target (``docker exec -w /app``),
   with ``--continue-on-collection-errors`` as podlink passes it.

Each way runs twice (the first warms caches and, for podlink, makes the first sync); the
second is timed. One JSON line per project: both sides' counts by outcome, the test cases
whose outcome differs (or that only one side has; the first few named), the two times and
their ratio. The conformance test in tests/ does the same on a corpus made to hold every
outcome; this tier shows it holds on suites nobody here wrote.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE = "podlink-test-python:bookworm"
BENCH_LABEL = "podlink.bench"
CACHE = Path(os.environ.get("PODLINK_TEST_CACHE", Path.home() / ".cache" / "podlink-test"))
PLAIN_OPTIONS = ["--continue-on-collection-errors"]
SHOWN_DIFFERENCES = 10


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    # Folders (relative to the sdist's root) and wheels the tests import, on PYTHONPATH.
    paths: tuple[str, ...] = (".",)
    wheels: tuple[str, ...] = ()
    options: tuple[str, ...] = field(default=())


PROJECTS = {
    "more-itertools": Project("more-itertools", "11.2.1"),
    "packaging": Project("packaging", "26.4", paths=("src",), wheels=("pretend==1.0.9",)),
}


def pip_download(requirement: str, *, sdist: bool) -> Path:
    """The file of ``requirement`` from the package index (pip's own client), cached."""
    folder = CACHE / ("sdists" if sdist else "wheels")
    folder.mkdir(parents=True, exist_ok=True)
    name, _, version = requirement.partition("==")
    stem = name.replace("-", "_").lower()
    for candidate in folder.iterdir():
        lowered = candidate.name.lower()
        if lowered.startswith(f"{stem}-{version}") or lowered.startswith(f"{name}-{version}"):
            return candidate
    binary = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *binary]
    subprocess.run([*pip, "-d", str(folder), requirement], check=True)
    return pip_download(requirement, sdist=sdist)


def unpack(project: Project, into: Path) -> Path:
    archive = pip_download(f"{project.name}=={project.version}", sdist=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    [root] = [path for path in into.iterdir() if path.is_dir()]
    deps = root / "bench_deps"
    deps.mkdir()
    for requirement in project.wheels:
        wheel = pip_download(requirement, sdist=False)
        (deps / wheel.name).write_bytes(wheel.read_bytes())
    return root


def python_path(project: Project, root: Path, base: str) -> str:
    wheels = sorted(path.name for path in (root / "bench_deps").iterdir())
    parts = [f"{base}/{path}" if path != "." else base for path in project.paths]
    return ":".join(parts + [f"{base}/bench_deps/{wheel}" for wheel in wheels])


# -- the two ways --------------------------------------------------------------------------


def podlink_run(workspace: Path, state: Path, report: Path) -> float:
    env = {**os.environ, "PODLINK_STATE_DIR": str(state)}
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "podlink", "test", "--junit-xml", str(report)],
        cwd=workspace,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.monotonic() - started


def plain_run_docker(container: str, pythonpath: str) -> tuple[float, bytes]:
    started = time.monotonic()
    exec_in = ["docker", "exec", "-w", "/app", "-e", f"PYTHONPATH={pythonpath}", container]
    subprocess.run(
        [*exec_in, "python3", "-m", "pytest", *PLAIN_OPTIONS, "--junit-xml=/tmp/plain.xml"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    seconds = time.monotonic() - started
    report = subprocess.run(
        ["docker", "exec", container, "cat", "/tmp/plain.xml"], capture_output=True, check=True
    ).stdout
    return seconds, report


def plain_run_local(synced: Path, pythonpath: str, report: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pytest", *PLAIN_OPTIONS, f"--junit-xml={report}"],
        cwd=synced,
        env={**os.environ, "PYTHONPATH": pythonpath},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.monotonic() - started


# -- comparison ----------------------------------------------------------------------------


def outcome_of(case: ElementTree.Element) -> str:
    for child in case:
        if child.tag in ("failure", "error"):
            return "failed" if child.tag == "failure" else "errored"
        if child.tag == "skipped":
            return "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
    return "passed"


def read_cases(report: bytes) -> dict[tuple[str, str], str]:
    """(classname, name) -> outcome; a name pytest writes twice (a failed call, then an error
    in teardown) counts once, as its first case."""
    cases: dict[tuple[str, str], str] = {}
    for case in ElementTree.fromstring(report).iter("testcase"):
        cases.setdefault((case.get("classname", ""), case.get("name", "")), outcome_of(case))
    return cases


def compare(project: Project, target: str, ours: bytes, plain: bytes) -> dict[str, Any]:
    podlink_cases, pytest_cases = read_cases(ours), read_cases(plain)
    names = sorted(set(podlink_cases) | set(pytest_cases))
    differing = [
        name
        for name in names
        if podlink_cases.get(name, "absent") != pytest_cases.get(name, "absent")
    ]
    return {
        "project": project.name,
        "version": project.version,
        "target": target,
        "tests": len(pytest_cases),
        "podlink": dict(collections.Counter(podlink_cases.values())),
        "pytest": dict(collections.Counter(pytest_cases.values())),
        "differences": len(differing),
        "examples": [
            {
                "case": "::".join(name),
                "podlink": podlink_cases.get(name, "absent"),
                "pytest": pytest_cases.get(name, "absent"),
            }
            for name in differing[:SHOWN_DIFFERENCES]
        ],
    }


# -- targets -------------------------------------------------------------------------------


@contextlib.contextmanager
def docker_container() -> Iterator[str]:
    name = f"podlink-bench-{uuid.uuid4().hex[:8]}"
    run = ["docker", "run", "-d", "--init", "--name", name, "--label", f"{BENCH_LABEL}=1"]
    subprocess.run(
        [*run, IMAGE, "sleep", "infinity"],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], stdout=subprocess.DEVNULL, check=False)


def bench_project(project: Project, target: str, scratch: Path) -> dict[str, Any]:
    root = unpack(project, scratch / "sdist")
    state = scratch / "state"
    ours = scratch / "podlink.xml"
    with contextlib.ExitStack() as stack:
        if target == "docker":
            container = stack.enter_context(docker_container())
            subprocess.run(["docker", "exec", container, "mkdir", "-p", "/app"], check=True)
            pythonpath = python_path(project, root, "/app")
            section = f"target:\n  docker:\n    container: {container}\n"
            command = ["python3", "-m", "pytest"]
        else:
            synced = scratch / "target" / "app"
            pythonpath = python_path(project, root, str(synced))
            section = f"target:\n  local:\n    root: {scratch / 'target'}\n"
            command = [sys.executable, "-m", "pytest"]
        (root / "podlink.yaml").write_text(
            f"version: 1\n{section}sync:\n  - local: .\n    remote: /app\n"
            f"test:\n  command: {json.dumps(command)}\n"
            f"  env: {json.dumps({'PYTHONPATH': pythonpath})}\n"
        )
        podlink_seconds = plain_seconds = 0.0
        plain = b""
        for _ in range(2):  # the second of each is the one timed
            podlink_seconds = podlink_run(root, state, ours)
            if target == "docker":
                plain_seconds, plain = plain_run_docker(container, pythonpath)
            else:
                report = scratch / "plain.xml"
                plain_seconds = plain_run_local(synced, pythonpath, report)
                plain = report.read_bytes()
        result = compare(project, target, ours.read_bytes(), plain)
    result.update(
        podlink_seconds=round(podlink_seconds, 2),
        pytest_seconds=round(plain_seconds, 2),
        ratio=round(podlink_seconds / plain_seconds, 3) if plain_seconds else None,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("docker", "local"), default="docker")
    parser.add_argument("--project", action="append", choices=sorted(PROJECTS))
    args = parser.parse_args()
    for name in args.project or sorted(PROJECTS):
        with tempfile.TemporaryDirectory(prefix="podlink-bench-") as scratch:
            print(json.dumps(bench_project(PROJECTS[name], args.target, Path(scratch))), flush=True)


if __name__ == "__main__":
    main()
