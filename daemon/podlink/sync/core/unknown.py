"""What a target held before podlink's first sync there: left alone unless the config says.

Pure: no I/O. Upload mode makes the target mirror the workspace, so a first sync into a
folder that already holds files (an image's own copy of the project, a volume's data, a
folder picked by mistake) would delete everything the workspace does not have. Instead the
first sync records those paths as *left*; every later pass looks at the target as if they
were not there, until the workspace writes the same path (then podlink owns it). The
folders above a left path are kept too, so deleting a folder in the workspace never takes
a left file with it in the target.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Mapping

from podlink.sync.core.snapshot import Entry, Kind, Snapshot


def unknown_paths(local: Snapshot, remote: Snapshot) -> frozenset[str]:
    """The target's paths (files, links and folders) that the workspace does not have."""
    return frozenset(remote.keys() - local.keys())


def without_left(
    remote: Mapping[str, Entry],
    local: Collection[str],
    left: Collection[str],
    guarded: Collection[str],
) -> dict[str, Entry]:
    """``remote`` as a pass should see it: left paths and the folders above them are hidden
    where the workspace has nothing, so no plan can delete them."""
    if not left:
        return dict(remote)
    return {
        path: entry
        for path, entry in remote.items()
        if path in local or (path not in left and path not in guarded)
    }


def describe_left(left: Collection[str], remote: Snapshot, limit: int = 20) -> str:
    """The left paths as a short list: a folder stands for what it holds (``data/``)."""
    tops = sorted(path for path in left if posixpath.dirname(path) not in left)
    names = [
        f"{path}/"
        if (entry := remote.get(path)) is not None and entry.kind is Kind.DIRECTORY
        else path
        for path in tops[:limit]
    ]
    more = len(tops) - limit
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")
