"""Docker target: debugging start-up, and forwarded ports beside ``docker exec`` streaming.

Run (after ``scripts/docker-env``, which starts the engine and builds the test image):

    .venv/bin/python -m bench.ports_debug [--repeats N] [--megabytes M] [--round-trips K]

Defaults: 10 debug starts, 256 MB each way, 2,000 round trips. One throwaway container from
podlink-test-python:bookworm (label ``podlink.bench=1``) runs the example app and a small
traffic server; it is removed at the end, also after a failure or Ctrl-C. One JSON object
per line is printed; compare ratios, not absolute times.

How each figure is measured:

1. ``start_debug_to_breakpoint_docker``: with a session running the example app,
   ``Session.start_debug()`` (what ``podlink/startDebug`` calls), then a DAP client on the
   port it returned: initialize, attach, setBreakpoints in ``greet`` (verified), configuration
   done, a request through the app's forwarded port as soon as the app listens, and the clock
   stops at the ``stopped`` event with reason ``breakpoint``. Continue and disconnect, then
   the next run (each run restarts the app under debugpy again). The first run also copies
   debugpy into the container and is reported alone as ``cold_s``; the median is over all
   runs. Goal: median <= 2 s.
2. ``forward_throughput_docker``: a server in the container sends (``download``) or takes
   (``upload``) M megabytes on one connection. podlink: through a forward
   (``Session.add_port``). Peer: the same server through ``docker exec -i C python3 -c
   RELAY PORT`` (the same relay podlink runs in the container, driven by the docker CLI over
   pipes), which is how exec-based port forwarding works. Median of 3. Goal: podlink >= 50%
   of the peer.
3. ``forward_latency_docker``: 64-byte request/echo round trips on one established
   connection, both ways as above. Goal: podlink's p50 at most 2 ms above the peer's.
4. ``forward_connect_docker`` (for information): a new connection and one round trip, 20
   times; each podlink connection opens its own exec in the container, each peer
   connection starts a ``docker exec`` process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.dap import DapClient

from bench.sync_local import percentile
from podlink import protocol
from podlink.config import load_config
from podlink.session import Session
from podlink.targets.docker.target import RELAY_SOURCE

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "hello"
IMAGE = "podlink-test-python:bookworm"
APP_PORT = 8000
TRAFFIC_PORT = 9100
BREAKPOINT_LINE = 6
CHUNK = 256 * 1024
MEGABYTE = 1 << 20

# send N: N bytes, then end of stream. recv N: take N bytes, answer "N\n". echo S: echo
# S-byte messages until end of input.
TRAFFIC_SERVER = r"""
import socket, sys, threading
def serve(conn):
    stream = conn.makefile("rb")
    command, size = stream.readline().split()
    size = int(size)
    if command == b"send":
        chunk, left = b"x" * 262144, size
        while left:
            conn.sendall(chunk[:left])
            left -= min(left, len(chunk))
    elif command == b"recv":
        got = 0
        while got < size:
            data = stream.read1(262144)
            if not data:
                break
            got += len(data)
        conn.sendall(b"%d\n" % got)
    elif command == b"echo":
        while True:
            data = stream.read(size)
            if not data:
                break
            conn.sendall(data)
    conn.close()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(128)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Opener = Callable[[], Awaitable[Streams]]


class LogListener:
    """Keeps the session's log lines so the bench can wait for one."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.arrived = asyncio.Event()

    def session_changed(self, session: protocol.Session) -> None:
        pass

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None:
        self.lines.append((source, text))
        self.arrived.set()

    def show_error(self, message: str) -> None:
        raise AssertionError(message)

    def publish_diagnostics(self, source: str, path: Path, diagnostics: list[Any]) -> None:
        pass

    async def wait_for(self, source: str, text: str, since: int, seconds: float = 30) -> None:
        async with asyncio.timeout(seconds):
            while not any(s == source and text in t for s, t in self.lines[since:]):
                self.arrived.clear()
                await self.arrived.wait()


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


# -- debugging --------------------------------------------------------------------------


async def get_greeting(port: int) -> bytes:
    """GET the greeting through the app's forward, retrying while the app starts up."""
    query = urllib.parse.quote("Ada")
    request = f"GET /?name={query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            reply = await reader.read()
            writer.close()
        except ConnectionError:
            reply = b""
        if reply:
            return reply
        await asyncio.sleep(0.01)


