"""A real agent in each kind of target, a local folder and a Docker container."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from podlink.agent.client import Agent
from podlink.config import DockerTargetConfig
from podlink.targets.base import Target
from podlink.targets.docker import DockerTarget
from podlink.targets.local import LocalTarget
from tests.targets import docker_client, start_test_container

AGENT_TARGET_KINDS = ("local", "docker")


@pytest.fixture(scope="module", params=AGENT_TARGET_KINDS)
def container(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One container per module (None for the local target); each test has its own root."""
    if request.param == "local":
        yield None
        return
    assert request.param == "docker"
    created = start_test_container(docker_client())
    yield created
    created.remove(force=True)


@pytest.fixture
async def target(container: Any, tmp_path: Path) -> AsyncIterator[Target]:
    made: LocalTarget | DockerTarget
    if container is None:
        made = LocalTarget(tmp_path / "target")
    else:
        made = DockerTarget(DockerTargetConfig(container=container.name), tmp_path)
    await made.connect()
    yield made
    await made.close()


@pytest.fixture
async def agent(target: Target) -> AsyncIterator[Agent]:
    started = await Agent.start(target)
    yield started
    await started.close()


@pytest.fixture
async def root(agent: Agent, target: Target) -> str:
    """A fresh sync root in the target."""
    path = target.target_path(f"/sync-{uuid.uuid4().hex[:8]}")
    assert await agent.ensure_root(path)
    return path
