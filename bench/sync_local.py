"""Local target: initial sync beside `cp -a`; with nothing changed a flush, a full rescan and a
fresh start beside rsync's no-change run; and save-to-target latency.

Run: .venv/bin/python -m bench.sync_local [--files N] [--megabytes M] [--edits N]
Prints one JSON object per line. Compare ratios, not absolute times: machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.tree import make_tree
from podlink import protocol
from podlink.config import load_config
from podlink.session import Session

REPEATS = 3


class QuietListener:
    def session_changed(self, session: protocol.Session) -> None:
        pass

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None:
        pass

    def show_error(self, message: str) -> None:
        raise AssertionError(message)

    def publish_diagnostics(self, source: str, path: Path, diagnostics: list[Any]) -> None:
        pass


def write_config(workspace: Path, target_root: Path) -> None:
    (workspace / "podlink.yaml").write_text(
        "version: 1\n"
        f"target: {{local: {{root: {json.dumps(str(target_root))}}}}}\n"
        "sync: [{local: ., remote: /app}]\n"
    )


def time_cp(source: Path, scratch: Path) -> float:
    destination = scratch / "cp-copy"
    shutil.rmtree(destination, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run(["cp", "-a", str(source), str(destination)], check=True)
    return time.perf_counter() - started


async def time_initial_sync(workspace: Path, target_root: Path) -> dict[str, float]:
    """Seconds for a fresh initial sync; then, with nothing changed, for a flush and a full
    rescan of that session and for a fresh session's start."""
    shutil.rmtree(target_root, ignore_errors=True)
    times: dict[str, float] = {}

    async def timed(name: str, step: Callable[[], Awaitable[object]]) -> None:
        await asyncio.to_thread(os.sync)  # settle disk write-back before timing
        started = time.perf_counter()
        await step()
        times[name] = time.perf_counter() - started

    session = Session(load_config(workspace), QuietListener())
    await timed("initial", session.start)
    await timed("flush", session.flush)
    await timed("full_rescan", session.engines[0].rescan)
    await session.stop()
    session = Session(load_config(workspace), QuietListener())
    await timed("fresh_start", session.start)
    await session.stop()
    return times


def time_rsync_no_change(source: Path, target_root: Path) -> float:
    """rsync of the workspace onto the copy podlink made, which is already identical."""
    os.sync()
    started = time.perf_counter()
    subprocess.run(
        ["rsync", "-a", "--exclude", ".podlink", f"{source}/", f"{target_root}/app/"],
        check=True,
    )
    return time.perf_counter() - started


def wait_for_content(path: Path, expected: bytes, deadline: float) -> float:
    while time.perf_counter() < deadline:
        try:
            if path.read_bytes() == expected:
                return time.perf_counter()
        except FileNotFoundError:
            pass
    raise TimeoutError(f"{path} never showed the edit")


async def measure_latency(workspace: Path, target_root: Path, edits: int) -> list[float]:
    session = Session(load_config(workspace), QuietListener())
    await session.start()
    # Let the initial sync's dirty pages reach the disk: measure the steady state of editing.
    await asyncio.to_thread(os.sync)
    latencies: list[float] = []
    try:
        files = sorted((workspace / "pkg00").rglob("*.py"))[:50]
        for index in range(edits):
            source = files[index % len(files)]
            relative = source.relative_to(workspace)
            content = source.read_bytes() + f"# edit {index}\n".encode()
            mirrored = target_root / "app" / relative
            seen: list[float] = []
            poller = threading.Thread(
                target=lambda m=mirrored, c=content, out=seen: out.append(
                    wait_for_content(m, c, time.perf_counter() + 10)
                )
            )
            poller.start()
            saved_at = time.perf_counter()
            source.write_bytes(content)
            await asyncio.to_thread(poller.join)
            latencies.append((seen[0] - saved_at) * 1000)
            await asyncio.sleep(0.02)  # pacing between edits, like a person saving
    finally:
        await session.stop()
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--edits", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="podlink-bench-") as scratch_name:
        scratch = Path(scratch_name)
        workspace = scratch / "workspace"
        files, total = make_tree(workspace, files=args.files, total_bytes=args.megabytes << 20)
        target_root = scratch / "target"
        write_config(workspace, target_root)

        cp_times = [time_cp(workspace, scratch) for _ in range(REPEATS)]
        runs = []
        rsync_times = []
        for _ in range(REPEATS):
            runs.append(asyncio.run(time_initial_sync(workspace, target_root)))
            rsync_times.append(time_rsync_no_change(workspace, target_root))
        medians = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
        cp_median = statistics.median(cp_times)
        rsync_median = statistics.median(rsync_times)
        print(
            json.dumps(
                {
                    "bench": "initial_sync_local",
                    "files": files,
                    "bytes": total,
                    "podlink_s": round(medians["initial"], 3),
                    "cp_a_s": round(cp_median, 3),
                    "ratio_podlink_to_cp": round(medians["initial"] / cp_median, 2),
                    "runs": REPEATS,
                }
            )
        )
        # Each no-change measure beside rsync's no-change run of the same tree: the flush
        # skips the scan when the watcher vouches for every change, the full rescan and the
        # fresh start scan both sides as rsync does.
        print(
            json.dumps(
                {
                    "bench": "no_change_local",
                    "files": files,
                    "podlink_flush_s": round(medians["flush"], 3),
                    "podlink_full_rescan_s": round(medians["full_rescan"], 3),
                    "podlink_fresh_start_s": round(medians["fresh_start"], 3),
                    "rsync_s": round(rsync_median, 3),
                    "full_rescan_vs_rsync": round(medians["full_rescan"] / rsync_median, 2),
                    "fresh_start_vs_rsync": round(medians["fresh_start"] / rsync_median, 2),
                    "flush_vs_rsync": round(medians["flush"] / rsync_median, 2),
                }
            )
        )
        latencies = asyncio.run(measure_latency(workspace, target_root, args.edits))
        print(
            json.dumps(
                {
                    "bench": "save_to_target_local",
                    "edits": len(latencies),
                    "p50_ms": round(percentile(latencies, 0.5), 1),
                    "p99_ms": round(percentile(latencies, 0.99), 1),
                    "max_ms": round(max(latencies), 1),
                }
            )
        )


if __name__ == "__main__":
    main()