async def debug_once(session: Session, listener: LogListener, source: Path, app_port: int) -> float:
    since = len(listener.lines)
    started = time.perf_counter()
    configuration = await session.start_debug()
    client = await DapClient.connect("127.0.0.1", configuration["connect"]["port"])
    try:
        await client.request("initialize", {"clientID": "bench", "adapterID": "debugpy"})
        attached = client.send_request("attach", configuration)
        await client.wait_event("initialized")
        placed = await client.request(
            "setBreakpoints",
            {"source": {"path": str(source)}, "breakpoints": [{"line": BREAKPOINT_LINE}]},
        )
        assert placed["breakpoints"][0]["verified"], placed
        await client.request("configurationDone")
        await attached
        await listener.wait_for("app", "listening on", since)
        reply = asyncio.ensure_future(get_greeting(app_port))
        stopped = await client.wait_event("stopped", seconds=30)
        elapsed = time.perf_counter() - started
        assert stopped["reason"] == "breakpoint", stopped
        await client.request("continue", {"threadId": stopped["threadId"]})
        assert b"Hello, Ada!" in await asyncio.wait_for(reply, 30)
        await client.request("disconnect", {})
        return elapsed
    finally:
        await client.close()


# -- traffic ------------------------------------------------------------------------------


async def download(open_streams: Opener, megabytes: int) -> float:
    reader, writer = await open_streams()
    size = megabytes * MEGABYTE
    started = time.perf_counter()
    writer.write(b"send %d\n" % size)
    await writer.drain()
    got = 0
    while got < size and (data := await reader.read(CHUNK)):
        got += len(data)
    elapsed = time.perf_counter() - started
    writer.close()
    assert got == size, (got, size)
    return size / MEGABYTE / elapsed


