"""ENSURE_ROOT's ``owner``: what the agent makes below the root belongs to that user.

The agent runs as root in both targets here (as containers usually do); one test runs it as
``nobody`` through setpriv to see it refuse.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from podlink.agent.client import Agent, AgentError
from podlink.targets.base import ExecStream, Target, TargetDescription
from podlink.targets.local import LocalTarget
from tests.integration.two_way_agent.support import sh

NOBODY = 65534


async def owners(target: Target, folder: str) -> dict[str, str]:
    """``uid:gid`` and permission bits of everything in ``folder``, itself as ".", by path."""
    output = await sh(target, "find . -exec stat -c '%n %u:%g %a' {} +", cwd=folder)
    found = {}
    for line in output.splitlines():
        path, owner, mode = line.rsplit(" ", 2)
        found[path.removeprefix("./")] = f"{owner} {mode}"
    return found


async def test_everything_made_below_the_root_is_given_to_its_owner(
    agent: Agent, target: Target, tmp_path: Path
) -> None:
    parent = target.target_path(f"/owned-{uuid.uuid4().hex[:8]}")
    root = f"{parent}/root"
    assert await agent.ensure_root(root, owner="1000:1000") is True
    source = tmp_path / "source.txt"
    source.write_bytes(b"source")
    await agent.write_bytes(root, "a/b/file.txt", b"x", mode=0o4755)
    await agent.write_file(root, "c/streamed.txt", source, mode=0o640)
    await agent.write_many(root, [("d/e/many.txt", source)])
    await agent.mkdir(root, "m/n", 0o2775)
    await agent.symlink(root, "l/link", "../a")
    await agent.rename(root, "c/streamed.txt", "r/s/moved.txt")

    found = await owners(target, root)
    assert {path: entry.split()[0] for path, entry in found.items()} == {
        path: "1000:1000"
        for path in (
            *(".", "a", "a/b", "a/b/file.txt", "c", "d", "d/e", "d/e/many.txt"),
            *("m", "m/n", "l", "l/link", "r", "r/s", "r/s/moved.txt"),
        )
    }
    # Modes survive the change of owner, which clears setuid and setgid bits.
    assert found["a/b/file.txt"].split()[1] == "4755"
    assert found["m/n"].split()[1] == "2775"
    assert found["r/s/moved.txt"].split()[1] == "640"
    # Only what the agent made: the parent it made on the way is outside the root.
    assert (await sh(target, f"stat -c %u:%g {parent}")).strip() == "0:0"

    assert await agent.ensure_root(root) is False  # without an owner from now on
    await agent.write_bytes(root, "a/b/file.txt", b"replaced")
    await agent.write_bytes(root, "later/file.txt", b"y")
    found = await owners(target, root)
    assert {found[path].split()[0] for path in ("a/b/file.txt", "later", "later/file.txt")} == {
        "0:0"
    }


async def test_a_named_owner_is_looked_up_in_the_target(agent: Agent, target: Target) -> None:
    root = target.target_path(f"/named-{uuid.uuid4().hex[:8]}")
    await agent.ensure_root(root, owner="nobody")
    await agent.write_bytes(root, "f.txt", b"x")
    uid, gid = (await sh(target, "id -u nobody && id -g nobody")).split()
    assert (await owners(target, root))["f.txt"].split()[0] == f"{uid}:{gid}"


@pytest.mark.parametrize(
    ("owner", "named"),
    [
        ("no-such-user", "no-such-user"),
        ("root:no-such-group", "no-such-group"),
        ("a:b:c", "'user:group'"),
    ],
)
async def test_unknown_owners_are_bad_requests(
    agent: Agent, target: Target, owner: str, named: str
) -> None:
    root = target.target_path(f"/unknown-{uuid.uuid4().hex[:8]}")
    with pytest.raises(AgentError) as refused:
        await agent.ensure_root(root, owner=owner)
    assert refused.value.code == "badRequest"
    assert named in refused.value.message
    assert await agent.ensure_root(root) is True  # nothing was made by the refused one


class AsNobody:
    """A target whose commands run as ``nobody``, through setpriv."""

    def __init__(self, inner: Target) -> None:
        self.inner = inner

    @property
    def python(self) -> str:
        # The daemon's own interpreter may live where nobody can reach it.
        return "/usr/bin/python3" if isinstance(self.inner, LocalTarget) else self.inner.python

    def describe(self) -> TargetDescription:
        return self.inner.describe()

    async def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> ExecStream:
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        return await self.inner.exec([*drop, *argv], stdin=stdin, env=env, cwd=cwd)


async def test_an_agent_that_is_not_root_cannot_give_files_away(target: Target) -> None:
    agent = await Agent.start(AsNobody(target))
    try:
        assert agent.hello.uid == NOBODY
        with pytest.raises(AgentError) as refused:
            await agent.ensure_root(target.target_path("/tmp/not-mine"), owner="0:0")
        assert refused.value.code == "permissionDenied"
        assert "only root can give files away" in refused.value.message
        assert "run the container as root or drop 'owner'" in refused.value.message
    finally:
        await agent.close()
