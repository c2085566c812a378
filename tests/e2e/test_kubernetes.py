"""End to end on Kubernetes only: the pod goes away under a running session.

The Docker counterpart restarts the container (test_ports.py); a pod is not restarted but
replaced, by a new pod with another name and the same labels, so the session follows the
pod's selector.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.conftest import Daemon
from tests.e2e.test_ports import app_listening, greeting, start_forwarded
from tests.kube_cluster import KubeCluster
from tests.targets import KubernetesProbe, TargetProbe

pytestmark = pytest.mark.asyncio


def follow_the_selector(workspace: Path, probe: KubernetesProbe) -> None:
    """Pick the pod by its labels (the probe's pod has app=<its name>), not by its name."""
    config = workspace / "podlink.yaml"
    config.write_text(
        config.read_text().replace(
            f"pod: {{name: {probe.pod}}}", f"pod: {{selector: app={probe.pod}}}"
        )
    )


@pytest.mark.parametrize("target_kind", ["kubernetes"])
async def test_the_session_and_its_forward_follow_a_replaced_pod(
    daemon: Daemon, workspace: Path, probe: TargetProbe, kube_cluster: KubeCluster
) -> None:
    assert isinstance(probe, KubernetesProbe)
    follow_the_selector(workspace, probe)
    session, _, local_port = await start_forwarded(daemon, workspace)
    assert session["target"]["name"] == probe.pod
    # A forward that has carried traffic, several connections at once: the streams they
    # opened once shared the API client of the pod watch and the pod lookup, and two opened
    # together left its request function swapped for good, so the pod was never followed.
    answers = await asyncio.gather(*(greeting(local_port) for _ in range(8)))
    assert answers == [b'{"message": "Hello, Ada!"}'] * 8

    mark = daemon.mark()
    replacement = await asyncio.to_thread(kube_cluster.replace_pod, probe.pod)
    try:
        degraded = await daemon.wait_for(
            "podlink/sessionChanged",
            lambda s: s["state"] == "degraded" and s["ports"][0]["state"] == "reconnecting",
            since=mark,
        )
        assert probe.pod in degraded["error"]
        after = next(i for i, (_, p) in enumerate(daemon.notifications) if p is degraded) + 1
        ready = await daemon.wait_for(
            "podlink/sessionChanged",
            lambda s: s["state"] == "ready" and s["ports"][0]["state"] == "active",
            since=after,
            seconds=60,
        )
        assert ready["target"]["name"] == replacement
        assert ready["ports"][0]["localPort"] == local_port
        await daemon.wait_for(
            "podlink/log", lambda p: "reconnected to the target" in p["text"], since=mark
        )
        # The app runs again in the new pod, from files synced there afresh.
        await app_listening(daemon, since=after)
        assert await greeting(local_port) == b'{"message": "Hello, Ada!"}'
    finally:
        await asyncio.to_thread(kube_cluster.delete_pod, replacement)