async def upload(open_streams: Opener, megabytes: int) -> float:
    reader, writer = await open_streams()
    size = megabytes * MEGABYTE
    chunk = b"y" * CHUNK
    started = time.perf_counter()
    writer.write(b"recv %d\n" % size)
    for _ in range(size // CHUNK):
        writer.write(chunk)
        await writer.drain()
    answer = await reader.readline()
    elapsed = time.perf_counter() - started
    writer.close()
    assert int(answer) == size, answer
    return size / MEGABYTE / elapsed


async def round_trips(open_streams: Opener, count: int) -> list[float]:
    reader, writer = await open_streams()
    message = b"z" * 64
    writer.write(b"echo 64\n")
    times = []
    for _ in range(count + 20):
        started = time.perf_counter()
        writer.write(message)
        await writer.drain()
        assert await reader.readexactly(len(message)) == message
        times.append(time.perf_counter() - started)
    writer.close()
    return times[20:]  # the first ones warm up both paths


async def connect_and_echo(open_streams: Opener) -> float:
    started = time.perf_counter()
    reader, writer = await open_streams()
    writer.write(b"echo 64\n" + b"z" * 64)
    await writer.drain()
    await reader.readexactly(64)
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed


class ExecRelay:
    """The peer: ``docker exec -i C python3 -c RELAY PORT``, one process per connection."""

    def __init__(self, container: str) -> None:
        self._container = container
        self._processes: list[asyncio.subprocess.Process] = []

    async def open(self) -> Streams:
        process = await asyncio.create_subprocess_exec(
            "docker",
            "exec",
            "-i",
            self._container,
            "python3",
            "-c",
            RELAY_SOURCE,
            str(TRAFFIC_PORT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=CHUNK * 4,
        )
        self._processes.append(process)
        assert process.stdout is not None and process.stdin is not None
        assert await process.stdout.readexactly(1) == b"\x01"
        return process.stdout, process.stdin

    async def close(self) -> None:
        for process in self._processes:
            if process.returncode is None:
                process.kill()
            await process.wait()


# -- the run --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_container() -> AsyncIterator[Any]:
    import docker

    client = docker.from_env(timeout=60)
    container = await asyncio.to_thread(
        client.containers.run,
        IMAGE,
        ["sleep", "infinity"],
        name=f"podlink-bench-{uuid.uuid4().hex[:8]}",
        detach=True,
        init=True,
        labels={"podlink.bench": "1"},
    )
    try:
        container.exec_run(["python3", "-c", TRAFFIC_SERVER, str(TRAFFIC_PORT)], detach=True)
        yield container
    finally:
        await asyncio.to_thread(container.remove, force=True)


def make_workspace(scratch: Path, container: str) -> Path:
    workspace = scratch / "workspace"
    shutil.copytree(EXAMPLE, workspace, ignore=shutil.ignore_patterns(".podlink", "__pycache__"))
    (workspace / "podlink.yaml").write_text(
        "version: 1\n"
        f"target: {{docker: {{container: {container}}}}}\n"
        "sync: [{local: ., remote: /app}]\n"
        f'run: {{command: [python3, -m, app], env: {{PORT: "{APP_PORT}"}}}}\n'
        f'ports: ["{APP_PORT}"]\n'
    )
    return workspace


async def run(args: argparse.Namespace) -> None:
    async with bench_container() as container:
        with tempfile.TemporaryDirectory() as scratch:
            workspace = make_workspace(Path(scratch), container.name)
            listener = LogListener()
            session = Session(load_config(workspace), listener)
            await session.start()
            try:
                await bench_debugging(args, session, listener, workspace)
                await bench_traffic(args, session, container.name)
            finally:
                await session.stop()


async def bench_debugging(
    args: argparse.Namespace, session: Session, listener: LogListener, workspace: Path
) -> None:
    app_port = session.to_protocol().ports[0].local_port
    source = workspace / "app" / "greeting.py"
    runs = [await debug_once(session, listener, source, app_port) for _ in range(args.repeats)]
    median = statistics.median(runs)
    emit(
        {
            "figure": "start_debug_to_breakpoint_docker",
            "median_s": round(median, 3),
            "cold_s": round(runs[0], 3),
            "runs": [round(value, 3) for value in runs],
            "goal_s": 2.0,
            "met": median <= 2.0,
        }
    )


async def bench_traffic(args: argparse.Namespace, session: Session, container: str) -> None:
    forward = await session.add_port(TRAFFIC_PORT)

    async def through_podlink() -> Streams:
        return await asyncio.open_connection("127.0.0.1", forward.local_port, limit=CHUNK * 4)

    peer = ExecRelay(container)
    paths: dict[str, Opener] = {"podlink": through_podlink, "peer": peer.open}
    try:
        for direction, measure in (("download", download), ("upload", upload)):
            speeds: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(3):
                for name, opener in paths.items():
                    speeds[name].append(await measure(opener, args.megabytes))
            podlink_speed = statistics.median(speeds["podlink"])
            peer_speed = statistics.median(speeds["peer"])
            emit(
                {
                    "figure": "forward_throughput_docker",
                    "direction": direction,
                    "megabytes": args.megabytes,
                    "podlink_mb_s": round(podlink_speed, 1),
                    "peer_mb_s": round(peer_speed, 1),
                    "ratio": round(podlink_speed / peer_speed, 2),
                    "goal_ratio": 0.5,
                    "met": podlink_speed >= 0.5 * peer_speed,
                    "runs": {
                        name: [round(v, 1) for v in values] for name, values in speeds.items()
                    },
                }
            )

        latencies = {
            name: await round_trips(opener, args.round_trips) for name, opener in paths.items()
        }
        podlink_p50 = percentile(latencies["podlink"], 0.5) * 1000
        peer_p50 = percentile(latencies["peer"], 0.5) * 1000
        emit(
            {
                "figure": "forward_latency_docker",
                "round_trips": args.round_trips,
                "podlink_p50_ms": round(podlink_p50, 3),
                "peer_p50_ms": round(peer_p50, 3),
                "added_p50_ms": round(podlink_p50 - peer_p50, 3),
                "podlink_p99_ms": round(percentile(latencies["podlink"], 0.99) * 1000, 3),
                "peer_p99_ms": round(percentile(latencies["peer"], 0.99) * 1000, 3),
                "goal_added_p50_ms": 2.0,
                "met": podlink_p50 - peer_p50 <= 2.0,
            }
        )

        connects = {
            name: [await connect_and_echo(opener) for _ in range(20)]
            for name, opener in paths.items()
        }
        emit(
            {
                "figure": "forward_connect_docker",
                "podlink_p50_ms": round(percentile(connects["podlink"], 0.5) * 1000, 1),
                "peer_p50_ms": round(percentile(connects["peer"], 0.5) * 1000, 1),
            }
        )
    finally:
        await peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--round-trips", type=int, default=2000)
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
