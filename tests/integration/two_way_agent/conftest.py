"""A real agent in each kind of target, a local folder and a Docker container."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from podlink.agent.client import Agent
from podlink.targets.base import Target
from tests.targets import LOCAL_AND_DOCKER, container_for, target_in


@pytest.fixture(scope="module", params=LOCAL_AND_DOCKER)
def container(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One container per module (None for the local target); each test has its own root."""
    created = container_for(str(request.param))
    yield created
    if created is not None:
        created.remove(force=True)


@pytest.fixture
async def target(container: Any, tmp_path: Path) -> AsyncIterator[Target]:
    made: Target = target_in(container, tmp_path)
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
