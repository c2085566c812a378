"""A far Docker target: podlink beside tar and rsync over exec, across a slow link.

Run as root (after ``scripts/docker-env``; the peers need ``tar`` and ``rsync`` on the host):

    .venv/bin/python -m bench.sync_far [--round-trip-ms 50] [--rate-mbit 100] [--files N]
        [--megabytes M] [--edits N] [--repeats K]

``bench.far_link`` makes a network namespace and a veth pair with a ``tbf`` rate limit and a
delay relay (this kernel has no ``sch_netem``), and every tool reaches the Docker Engine across
it: ``DOCKER_HOST=tcp://ADDRESS:2375`` for podlink's session and for the peers' ``docker exec``.
Bookkeeping (making and removing containers, counting files, the in-container poller) uses the
local socket, so it never crosses the link. Everything is removed at the end, also after a
failure, SIGTERM or Ctrl-C; a whole run is bounded by ``--give-up-after`` seconds.

Figures (medians over the repeats, one JSON object per line, each beside its goal):

1. ``initial_sync_far``: ``Session.start()`` into an empty ``/app`` beside ``tar -c | docker
   exec -i C tar -x`` and ``rsync -e 'docker exec -i'``; goal ≤ 1.2× tar.
2. ``fresh_start_no_change_far``: a new session against a container that already holds the
   tree, beside rsync's no-change run and beside 2 round trips + podlink's own local scan of
   the tree (``scan_tree``, timed here); goal ≤ 2 RTT + local scan.
3. ``save_to_target_far``: with a session running, a line appended to a file; the poller in
   the container reports when the new bytes are there, on the clock the container shares
   with the host; goal p50 ≤ RTT + 10 ms.
4. ``flush_far``: ``Session.flush()`` (what a test run does before it starts) right after a
   save and with nothing changed; goal: adds ≤ 1 RTT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.far_link import FarLink
from bench.sync_docker import (
    REMOTE_ROOT,
    Containers,
    PeerFailed,
    Poller,
    append_line,
    edit_files,
    measure_edits,
    new_session,
    ratio,
    time_start,
    write_config,
)
from bench.sync_local import percentile
from bench.tree import make_tree
from podlink.sync.ignore import IgnoreRules
from podlink.sync.scan import scan_tree

LOCAL_ENGINE = ("docker", "-H", "unix:///var/run/docker.sock")


def emit(record: dict[str, Any], notes: dict[str, str] | None = None) -> None:
    if notes:
        record["notes"] = notes
    print(json.dumps(record), flush=True)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def far_env(link: FarLink) -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": link.docker_host}


def timed_peer(argv: str, link: FarLink) -> float:
    os.sync()
    started = time.perf_counter()
    done = subprocess.run(argv, shell=True, env=far_env(link), capture_output=True, text=True)
    if done.returncode != 0:
        raise PeerFailed(f"{argv.split()[0]} exited {done.returncode}: {done.stderr.strip()}")
    return time.perf_counter() - started


def tar_over_link(tree: Path, container: str, link: FarLink) -> float:
    return timed_peer(
        f"tar -C {tree} -c . | docker exec -i {container} tar -x -C {REMOTE_ROOT}", link
    )


def rsync_over_link(tree: Path, container: str, link: FarLink) -> float:
    return timed_peer(
        f"rsync -a --blocking-io -e 'docker exec -i' {tree}/ {container}:{REMOTE_ROOT}/", link
    )


def local_scan_seconds(tree: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scan_tree(tree, IgnoreRules())
        times.append(time.perf_counter() - started)
    return median(times)


async def saves_and_flushes(
    args: argparse.Namespace, tree: Path, config: Path, container: str
) -> tuple[list[float], list[float], list[float]]:
    """Save latencies (ms), flush after a save (ms), flush with nothing changed (ms)."""
    session = new_session(tree, config)
    await session.start()
    poller = await Poller.start_over([*LOCAL_ENGINE, "exec", "-i", container])
    try:
        latencies = await measure_edits(tree, poller, args.edits)
        after_save: list[float] = []
        idle: list[float] = []
        files = edit_files(tree, 10)
        for index in range(args.edits // 4 or 1):
            append_line(files[index % len(files)], 10_000 + index)
            started = time.perf_counter()
            await session.flush()
            after_save.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            await session.flush()
            idle.append((time.perf_counter() - started) * 1000)
        return latencies, after_save, idle
    finally:
        await poller.close()
        await session.stop()


def run(args: argparse.Namespace, link: FarLink, scratch: Path, containers: Containers) -> None:
    tree = scratch / "tree"
    make_tree(tree, args.files, total_bytes=args.bytes)
    rtt = args.round_trip_ms / 1000
    os.environ["DOCKER_HOST"] = link.docker_host
    link_info = {"round_trip_ms": args.round_trip_ms, "rate_mbit": args.rate_mbit}

    times: dict[str, list[float]] = {"podlink": [], "tar": [], "rsync": []}
    notes: dict[str, str] = {}
    tar_over_link(tree, containers.create(), link)  # untimed warm-up
    kept: dict[str, str] = {}
    order = ["podlink", "tar", "rsync"]
    for repeat in range(args.repeats):
        for name in order[repeat % 3 :] + order[: repeat % 3]:
            container = containers.create()
            try:
                if name == "podlink":
                    seconds = asyncio.run(time_start(tree, write_config(scratch, container)))
                elif name == "tar":
                    seconds = tar_over_link(tree, container, link)
                else:
                    seconds = rsync_over_link(tree, container, link)
            except PeerFailed as failure:
                notes[name] = str(failure)
                continue
            found = containers.count_files(container)
            if found != args.files:
                raise RuntimeError(f"{name} left {found} files in {container}, not {args.files}")
            times[name].append(seconds)
            kept[name] = container
    podlink, tar = median(times["podlink"]), median(times["tar"])
    rsync = median(times["rsync"]) if times["rsync"] else None
    emit(
        {
            "bench": "initial_sync_far", **link_info, "files": args.files, "bytes": args.bytes,
            "podlink_s": podlink, "tar_s": tar, "rsync_s": rsync,
            "ratio_podlink_to_tar": ratio(podlink, tar),
            "ratio_podlink_to_rsync": ratio(podlink, rsync),
            "target": "podlink <= 1.2x tar", "met": podlink <= 1.2 * tar,
            "runs": {k: [round(v, 3) for v in values] for k, values in times.items()},
        },
        notes,
    )  # fmt: skip

    config = write_config(scratch, kept["podlink"])
    fresh = [asyncio.run(time_start(tree, config)) for _ in range(args.repeats)]
    if "rsync" not in kept:
        raise PeerFailed(f"rsync is the no-change peer and failed: {notes.get('rsync')}")
    rsync_again = [rsync_over_link(tree, kept["rsync"], link) for _ in range(args.repeats)]
    scan = local_scan_seconds(tree, args.repeats)
    allowed = 2 * rtt + scan
    emit(
        {
            "bench": "fresh_start_no_change_far", **link_info, "files": args.files,
            "podlink_s": median(fresh), "rsync_s": median(rsync_again),
            "local_scan_s": scan, "allowed_s": round(allowed, 3),
            "ratio_podlink_to_rsync": ratio(median(fresh), median(rsync_again)),
            "round_trips_beyond_scan": round((median(fresh) - scan) / rtt, 1),
            "target": "podlink <= 2 RTT + local scan", "met": median(fresh) <= allowed,
            "runs": {"podlink": [round(v, 3) for v in fresh],
                     "rsync": [round(v, 3) for v in rsync_again]},
        }
    )  # fmt: skip

    latencies, after_save, idle = asyncio.run(
        saves_and_flushes(args, tree, config, kept["podlink"])
    )
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    emit(
        {
            "bench": "save_to_target_far", **link_info, "edits": len(latencies),
            "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
            "ratio_p50_to_round_trip": round(p50 / args.round_trip_ms, 2),
            "target": "p50 <= RTT + 10 ms", "met": p50 <= args.round_trip_ms + 10,
        }
    )  # fmt: skip
    flush_after_save = statistics.median(after_save)
    emit(
        {
            "bench": "flush_far", **link_info,
            "after_save_p50_ms": round(flush_after_save, 1),
            "nothing_changed_p50_ms": round(statistics.median(idle), 1),
            "ratio_after_save_to_round_trip": round(flush_after_save / args.round_trip_ms, 2),
            "target": "a test run's flush adds <= 1 RTT",
            "met": flush_after_save <= args.round_trip_ms,
        }
    )  # fmt: skip


def give_up(signum: int, frame: object) -> None:
    raise TimeoutError("the far-target bench ran past --give-up-after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trip-ms", type=float, default=50)
    parser.add_argument("--rate-mbit", type=float, default=100)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--megabytes", type=float, default=100)
    parser.add_argument("--edits", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--give-up-after", type=float, default=1800)
    args = parser.parse_args()
    args.bytes = int(args.megabytes * 1_000_000)
    containers = Containers(LOCAL_ENGINE)
    with (
        FarLink(args.round_trip_ms, args.rate_mbit) as link,
        tempfile.TemporaryDirectory(prefix="podlink-far-") as scratch,
    ):
        signal.signal(signal.SIGALRM, give_up)
        signal.alarm(int(args.give_up_after))
        try:
            run(args, link, Path(scratch), containers)
        finally:
            signal.alarm(0)
            containers.remove_all()


if __name__ == "__main__":
    main()
