"""Preconditions (``expect``): a change happens only over what the daemon last saw there.

Each operation: what was expected is there -> done; something else is there -> ``changed``
and nothing touched; ``None`` -> only where nothing is. Edits "made in the target" change the
size or set an explicit mtime: file times are only as fine as the kernel's clock tick.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from podlink.agent.client import Agent, AgentError, Expected
from podlink.sync.core.snapshot import Kind
from podlink.targets.base import Target
from tests.integration.two_way_agent.support import sh


async def look(agent: Agent, root: str, path: str) -> Expected:
    """What the daemon saw at ``path`` just now."""
    return Expected.entry((await agent.scan(root)).entries[path])


async def listing(agent: Agent, root: str) -> dict[str, Any]:
    """Each path with its kind, and a file's content digest or a link's target."""
    scanned = await agent.scan(root, hash=True)
    return {
        path: (entry.kind.value, entry.digest or entry.link_target)
        for path, entry in scanned.entries.items()
    }


async def refused_as_changed(call: Awaitable[object]) -> None:
    with pytest.raises(AgentError) as refused:
        await call
    assert refused.value.code == "changed", refused.value
    assert "the target changed" in refused.value.message


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_write_bytes(agent: Agent, target: Target, root: str) -> None:
    await agent.write_bytes(root, "f.txt", b"one")
    seen = await look(agent, root, "f.txt")
    await agent.write_bytes(root, "f.txt", b"two!", expect=seen)
    await refused_as_changed(agent.write_bytes(root, "f.txt", b"three", expect=seen))
    await refused_as_changed(agent.write_bytes(root, "f.txt", b"three", expect=None))
    assert (await listing(agent, root))["f.txt"] == ("f", digest(b"two!"))

    await agent.write_bytes(root, "new.txt", b"new", expect=None)
    await agent.mkdir(root, "folder")
    await refused_as_changed(agent.write_bytes(root, "folder", b"x", expect=None))
    # Something expected in a folder that is missing: a change, and no folder is made.
    await refused_as_changed(
        agent.write_bytes(root, "nope/x.txt", b"x", expect=Expected(Kind.FILE, 1, 1))
    )
    before = await listing(agent, root)
    assert "nope" not in before

    await sh(target, "touch -d 2001-02-03 new.txt", cwd=root)  # an edit keeping the size
    await refused_as_changed(
        agent.write_bytes(root, "new.txt", b"mine", expect=Expected(Kind.FILE, 3, 0))
    )
    assert await listing(agent, root) == before


async def test_write_file(agent: Agent, root: str, tmp_path: Path) -> None:
    source = tmp_path / "source.txt"
    source.write_bytes(b"local")
    await agent.write_bytes(root, "f.txt", b"remote")
    seen = await look(agent, root, "f.txt")
    await agent.write_bytes(root, "f.txt", b"remote, edited there")
    await refused_as_changed(agent.write_file(root, "f.txt", source, expect=seen))
    assert (await listing(agent, root))["f.txt"] == ("f", digest(b"remote, edited there"))
    await agent.write_file(root, "f.txt", source, expect=await look(agent, root, "f.txt"))
    await agent.write_file(root, "g.txt", source, expect=None)
    assert (await listing(agent, root))["f.txt"] == ("f", digest(b"local"))


async def test_write_many_checks_each_file_on_its_own(
    agent: Agent, root: str, tmp_path: Path
) -> None:
    for name in ("kept", "stale", "there", "unchecked"):
        await agent.write_bytes(root, f"{name}.txt", b"old")
    sources = {}
    for name in ("kept", "stale", "there", "new", "unchecked"):
        sources[name] = tmp_path / name
        sources[name].write_bytes(name.encode())
    kept = await look(agent, root, "kept.txt")
    stale = await look(agent, root, "stale.txt")
    await agent.write_bytes(root, "stale.txt", b"edited in the target")

    result = await agent.write_many(
        root,
        [
            ("kept.txt", sources["kept"], kept),
            ("stale.txt", sources["stale"], stale),
            ("there.txt", sources["there"], None),
            ("new.txt", sources["new"], None),
            ("unchecked.txt", sources["unchecked"]),
        ],
    )
    assert {path: code for path, code, _ in result.failed} == {
        "stale.txt": "changed",
        "there.txt": "changed",
    }
    assert sorted(sent.path for sent in result.written) == ["kept.txt", "new.txt", "unchecked.txt"]
    now = await listing(agent, root)
    assert now["kept.txt"] == ("f", digest(b"kept"))
    assert now["stale.txt"] == ("f", digest(b"edited in the target"))
    assert now["there.txt"] == ("f", digest(b"old"))
    assert now["new.txt"] == ("f", digest(b"new"))


async def test_delete(agent: Agent, root: str) -> None:
    await agent.write_bytes(root, "f.txt", b"one")
    seen = await look(agent, root, "f.txt")
    await agent.write_bytes(root, "f.txt", b"edited")
    await refused_as_changed(agent.delete(root, "f.txt", expect=seen))
    await refused_as_changed(agent.delete(root, "f.txt", expect=None))
    assert await agent.delete(root, "f.txt", expect=await look(agent, root, "f.txt"))
    await refused_as_changed(agent.delete(root, "f.txt", expect=seen))
    await refused_as_changed(agent.delete(root, "gone/f.txt", expect=seen))
    assert await agent.delete(root, "f.txt", expect=None) is False

    await agent.write_bytes(root, "tree/inner/f.txt", b"x")
    await refused_as_changed(
        agent.delete(root, "tree", recursive=True, expect=Expected(Kind.FILE, 1, 0))
    )
    assert await agent.delete(root, "tree", recursive=True, expect=Expected(Kind.DIRECTORY))
    assert await listing(agent, root) == {}


async def test_mkdir(agent: Agent, root: str) -> None:
    await agent.mkdir(root, "made", 0o700, expect=None)
    await refused_as_changed(agent.mkdir(root, "made", 0o755, expect=None))
    await agent.mkdir(root, "made", 0o750, expect=Expected(Kind.DIRECTORY))
    assert (await agent.scan(root)).entries["made"].mode == 0o750
    await refused_as_changed(agent.mkdir(root, "missing", expect=Expected(Kind.DIRECTORY)))
    await refused_as_changed(agent.mkdir(root, "p/q", expect=Expected(Kind.DIRECTORY)))
    await agent.write_bytes(root, "file", b"")
    await refused_as_changed(agent.mkdir(root, "file", expect=Expected(Kind.DIRECTORY)))
    assert set(await listing(agent, root)) == {"made", "file"}


async def test_symlink(agent: Agent, root: str) -> None:
    await agent.symlink(root, "link", "a", expect=None)
    await refused_as_changed(agent.symlink(root, "link", "b", expect=None))
    await agent.symlink(root, "link", "b", expect=Expected(Kind.SYMLINK))
    await agent.write_bytes(root, "file", b"")
    await refused_as_changed(agent.symlink(root, "file", "b", expect=Expected(Kind.SYMLINK)))
    assert await listing(agent, root) == {"link": ("l", "b"), "file": ("f", digest(b""))}


async def test_chmod(agent: Agent, root: str) -> None:
    await agent.write_bytes(root, "f.txt", b"one", mode=0o644)
    seen = await look(agent, root, "f.txt")
    await agent.chmod(root, "f.txt", 0o600, expect=seen)
    await agent.write_bytes(root, "f.txt", b"edited", mode=0o600)
    await refused_as_changed(agent.chmod(root, "f.txt", 0o755, expect=seen))
    await refused_as_changed(agent.chmod(root, "f.txt", 0o755, expect=None))
    await refused_as_changed(agent.chmod(root, "gone/f.txt", 0o755, expect=seen))
    assert (await agent.scan(root)).entries["f.txt"].mode == 0o600


async def test_rename(agent: Agent, root: str) -> None:
    await agent.write_bytes(root, "a.txt", b"a")
    await agent.write_bytes(root, "b.txt", b"bb")
    seen_a = await look(agent, root, "a.txt")
    seen_b = await look(agent, root, "b.txt")

    await refused_as_changed(agent.rename(root, "a.txt", "b.txt", expect=seen_a, expect_dst=None))
    await refused_as_changed(agent.rename(root, "a.txt", "c.txt", expect=seen_b))
    await refused_as_changed(agent.rename(root, "a.txt", "c.txt", expect=None))
    await refused_as_changed(agent.rename(root, "gone/a.txt", "c.txt", expect=seen_a))
    assert set(await listing(agent, root)) == {"a.txt", "b.txt"}

    await agent.rename(root, "a.txt", "new/dir/a.txt", expect=seen_a, expect_dst=None)
    await agent.rename(root, "new/dir/a.txt", "b.txt", expect=seen_a, expect_dst=seen_b)
    assert await listing(agent, root) == {
        "b.txt": ("f", digest(b"a")),
        "new": ("d", None),
        "new/dir": ("d", None),
    }


async def test_rename_makes_the_parents_of_its_destination_and_can_change_only_case(
    agent: Agent, root: str
) -> None:
    await agent.write_bytes(root, "a.txt", b"a")
    await agent.rename(root, "a.txt", "x/y/z/a.txt")
    await agent.rename(root, "x/y/z/a.txt", "x/y/z/A.txt")
    await agent.mkdir(root, "Folder")
    await agent.rename(root, "Folder", "folder", expect_dst=None)
    assert await listing(agent, root) == {
        "x": ("d", None),
        "x/y": ("d", None),
        "x/y/z": ("d", None),
        "x/y/z/A.txt": ("f", digest(b"a")),
        "folder": ("d", None),
    }


async def test_rescans_reuse_no_stale_digest_when_only_the_content_changed(
    agent: Agent, target: Target, root: str
) -> None:
    await agent.write_bytes(root, "f.txt", b"before")
    first = await agent.scan(root, hash=True)
    assert first.entries["f.txt"].digest == digest(b"before")
    # Same size, same inode, and the old mtime put back, as cp -p or tar would: only the
    # ctime tells, and the agent's digest cache checks it.
    keep_mtime = (
        "import os; s = os.stat('f.txt'); f = open('f.txt', 'r+b'); f.write(b'AFTER!'); "
        "f.close(); os.utime('f.txt', ns=(s.st_atime_ns, s.st_mtime_ns))"
    )
    await sh(target, f'python3 -c "{keep_mtime}"', cwd=root)
    second = await agent.scan(root, hash=True)
    entry = second.entries["f.txt"]
    assert (entry.size, entry.mtime_ns, entry.inode) == (
        first.entries["f.txt"].size,
        first.entries["f.txt"].mtime_ns,
        first.entries["f.txt"].inode,
    )
    assert entry.digest == digest(b"AFTER!")
    assert (await agent.hash(root, ["f.txt"])) == {"f.txt": digest(b"AFTER!")}
