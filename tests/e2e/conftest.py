"""A real LSP client (pytest-lsp's, on pygls) driving ``podlink serve`` over stdio.

podlink's own notifications and results are kept as plain JSON so the assertions read like
the protocol document.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient
from pytest_lsp.client import register_lsp_features
from pytest_lsp.protocol import LanguageClientProtocol

from tests.kube_cluster import KubeCluster, open_cluster
from tests.targets import (
    TARGET_KINDS,
    DockerProbe,
    KubernetesProbe,
    LocalProbe,
    TargetProbe,
    docker_client,
    start_test_container,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"
PODLINK_NOTIFICATIONS = (
    "podlink/sessionChanged",
    "podlink/log",
    "podlink/testResult",
    "podlink/testRunFinished",
    "podlink/containerLog",
)


@attrs.define
class RawRequest:
    id: int | str
    method: str
    jsonrpc: str
    params: Any = None


@attrs.define
class RawNotification:
    method: str
    jsonrpc: str
    params: Any = None


@attrs.define
class RawResponse:
    id: int | str
    jsonrpc: str
    result: Any = None


class RawPodlinkProtocol(LanguageClientProtocol):
    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        if method in PODLINK_NOTIFICATIONS:
            return RawNotification
        if method.startswith("podlink/"):
            return RawRequest
        return super().get_message_type(method)

    def get_result_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        if method.startswith("podlink/"):
            return RawResponse
        return super().get_result_type(method)


class Daemon:
    """The client side of one ``podlink serve`` process, with everything it was told."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.notifications: list[tuple[str, Any]] = []
        self._arrived = asyncio.Condition()
        for method in PODLINK_NOTIFICATIONS:
            client.feature(method)(self._recorder(method))

    def _recorder(self, method: str) -> Callable[[Any], Any]:
        async def record(params: Any) -> None:
            self.notifications.append((method, params))
            async with self._arrived:
                self._arrived.notify_all()

        return record

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.client.protocol.send_request_async(method, params or {})

    def received(self, method: str, since: int = 0) -> list[Any]:
        return [params for name, params in self.notifications[since:] if name == method]

    def mark(self) -> int:
        """A position in the notifications, for waiting only on what comes after it."""
        return len(self.notifications)

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Any], bool],
        seconds: float = 20.0,
        since: int = 0,
    ) -> Any:
        """The first notification (already received or still to come) that matches."""

        def find() -> Any:
            return next((p for p in self.received(method, since) if predicate(p)), None)

        async with asyncio.timeout(seconds), self._arrived:
            while (found := find()) is None:
                await self._arrived.wait()
            return found


@pytest.fixture(params=TARGET_KINDS)
def target_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A private copy of the example project (still configured for the local target)."""
    folder = tmp_path / "workspace"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    return folder


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """One cluster for the whole run (each test gets its own pod in it): the double, or the
    real cluster PODLINK_TEST_KUBECONTEXT names."""
    cluster = open_cluster(tmp_path_factory.mktemp("kube"))
    yield cluster
    cluster.close()


@pytest.fixture
def probe(
    target_kind: str, workspace: Path, request: pytest.FixtureRequest
) -> Iterator[TargetProbe]:
    """The target of this run, with the workspace's podlink.yaml pointing at it."""
    found: TargetProbe
    container = None
    pod = None
    cluster: KubeCluster | None = None
    if target_kind == "docker":
        container = start_test_container(docker_client())
        found = DockerProbe(container)
    elif target_kind == "kubernetes":
        cluster = request.getfixturevalue("kube_cluster")
        pod = f"e2e-{uuid.uuid4().hex[:10]}"
        cluster.start_pod(pod, {"app": pod})
        found = KubernetesProbe(cluster.shell(pod), cluster.context)
    else:
        found = LocalProbe(workspace)
    config = workspace / "podlink.yaml"
    text = config.read_text()
    start = text.index("target:")
    end = text.index("sync:")
    config.write_text(text[:start] + found.config_section() + text[end:])
    yield found
    if container is not None:
        container.remove(force=True)
    if cluster is not None and pod is not None:
        cluster.delete_pod(pod)


@pytest.fixture
def target_environment(request: pytest.FixtureRequest) -> dict[str, str]:
    """What the daemon needs in its environment to reach the test's target (a kubeconfig)."""
    if "probe" not in request.fixturenames:
        return {}
    # The target is set up before the daemon starts, so the daemon sees its environment.
    probe: TargetProbe = request.getfixturevalue("probe")
    if probe.kind != "kubernetes":
        return {}
    cluster: KubeCluster = request.getfixturevalue("kube_cluster")
    return cluster.environment()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest_asyncio.fixture
async def daemon(state_dir: Path, target_environment: dict[str, str]) -> AsyncIterator[Daemon]:
    client = LanguageClient(protocol_cls=RawPodlinkProtocol, converter_factory=default_converter)
    register_lsp_features(client)
    env = {**os.environ, **target_environment, "PODLINK_STATE_DIR": str(state_dir)}
    await client.start_io(sys.executable, "-m", "podlink", "serve", env=env)
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)
            )
        )
    )
    assert result.capabilities.experimental == {"podlink": {"protocolVersion": 1}}
    yield Daemon(client)
    server = client._server  # type: ignore[attr-defined]
    if server is not None and server.returncode is None:  # a test may have ended it
        await client.shutdown_session()
    await client.stop()
