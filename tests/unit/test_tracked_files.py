"""What the repository tracks: a fresh clone must build, so nothing machine-local is committed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _tracked_symlinks() -> list[tuple[str, str]]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.fail("this test reads the git index: run it inside a git checkout with git on PATH")
    listing = subprocess.run(
        ["git", "ls-files", "-s", "-z"], cwd=REPO, check=True, capture_output=True
    ).stdout.decode()
    links: list[tuple[str, str]] = []
    for record in filter(None, listing.split("\0")):
        meta, path = record.split("\t", 1)
        mode, blob = meta.split()[:2]
        if mode == "120000":
            target = subprocess.run(
                ["git", "cat-file", "blob", blob], cwd=REPO, check=True, capture_output=True
            ).stdout.decode()
            links.append((path, target))
    return links


def test_no_tracked_link_leaves_the_repository() -> None:
    # A committed `.venv -> /elsewhere/.venv` once made every clean checkout fail at venv creation.
    leaving = [
        (path, target)
        for path, target in _tracked_symlinks()
        if Path(target).is_absolute()
        or not (REPO / Path(path).parent / target).resolve().is_relative_to(REPO)
    ]
    assert leaving == []


def test_the_virtual_environment_is_never_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--", ".venv", "*/.venv"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert tracked == []
