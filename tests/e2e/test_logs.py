"""podlink/followLogs end to end: the container's or pod's own log, streamed to the editor.

What the main process of the container writes (here: a line written to PID 1's stdout from
inside) arrives as podlink/containerLog, the part written before the request too (tail),
until podlink/stopLogs ends the stream with a last message that says so. Only a kubelet
keeps pod logs: the kubernetes case runs on the real cluster.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Daemon
from tests.e2e.test_sessions import start
from tests.kube_cluster import needs_a_real_cluster
from tests.targets import DockerProbe, KubernetesProbe, TargetProbe

pytestmark = pytest.mark.asyncio


def write_to_the_container_log(probe: TargetProbe, text: str) -> None:
    """A line on the main process's stdout, which is what the container log keeps."""
    command = ["sh", "-c", f"echo {text} > /proc/1/fd/1"]
    if isinstance(probe, DockerProbe):
        code, output = probe.container.exec_run(command)
        assert code == 0, output
    else:
        assert isinstance(probe, KubernetesProbe)
        probe.shell.check(*command)


def log_text(daemon: Daemon, stream_id: str) -> str:
    return "".join(
        p["text"] for p in daemon.received("podlink/containerLog") if p["streamId"] == stream_id
    )


@pytest.mark.parametrize(
    "target_kind", ["docker", pytest.param("kubernetes", marks=needs_a_real_cluster)]
)
async def test_the_log_streams_until_stopped(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session = await start(daemon, workspace)
    earlier, later = f"earlier-{uuid.uuid4().hex[:8]}", f"later-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(write_to_the_container_log, probe, earlier)

    started = await daemon.request("podlink/followLogs", {"sessionId": session["id"], "tail": 20})
    stream_id = started["streamId"]
    await daemon.wait_for(
        "podlink/containerLog",
        lambda p: p["streamId"] == stream_id and earlier in log_text(daemon, stream_id),
    )
    await asyncio.to_thread(write_to_the_container_log, probe, later)
    await daemon.wait_for(
        "podlink/containerLog",
        lambda p: p["streamId"] == stream_id and later in log_text(daemon, stream_id),
    )
    assert not any(p.get("ended") for p in daemon.received("podlink/containerLog"))

    await daemon.request("podlink/stopLogs", {"streamId": stream_id})
    last = await daemon.wait_for(
        "podlink/containerLog", lambda p: p["streamId"] == stream_id and p.get("ended")
    )
    assert last["sessionId"] == session["id"]
    assert "error" not in last
    # Stopping again is harmless: the stream is gone.
    await daemon.request("podlink/stopLogs", {"streamId": stream_id})


@pytest.mark.parametrize("target_kind", ["local"])
async def test_a_local_target_has_no_container_log_and_says_where_the_output_is(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    session = await start(daemon, workspace)

    with pytest.raises(JsonRpcException) as raised:
        await daemon.request("podlink/followLogs", {"sessionId": session["id"]})

    assert raised.value.data["reason"] == "targetUnavailable"
    assert "a local target has no container log" in raised.value.message
