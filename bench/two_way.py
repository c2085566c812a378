"""Two-way sync on a Docker target: a big tree at rest, and changes made in the target.

Run (after ``scripts/docker-env``):

    .venv/bin/python -m bench.two_way [--files N] [--edits N] [--idle-seconds S]

Defaults: 100,000 files (about 1 KB each, 100 per folder), 100 edits, 60 s idle. One JSON
object per line, each podlink figure beside its peer and the ratio:

1. ``idle_100k``: a daemon (``podlink up`` in its own process, two-way mode, so the local
   watcher and the agent's watcher both cover every folder) after its initial sync, left
   alone for ``--idle-seconds``: its CPU time over that span from ``/proc/PID/stat`` (user +
   system, children included) as a share of one core, and its resident memory (VmRSS, at
   the end). Targets: CPU < 1%, RSS <= 200 MB.
2. ``rescan_no_change_100k``: nothing changed. podlink, medians of ``--repeats``, run
   interleaved with the peer after one untimed warm-up of each: a flush of
   the running session (the barrier every test run and build passes: a marker file proves
   the watcher has seen every earlier change, which it has applied); a full rescan of the
   running session (the local tree scanned and reconciled with what the target holds, which
   in two-way mode the agent's watch keeps current: what a flush does when the watcher
   cannot vouch for its events); and a fresh session's start against the same container
   and state (both sides scanned, reconciled against the stored agreed state). Peer:
   ``rsync -a --blocking-io -e 'docker exec -i' tree/ C:/app/`` again. Targets: fresh start
   and full rescan each <= 1.0x rsync; the flush is printed beside them but has no goal of
   its own against rsync (it does not scan when it need not).
3. ``remote_to_local``: a Python process in the container rewrites one of 50 files per edit
   (a line appended) and reports ``time.monotonic()`` right after closing it; the host polls
   the workspace copy every 0.2 ms until it holds exactly the new bytes. Containers share
   the host's ``CLOCK_MONOTONIC`` (checked at start, as in ``bench.sync_docker``), so the
   latency needs no stream delay. Target: p50 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.sync_docker import (
    IMAGE,
    REMOTE_ROOT,
    SYNC_MODE,
    Containers,
    emit,
    ratio,
    rsync_copy,
    settle,
)
from bench.sync_local import QuietListener, percentile
from podlink.config import load_config
from podlink.session import Session

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EDIT_FILES = 50
EDIT_TIMEOUT_SECONDS = 10.0

# Runs in the container: for each line "PATH\tTEXT" appends TEXT to PATH and prints the
# monotonic time after closing it. Its first line is its clock at start.
EDITOR_SOURCE = r"""
import sys, time
print(repr(time.monotonic()), flush=True)
for line in sys.stdin:
    path, text = line.rstrip("\n").split("\t", 1)
    with open(path, "a") as handle:
        handle.write(text + "\n")
    print(repr(time.monotonic()), flush=True)
