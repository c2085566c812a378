"""Docker target: a small save made while bulk work streams, from save to the container.

Run (after ``scripts/docker-env``):

    .venv/bin/python -m bench.save_under_load [--files N] [--megabytes M] [--repeats K]
        [--switch-files N]

Two cases, each repeated (default 5 times), one JSON object per line:

1. ``save_during_initial_sync``: a session starts on the 10,000-file tree into a fresh
   container; once its progress says a tenth of the bytes are sent, a new 200-byte file is
   saved in the workspace. The in-container poller (``bench.sync_docker.Poller``, on the
   clock the container shares with the host) reports when that file holds its bytes; the
   figure is that time minus the save. ``bulk_left_s`` is how long the initial sync still
   ran after the save: a save that waits for the bulk shows up as a latency close to it.
2. ``save_during_branch_switch``: with the session running, a separate process rewrites
   2,000 files (as a checkout would); right after its last write a new small file is saved,
   timed the same way, beside the time until the last of the 2,000 is in the container.

Goal (the issue's): p50 <= 50 ms in both cases — small, fresh changes do not wait behind
bulk. There is no peer: tar and rsync copy what they are given, once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.sync_docker import (
    REMOTE_ROOT,
    WRITER_SOURCE,
    Containers,
    Poller,
    emit,
    new_session,
    stage_switch,
    switch_files,
    write_config,
)
from bench.sync_local import percentile
from bench.tree import make_tree

SAVE_TIMEOUT_SECONDS = 120.0


def fresh_file(tree: Path, label: str) -> tuple[Path, str, bytes]:
    path = tree / f"fresh_{label}.py"
    content = f"# saved under load: {label}\n".encode().ljust(200, b"#")
    return path, f"{REMOTE_ROOT}/{path.name}", content


async def save_during_initial_sync(
    scratch: Path, tree: Path, containers: Containers, repeat: int, total_bytes: int
) -> tuple[float, float]:
    """(save -> in container, initial sync left after the save), in seconds."""
    container = containers.create()
    path, remote, content = fresh_file(tree, f"initial_{repeat}")
    poller = await Poller.start(container)
    session = new_session(tree, write_config(scratch, container))
    saved: list[float] = []

    def on_progress(done: int, total: int) -> None:
        if not saved and done >= total / 10:
            saved.append(time.monotonic())
            path.write_bytes(content)

    try:
        await poller.arm([(remote, content)], SAVE_TIMEOUT_SECONDS)
        await asyncio.to_thread(os.sync)
        await session.start(on_progress)
        ended = time.monotonic()
        seen = await poller.seen()
        if not saved:
            raise RuntimeError("the initial sync reported no progress")
        if seen is None:
            raise RuntimeError(f"{remote} never reached the container")
        return seen - saved[0], max(0.0, ended - saved[0])
    finally:
        await poller.close()
        await session.stop()
        path.unlink(missing_ok=True)


async def saves_during_switches(
    scratch: Path, tree: Path, containers: Containers, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    """Per repeat: (save -> in container, 2,000 files -> in container), in seconds."""
    container = containers.create()
    session = new_session(tree, write_config(scratch, container))
    await session.start()
    bulk_poller = await Poller.start(container)
    save_poller = await Poller.start(container)
    staging = scratch / "switch-staging"
    files = switch_files(tree, min(args.switch_files, args.files))
    saves: list[float] = []
    switches: list[float] = []
    try:
        for repeat in range(args.repeats):
            staged = await asyncio.to_thread(stage_switch, staging, files, 500 + repeat)
            jobs = [
                (f"{REMOTE_ROOT}/{destination.relative_to(tree).as_posix()}", data)
                for _, destination, data in staged
            ]
            path, remote, content = fresh_file(tree, f"switch_{repeat}")
            await bulk_poller.arm(jobs, SAVE_TIMEOUT_SECONDS)
            await save_poller.arm([(remote, content)], SAVE_TIMEOUT_SECONDS)
            writer = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WRITER_SOURCE,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            manifest = "".join(f"{source}\t{destination}\n" for source, destination, _ in staged)
            output, _ = await writer.communicate(manifest.encode())
            first_write = float(output.split()[0])
            saved_at = time.monotonic()
            path.write_bytes(content)
            save_seen, bulk_seen = await save_poller.seen(), await bulk_poller.seen()
            if save_seen is None or bulk_seen is None:
                raise RuntimeError("a change never reached the container")
            saves.append(save_seen - saved_at)
            switches.append(bulk_seen - first_write)
            path.unlink()
            await session.flush(60)
    finally:
        await bulk_poller.close()
        await save_poller.close()
        await session.stop()
    return saves, switches


def milliseconds(values: list[float]) -> dict[str, float]:
    in_ms = [value * 1000 for value in values]
    return {
        "p50_ms": round(percentile(in_ms, 0.5), 1),
        "max_ms": round(max(in_ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--megabytes", type=float, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--switch-files", type=int, default=2_000)
    args = parser.parse_args()
    total_bytes = int(args.megabytes * 1_000_000)
    containers = Containers()
    with tempfile.TemporaryDirectory(prefix="podlink-bench-") as scratch_name:
        scratch = Path(scratch_name)
        tree = scratch / "tree"
        make_tree(tree, args.files, total_bytes=total_bytes)
        try:
            during_initial = [
                asyncio.run(save_during_initial_sync(scratch, tree, containers, n, total_bytes))
                for n in range(args.repeats)
            ]
            latencies = [latency for latency, _ in during_initial]
            emit(
                {
                    "bench": "save_during_initial_sync",
                    "files": args.files,
                    "repeats": args.repeats,
                    **milliseconds(latencies),
                    "bulk_left_s": round(statistics.median(left for _, left in during_initial), 3),
                    "target": "p50 <= 50 ms",
                    "met": percentile(latencies, 0.5) <= 0.05,
                    "runs_ms": [round(value * 1000, 1) for value in latencies],
                }
            )
            saves, switches = asyncio.run(saves_during_switches(scratch, tree, containers, args))
            emit(
                {
                    "bench": "save_during_branch_switch",
                    "switch_files": min(args.switch_files, args.files),
                    "repeats": args.repeats,
                    **milliseconds(saves),
                    "switch_in_container_s": round(statistics.median(switches), 3),
                    "target": "p50 <= 50 ms",
                    "met": percentile(saves, 0.5) <= 0.05,
                    "runs_ms": [round(value * 1000, 1) for value in saves],
                }
            )
        finally:
            containers.remove_all()


if __name__ == "__main__":
    main()
