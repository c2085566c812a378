"""Target paths <-> local files through the sync entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlink.diagnostics import RelatedLocation
from podlink.pathmap import Frame, MappedRoot, PathMap


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    for name in ("src/app.py", "web/static/site.js", "web/index.py", "cache/x.py"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n")
    return tmp_path


@pytest.fixture
def paths(workspace: Path) -> PathMap:
    """Two sync entries, the second nested inside the first one's target folder."""
    return PathMap(
        [
            MappedRoot(workspace / "src", "/srv/", lambda path: path.startswith("cache/")),
            MappedRoot(workspace / "web", "/srv/www"),
        ]
    )


TO_LOCAL_CASES = {
    "absolute": ("/srv/app.py", None, "src/app.py"),
    "the closest of nested roots": ("/srv/www/index.py", None, "web/index.py"),
    "relative to the working folder": ("static/site.js", "/srv/www", "web/static/site.js"),
    "dots are normalised": ("/srv/www/../app.py", None, "src/app.py"),
    "relative without a working folder": ("app.py", None, None),
    "outside every root": ("/usr/lib/python3.11/os.py", None, None),
    "a prefix that is not a folder": ("/srvx/app.py", None, None),
    "ignored in the target": ("/srv/cache/x.py", None, None),
    "not a local file": ("/srv/generated.py", None, None),
    "not a path at all": ("<frozen importlib._bootstrap>", None, None),
}


@pytest.mark.parametrize("target, cwd, local", TO_LOCAL_CASES.values(), ids=TO_LOCAL_CASES.keys())
def test_to_local(
    workspace: Path, paths: PathMap, target: str, cwd: str | None, local: str | None
) -> None:
    assert paths.to_local(target, cwd=cwd) == (workspace / local if local else None)


def test_to_target(workspace: Path, paths: PathMap) -> None:
    assert paths.to_target(workspace / "src" / "app.py") == "/srv/app.py"
    assert paths.to_target(workspace / "web" / "new" / "file.py") == "/srv/www/new/file.py"
    assert paths.to_target(workspace / "web") == "/srv/www"
    assert paths.to_target(workspace / "src" / ".." / "web" / "index.py") == "/srv/www/index.py"
    assert paths.to_target(workspace / "README.md") is None


def test_place_frames(workspace: Path, paths: PathMap) -> None:
    frames = [
        Frame("/usr/lib/python3/runpy.py", 88, "_run_code"),
        Frame("/srv/www/index.py", 3, "<module>"),
        Frame("/srv/app.py", 1, "handle"),
        Frame("/usr/lib/python3.11/json/decoder.py", 355, "raw_decode"),
    ]
    placed = paths.place_frames(frames)
    assert placed is not None
    assert (placed.path, placed.line, placed.frame_index) == (workspace / "src/app.py", 1, 2)
    assert placed.related == (RelatedLocation(workspace / "web/index.py", 3, "in <module>"),)
    assert paths.place_frames(frames[:1]) is None