"""


def make_small_tree(root: Path, files: int) -> None:
    for index in range(files):
        folder = root / f"pkg{index // 100:04d}"
        if index % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{index % 100:02d}.py").write_bytes(f"# module {index}\n".encode() * 60)


def write_config(tree: Path, scratch: Path, container: str) -> Path:
    path = scratch / "podlink.yaml"
    path.write_text(
        "version: 1\n"
        f"target: {{docker: {{container: {json.dumps(container)}}}}}\n"
        f"sync: [{{local: {tree.name}, remote: {REMOTE_ROOT}, mode: two-way}}]\n"
    )
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime are fields 14-17 of stat(5); here offset by the name.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def rss_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def idle_daemon(tree: Path, config: Path, idle_seconds: float, env: dict[str, str]) -> None:
    podlink = Path(sys.executable).with_name("podlink")
    daemon = subprocess.Popen(
        [str(podlink), "up", str(config.parent), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        for line in daemon.stdout:
            if line.startswith("ready"):
                break
        else:
            raise RuntimeError("podlink up ended before it was ready")
        time.sleep(2.0)  # let the initial sync's write-back and the watchers settle
        cpu_before, started = cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(idle_seconds)
        cpu_share = (cpu_seconds(daemon.pid) - cpu_before) / (time.monotonic() - started)
        rss = rss_megabytes(daemon.pid)
        emit(
            {
                "measure": "idle_100k",
                "files": sum(1 for _ in tree.rglob("*.py")),
                "seconds": idle_seconds,
                "podlink_cpu_percent": round(100 * cpu_share, 2),
                "podlink_rss_mb": round(rss, 1),
                "target_cpu_percent": 1.0,
                "target_rss_mb": 200,
                "met": cpu_share < 0.01 and rss <= 200,
            }
        )
    finally:
        daemon.send_signal(signal.SIGINT)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()


async def rescans(tree: Path, config: Path, container: str, repeats: int) -> None:
    """Figure 2: each podlink measure beside rsync's no-change run, interleaved, after one
    untimed warm-up of each, and each judged against its own goal."""
    await asyncio.to_thread(rsync_copy, tree, container)
    warm_up = Session(load_config(config.parent, config), QuietListener())
    await warm_up.start()
    await warm_up.stop()
    runs: dict[str, list[float]] = {"rsync": [], "fresh_start": [], "flush": [], "full_rescan": []}

    async def timed(name: str, step: Callable[[], Awaitable[object]]) -> None:
        await asyncio.to_thread(settle)
        started = time.perf_counter()
        await step()
        runs[name].append(round(time.perf_counter() - started, 3))

    for _ in range(repeats):
        await timed("rsync", lambda: asyncio.to_thread(rsync_copy, tree, container))
        session = Session(load_config(config.parent, config), QuietListener())
        try:
            await timed("fresh_start", session.start)
            await timed("flush", functools.partial(session.flush, 120))
            await timed("full_rescan", session.engines[0].rescan)
        finally:
            await session.stop()
    session = Session(load_config(config.parent, config), QuietListener())
    await session.start()
    try:
        await remote_edits(tree, container, session)
    finally:
        await session.stop()
    medians = {name: statistics.median(values) for name, values in runs.items()}
    rsync = medians["rsync"]
    emit(
        {
            "measure": "rescan_no_change_100k",
            "podlink_fresh_start_s": round(medians["fresh_start"], 3),
            "podlink_full_rescan_s": round(medians["full_rescan"], 3),
            "podlink_flush_s": round(medians["flush"], 3),
            "rsync_s": round(rsync, 3),
            "fresh_start_vs_rsync": ratio(medians["fresh_start"], rsync),
            "full_rescan_vs_rsync": ratio(medians["full_rescan"], rsync),
            "flush_vs_rsync": ratio(medians["flush"], rsync),
            "targets": {
                "fresh_start": "<= 1.0x rsync",
                "full_rescan": "<= 1.0x rsync",
                "flush": "none: it skips the scan when the watcher vouches for every change, "
                "so it is not like rsync's full scan of both trees",
            },
            "met_fresh_start": medians["fresh_start"] <= rsync,
            "met_full_rescan": medians["full_rescan"] <= rsync,
            "runs": runs,
        }
    )


EDITS = {"count": 100}


async def remote_edits(tree: Path, container: str, session: Session) -> None:
    files = sorted(tree.rglob("*.py"))[:EDIT_FILES]
    editor = await asyncio.create_subprocess_exec(
        "docker", "exec", "-i", container, "python3", "-u", "-c", EDITOR_SOURCE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert editor.stdin is not None and editor.stdout is not None
    before = time.monotonic()
    their_start = float(await editor.stdout.readline())
    shared_clock = before <= their_start <= time.monotonic()
    latencies = []
    try:
        for index in range(EDITS["count"]):
            local = files[index % len(files)]
            text = f"# edited in the target {index}"
            expected = local.read_bytes() + text.encode() + b"\n"
            remote = f"{REMOTE_ROOT}/{local.relative_to(tree).as_posix()}"
            sent = time.monotonic()
            editor.stdin.write(f"{remote}\t{text}\n".encode())
            await editor.stdin.drain()
            closed = float(await editor.stdout.readline())
            seen = await asyncio.to_thread(wait_for_bytes, local, expected)
            latencies.append((seen - (closed if shared_clock else sent)) * 1000)
            await asyncio.sleep(0.02)
    finally:
        editor.stdin.close()
        await editor.wait()
    p50 = percentile(latencies, 0.5)
    emit(
        {
            "measure": "remote_to_local",
            "edits": len(latencies),
            "p50_ms": round(p50, 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "clock": "shared" if shared_clock else "send time",
            "target_p50_ms": 100,
            "met": p50 <= 100,
            "sync_state": session.sync_status().state,
        }
    )


def wait_for_bytes(path: Path, expected: bytes) -> float:
    deadline = time.monotonic() + EDIT_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if path.read_bytes() == expected:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.0002)
    raise TimeoutError(f"{path} never received the target's edit")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    EDITS["count"] = args.edits
    SYNC_MODE["mode"] = "two-way"
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode:
        sys.exit(f"no {IMAGE} on this Docker Engine: run scripts/docker-env first")
    containers = Containers()
    with tempfile.TemporaryDirectory(prefix="podlink-bench-") as scratch_name:
        scratch = Path(scratch_name)
        env: dict[str, Any] = {**os.environ, "PODLINK_STATE_DIR": str(scratch / "state")}
        os.environ["PODLINK_STATE_DIR"] = env["PODLINK_STATE_DIR"]
        tree = scratch / "tree"
        make_small_tree(tree, args.files)
        container = containers.create()
        config = write_config(tree, scratch, container)
        try:
            idle_daemon(tree, config, args.idle_seconds, env)
            asyncio.run(rescans(tree, config, container, args.repeats))
        finally:
            containers.remove_all()


if __name__ == "__main__":
    main()
