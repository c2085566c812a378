"""Docker target: podlink beside tar, rsync, docker cp and unison, in the same run.

Run (after ``scripts/docker-env``, which starts the engine and builds the test image):

    .venv/bin/python -m bench.sync_docker [--files N] [--megabytes M] [--edits N] [--repeats K]
        [--switch-files N] [--mode upload|two-way]

Defaults: 10,000 files, 100 MB, 200 edits, 3 repeats, 2,000 files in the branch switch,
upload mode (``--mode two-way`` runs every step with two-way sync, target watching on).
Every container is a throwaway one made from podlink-test-python:bookworm with the label
``podlink.bench=1``; all of them are removed at the end, also after a failure or Ctrl-C, and
not before: deleting a container's 10,000 files makes file creation in the next seconds
slower on some file systems (ext4 without a journal skips recently freed inodes), which
would tax whichever tool ran next. One JSON object per line is printed, each podlink figure
beside its peers and the ratio, medians over the repeats (a "runs" field has every value).
Compare ratios, not absolute times: machines are noisy. ``os.sync()`` runs before every
timed step, so the disk write-back of one step does not land in the next.

How each figure is measured (the same tree from ``bench.tree.make_tree`` for all):

1. ``initial_sync_docker``: a copy into the empty ``/app`` of a fresh container, once per
   tool and repeat. podlink: ``await Session.start()`` of a session whose podlink.yaml says
   ``target: {docker: {container: NAME}}`` and syncs ``.`` to ``/app`` (the file lives
   outside the tree, so every tool copies the same files). Peers: ``tar -C tree -c . |
   docker exec -i C tar -x -C /app``; ``rsync -a --blocking-io -e 'docker exec -i' tree/
   C:/app/`` (rsync's remote shell is ``docker exec -i``, the host part is the container);
   ``docker cp tree/. C:/app``. Each copy is checked by counting the files afterwards. An
   untimed tar copy warms up first, and each repeat starts with a different tool.
2. ``resync_no_change_docker``: nothing changed since the copy. podlink: a new session
   against the container that holds the identical ``/app`` (time of its ``start()``).
   Peers: rsync run again; unison 2.52 (the host's binary copied into a container, run over
   ``docker exec`` through an ssh-like wrapper) after one initial unison sync, which is also
   reported.
3. ``save_to_target_docker``: with a session running, single-file edits (a line appended to
   an existing ~10 KB file), one at a time with a 20 ms pause. A small Python poller runs
   inside the container in one long-lived ``docker exec -i``: for each edit it is told the
   path, size and SHA-256 it must wait for, says it is ready, then polls (every 0.2 ms) and
   reports ``time.monotonic()`` when the file holds exactly the new bytes. Containers share
   the host's kernel, so that clock is the host's ``CLOCK_MONOTONIC``: latency = seen time in
   the container - save time on the host, no stream delay included. The bench checks the
   clocks agree at start (the poller's first reading must lie between the host's readings
   around it) and otherwise falls back to the time the report reaches the host. Peers, the
   same edits and the same poller, with the session stopped: ``docker cp FILE C:/app/...``
   and ``docker exec -i C sh -c 'cat > /app/...'`` per change (their start-up included).
4. ``branch_switch_docker``: with the session running, a separate process rewrites 2,000
   existing files with new content in a tight loop, as a checkout would. The poller, armed
   beforehand with all 2,000 (path, size, SHA-256), reports when the last one matches;
   the figure is that time minus the writer's clock reading just before its first write
   (``writes_s``: how long the writer itself took, slowed by the sync running beside it).
   Repeated with fresh content each time. Peer: rsync, timed alone, carrying the same kind
   of change (the same 2,000 files rewritten) into a container that held the tree before.

Targets (from the issues) are printed with each figure with ``met``: initial sync <= 1.1x
tar (1.5x before the sync-speed work) and faster than rsync; no-change re-sync <= rsync;
save-to-target p50 <= 20 ms and p99 <= 60 ms; branch switch <= 1.5 s. A peer tool that is
missing or fails is printed as null with a ``note``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.sync_local import QuietListener, percentile
from bench.tree import make_tree, source_text
from podlink.config import load_config
from podlink.session import Session

IMAGE = "podlink-test-python:bookworm"
BENCH_LABEL = "podlink.bench"
RUN_LABEL = "podlink.bench.run"
REMOTE_ROOT = "/app"
EDIT_PAUSE_SECONDS = 0.02
EDIT_FILES = 50
EDIT_TIMEOUT_SECONDS = 10.0
SWITCH_TIMEOUT_SECONDS = 60.0

# ssh stand-in for unison: keeps the host and the command, drops ssh options, and runs the
# command in the container named by the host (unison calls it as `W HOST -e none unison
# -server`).
UNISON_WRAPPER = """#!/bin/sh
host=""
while [ $# -gt 0 ]; do
  case "$1" in
    -e|-l|-p|-o) shift 2;;
    -*) shift;;
    *) if [ -z "$host" ]; then host=$1; shift; else break; fi;;
  esac
done
exec docker exec -i "$host" "$@"
"""

# Runs inside the container. Protocol on stdin: a line "COUNT TIMEOUT", then COUNT lines
# "SIZE SHA256 PATH"; it answers "ready", polls until every file holds exactly those bytes,
# and answers "done T" (T: time.monotonic() when the last one matched) or "missing N".
# Its first line is its clock reading at start, to check that it shares the host's clock.
POLLER_SOURCE = r"""
import hashlib, os, sys, time
out = sys.stdout
out.write("%r\n" % time.monotonic())
out.flush()
stdin = sys.stdin.buffer
while True:
    header = stdin.readline()
    if not header:
        break
    count, timeout = header.split()
    jobs = {}
    for _ in range(int(count)):
        size, digest, path = stdin.readline().decode().rstrip("\n").split(" ", 2)
        jobs[path] = (int(size), digest)
    out.write("ready\n")
    out.flush()
    deadline = time.monotonic() + float(timeout)
    last = None
    while jobs and time.monotonic() < deadline:
        for path in list(jobs):
            size, digest = jobs[path]
            try:
                if os.stat(path).st_size != size:
                    continue
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == digest:
                del jobs[path]
                last = time.monotonic()
        if jobs:
            time.sleep(0.0002)
    out.write("missing %d\n" % len(jobs) if jobs else "done %r\n" % last)
    out.flush()
"""

# Runs on the host as its own process, like a checkout: reads "SOURCE\tDESTINATION" lines,
# then copies each source's bytes over its destination; prints its clock just before the
# first write and after the last.
WRITER_SOURCE = r"""
import sys, time
pairs = [line.rstrip("\n").split("\t") for line in sys.stdin]
contents = [(open(source, "rb").read(), destination) for source, destination in pairs]
started = time.monotonic()
for data, destination in contents:
    with open(destination, "wb") as handle:
        handle.write(data)
print(repr(started), repr(time.monotonic()))
"""


class PeerFailed(Exception):
    """A peer tool is missing or failed: its figure becomes null with this note."""


# -- containers ------------------------------------------------------------------------


class Containers:
    """Throwaway containers of one bench run; ``remove_all`` also finds half-made ones.

    ``docker``: the command that reaches the Engine for this bookkeeping (``docker -H …`` to
    keep it off a link under test)."""

    def __init__(self, docker: tuple[str, ...] = ("docker",)) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self._count = 0
        self._docker = docker

    def create(self) -> str:
        self._count += 1
        name = f"podlink-bench-{self.run_id}-{self._count}"
        subprocess.run(
            [
                *self._docker, "run", "-d", "--name", name,
                "--label", f"{BENCH_LABEL}=1", "--label", f"{RUN_LABEL}={self.run_id}",
                "-w", REMOTE_ROOT, IMAGE, "sleep", "infinity",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return name

    def remove_all(self) -> None:
        listed = subprocess.run(
            [*self._docker, "ps", "-aq", "--filter", f"label={RUN_LABEL}={self.run_id}"],
            capture_output=True,
            text=True,
        )
        ids = listed.stdout.split()
        if ids:
            subprocess.run([*self._docker, "rm", "-f", *ids], capture_output=True)

    def count_files(self, container: str) -> int:
        found = subprocess.run(
            [*self._docker, "exec", container, "sh", "-c", f"find {REMOTE_ROOT} -type f | wc -l"],
            check=True,
            capture_output=True,
            text=True,
        )
        return int(found.stdout)


def count_files(container: str) -> int:
    found = subprocess.run(
        ["docker", "exec", container, "sh", "-c", f"find {REMOTE_ROOT} -type f | wc -l"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(found.stdout)


def settle() -> None:
    """Flush dirty pages (the containers' too: same kernel) before a timed step."""
    os.sync()


def timed(run: Callable[[], None]) -> float:
    settle()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def run_peer(argv: list[str], **kwargs: Any) -> None:
    if shutil.which(argv[0]) is None:
        raise PeerFailed(f"{argv[0]} is not installed on the host")
    done = subprocess.run(argv, capture_output=True, **kwargs)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise PeerFailed(f"{argv[0]} exited {done.returncode}: {' '.join(message[-2:])}")


# -- peers -------------------------------------------------------------------------------


def tar_copy(tree: Path, container: str) -> None:
    if shutil.which("tar") is None:
        raise PeerFailed("tar is not installed on the host")
    reader = subprocess.Popen(["tar", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
    assert reader.stdout is not None
    extract = ["docker", "exec", "-i", container, "tar", "-x", "-C", REMOTE_ROOT]
    writer = subprocess.run(extract, stdin=reader.stdout, capture_output=True)
    reader.stdout.close()
    if reader.wait() != 0 or writer.returncode != 0:
        raise PeerFailed(f"tar pipe failed: {writer.stderr.decode(errors='replace').strip()}")


def rsync_copy(tree: Path, container: str) -> None:
    run_peer(
        [
            "rsync", "-a", "--blocking-io", "-e", "docker exec -i",
            f"{tree}/", f"{container}:{REMOTE_ROOT}/",
        ]
    )  # fmt: skip


def docker_cp_copy(tree: Path, container: str) -> None:
    run_peer(["docker", "cp", f"{tree}/.", f"{container}:{REMOTE_ROOT}"])


class Unison:
    def __init__(self, scratch: Path, tree: Path, container: str) -> None:
        self.tree = tree
        self.container = container
        self.wrapper = scratch / "unison-ssh"
        self.wrapper.write_text(UNISON_WRAPPER)
        self.wrapper.chmod(0o755)
        self.env = {**os.environ, "UNISON": str(scratch / "unison-archives")}

    def install(self) -> None:
        binary = shutil.which("unison")
        if binary is None:
            raise PeerFailed("unison is not installed on the host")
        run_peer(["docker", "cp", "-L", binary, f"{self.container}:/usr/bin/unison"])

    def sync(self) -> None:
        run_peer(
            [
                "unison", str(self.tree), f"ssh://{self.container}/{REMOTE_ROOT}",
                "-sshcmd", str(self.wrapper), "-batch", "-silent", "-perms", "0",
            ],
            env=self.env,
        )  # fmt: skip


def measure_peer(
    results: dict[str, list[float]], notes: dict[str, str], name: str, step: Callable[[], None]
) -> None:
    """Time ``step`` into ``results[name]``; a failure becomes a note, not an abort."""
    if name in notes:
        return
    try:
        results.setdefault(name, []).append(timed(step))
    except PeerFailed as failure:
        notes[name] = str(failure)


# -- podlink -----------------------------------------------------------------------------


SYNC_MODE = {"mode": "upload"}  # set from --mode


def write_config(scratch: Path, container: str) -> Path:
    """A config for the workspace ``scratch`` (podlink reads config files only from inside
    their workspace) that syncs its ``tree`` folder, so the tree holds what the peers copy."""
    path = scratch / f"podlink-{container}.yaml"
    path.write_text(
        "version: 1\n"
        f"target: {{docker: {{container: {json.dumps(container)}}}}}\n"
        f"sync: [{{local: tree, remote: {REMOTE_ROOT}, mode: {SYNC_MODE['mode']}}}]\n"
    )
    return path


def new_session(tree: Path, config_file: Path) -> Session:
    assert tree == config_file.parent / "tree"
    return Session(load_config(config_file.parent, config_file), QuietListener())


async def time_start(tree: Path, config_file: Path) -> float:
    """Seconds for ``start()`` of a new session; the session is stopped afterwards."""
    await asyncio.to_thread(settle)
    session = new_session(tree, config_file)
    started = time.perf_counter()
    try:
        await session.start()
        return time.perf_counter() - started
    finally:
        await session.stop()


# -- seeing changes in the container ---------------------------------------------------


def digest_line(remote_path: str, data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()} {remote_path}\n"


class Poller:
    """The in-container poller, over one long-lived ``docker exec -i``."""

    def __init__(self, process: asyncio.subprocess.Process, shared_clock: bool) -> None:
        self._process = process
        self.shared_clock = shared_clock

    @classmethod
    async def start(cls, container: str) -> Poller:
        return await cls.start_over(["docker", "exec", "-i", container])

    @classmethod
    async def start_over(cls, exec_argv: list[str]) -> Poller:
        """The poller run by ``exec_argv`` (a command that runs its arguments in the target
        with stdin attached, e.g. ``kubectl exec -i POD --``)."""
        before = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *exec_argv,
            *("python3", "-I", "-u", "-c", POLLER_SOURCE),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        first = float(await process.stdout.readline())
        return cls(process, before <= first <= time.monotonic())

    async def arm(self, jobs: list[tuple[str, bytes]], give_up_after: float) -> None:
        """Tell the poller what to wait for; returns once it is polling."""
        assert self._process.stdin is not None and self._process.stdout is not None
        lines = [f"{len(jobs)} {give_up_after}\n"] + [
            digest_line(path, data) for path, data in jobs
        ]
        self._process.stdin.write("".join(lines).encode())
        await self._process.stdin.drain()
        if (await self._process.stdout.readline()).strip() != b"ready":
            raise RuntimeError("the poller in the container did not answer")

    async def seen(self) -> float | None:
        """Clock reading when the last armed file matched; None if the deadline passed."""
        assert self._process.stdout is not None
        answer = (await self._process.stdout.readline()).decode().split()
        received = time.monotonic()
        if not answer or answer[0] != "done":
            return None
        return float(answer[1]) if self.shared_clock else received

    async def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), 5)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()


def edit_files(tree: Path, count: int) -> list[Path]:
    """Existing files closest to 10 KB, in a fixed order."""
    files = sorted(tree.rglob("*.py"))
    by_size = sorted(files, key=lambda path: (abs(path.stat().st_size - 10_240), path))
    return sorted(by_size[:count])


def append_line(path: Path, index: int) -> bytes:
    """Append one line to ``path`` as an editor save would; returns the new content."""
    with path.open("ab") as handle:
        handle.write(f"# edit {index}\n".encode())
    return path.read_bytes()


async def measure_edits(
    tree: Path,
    poller: Poller,
    edits: int,
    deliver: Callable[[Path], Any] | None = None,
) -> list[float]:
    """Milliseconds from each save to the new bytes being in the container.

    Without ``deliver``, a running session carries the change; with it, ``deliver(path)``
    (a coroutine function) is the peer that copies the saved file.
    """
    files = edit_files(tree, EDIT_FILES)
    latencies: list[float] = []
    for index in range(edits):
        path = files[index % len(files)]
        remote = f"{REMOTE_ROOT}/{path.relative_to(tree).as_posix()}"
        expected = path.read_bytes() + f"# edit {index}\n".encode()
        await poller.arm([(remote, expected)], EDIT_TIMEOUT_SECONDS)
        saved_at = time.monotonic()
        content = append_line(path, index)
        if deliver is not None:
            await deliver(path)
        seen = await poller.seen()
        if seen is None or content != expected:
            raise RuntimeError(f"the edit of {remote} never showed in the container")
        latencies.append((seen - saved_at) * 1000)
        await asyncio.sleep(EDIT_PAUSE_SECONDS)
    return latencies


async def run_quiet(*argv: str, stdin_path: Path | None = None) -> None:
    with contextlib.ExitStack() as stack:
        stdin = stack.enter_context(stdin_path.open("rb")) if stdin_path else None
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=stdin, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, error = await process.communicate()
    if process.returncode != 0:
        raise PeerFailed(f"{argv[0]} exited {process.returncode}: {error.decode().strip()}")


def peer_deliveries(tree: Path, container: str) -> dict[str, Callable[[Path], Any]]:
    def remote(path: Path) -> str:
        return f"{REMOTE_ROOT}/{path.relative_to(tree).as_posix()}"

    async def docker_cp(path: Path) -> None:
        await run_quiet("docker", "cp", str(path), f"{container}:{remote(path)}")

    async def exec_cat(path: Path) -> None:
        command = f"cat > {shlex.quote(remote(path))}"
        await run_quiet("docker", "exec", "-i", container, "sh", "-c", command, stdin_path=path)

    return {"docker_cp": docker_cp, "docker_exec_cat": exec_cat}


def switch_files(tree: Path, count: int) -> list[Path]:
    files = sorted(tree.rglob("*.py"))
    step = max(1, len(files) // count)
    return files[::step][:count]


def switch_contents(files: list[Path], seed: int) -> list[tuple[Path, bytes]]:
    """New content for each of ``files``, about as long as the old."""
    rng = random.Random(seed)
    return [
        (path, source_text(rng, max(64, path.stat().st_size + rng.randint(-200, 200))))
        for path in files
    ]


def stage_switch(staging: Path, files: list[Path], seed: int) -> list[tuple[Path, Path, bytes]]:
    """New content for ``files`` written under ``staging``: (source, destination, bytes)."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    staged = []
    for index, (path, data) in enumerate(switch_contents(files, seed)):
        source = staging / f"{index:05d}"
        source.write_bytes(data)
        staged.append((source, path, data))
    return staged


async def measure_switch(
    tree: Path, poller: Poller, staged: list[tuple[Path, Path, bytes]]
) -> tuple[float | None, float]:
    """Seconds from the first write until every rewritten file is in the container."""
    jobs = [
        (f"{REMOTE_ROOT}/{destination.relative_to(tree).as_posix()}", data)
        for _, destination, data in staged
    ]
    await asyncio.to_thread(settle)
    await poller.arm(jobs, SWITCH_TIMEOUT_SECONDS)
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER_SOURCE,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    manifest = "".join(f"{source}\t{destination}\n" for source, destination, _ in staged)
    output, _ = await writer.communicate(manifest.encode())
    first_write, last_write = (float(word) for word in output.split())
    seen = await poller.seen()
    return (None if seen is None else seen - first_write), last_write - first_write


# -- the run -----------------------------------------------------------------------------


def median(values: list[float] | None) -> float | None:
    return round(statistics.median(values), 3) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def emit(record: dict[str, Any], notes: dict[str, str] | None = None) -> None:
    record["sync_mode"] = SYNC_MODE["mode"]
    if notes:
        record["note"] = "; ".join(f"{name}: {text}" for name, text in sorted(notes.items()))
    print(json.dumps(record), flush=True)


def initial_sync(
    args: argparse.Namespace, scratch: Path, tree: Path, containers: Containers
) -> tuple[str, str]:
    """Figure 1. Returns the containers kept for later: podlink's and rsync's last."""
    times: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    peers = {"tar": tar_copy, "rsync": rsync_copy, "docker_cp": docker_cp_copy}
    # Untimed warm-up: the first burst of file creation after a quiet spell is slower,
    # and it should not count against whichever tool happens to run first.
    with contextlib.suppress(PeerFailed):
        tar_copy(tree, containers.create())
    last: dict[str, str] = {}
    order = ["podlink", *peers]
    for repeat in range(args.repeats):
        # Each tool runs first in a different repeat.
        for name in order[repeat % len(order) :] + order[: repeat % len(order)]:
            container = containers.create()
            if name == "podlink":
                config = write_config(scratch, container)
                times.setdefault(name, []).append(asyncio.run(time_start(tree, config)))
            else:
                measure_peer(times, notes, name, functools.partial(peers[name], tree, container))
            if name not in notes:
                check_copy(container, args.files, name)
                # Only a container a tool really filled serves the later figures' peers.
                last[name] = container
    podlink, tar, rsync = (
        median(times["podlink"]),
        median(times.get("tar")),
        median(times.get("rsync")),
    )
    met = None
    if tar is not None and rsync is not None and podlink is not None:
        met = podlink <= 1.1 * tar and podlink < rsync
    emit(
        {
            "bench": "initial_sync_docker",
            "files": args.files,
            "bytes": args.bytes,
            "podlink_s": podlink,
            "tar_s": tar,
            "rsync_s": rsync,
            "docker_cp_s": median(times.get("docker_cp")),
            "ratio_podlink_to_tar": ratio(podlink, tar),
            "ratio_podlink_to_rsync": ratio(podlink, rsync),
            "ratio_podlink_to_docker_cp": ratio(podlink, median(times.get("docker_cp"))),
            "target": "podlink <= 1.1x tar and < rsync",
            "met": met,
            "runs": {name: [round(value, 3) for value in values] for name, values in times.items()},
        },
        notes,
    )
    # Peers of the later figures work in rsync's copy (or any other peer's, if rsync failed).
    reference = last.get("rsync") or last.get("tar") or last.get("docker_cp") or last["podlink"]
    return last["podlink"], reference


def check_copy(container: str, files: int, who: str) -> None:
    found = count_files(container)
    if found != files:
        raise RuntimeError(f"{who} left {found} files in {container}:{REMOTE_ROOT}, not {files}")


def resync_no_change(
    args: argparse.Namespace,
    scratch: Path,
    tree: Path,
    containers: Containers,
    podlink_container: str,
    rsync_container: str,
) -> None:
    """Figure 2."""
    times: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    config = write_config(scratch, podlink_container)
    peer = Unison(scratch, tree, containers.create())
    unison: Unison | None = peer
    try:
        peer.install()
        unison_initial: float | None = timed(peer.sync)
    except PeerFailed as failure:
        notes["unison"] = str(failure)
        unison, unison_initial = None, None
    for _ in range(args.repeats):
        times.setdefault("podlink", []).append(asyncio.run(time_start(tree, config)))
        measure_peer(times, notes, "rsync", lambda: rsync_copy(tree, rsync_container))
        if unison is not None:
            measure_peer(times, notes, "unison", unison.sync)
    podlink, rsync = median(times["podlink"]), median(times.get("rsync"))
    emit(
        {
            "bench": "resync_no_change_docker",
            "files": args.files,
            "podlink_s": podlink,
            "rsync_s": rsync,
            "unison_s": median(times.get("unison")),
            "unison_initial_s": None if unison_initial is None else round(unison_initial, 3),
            "ratio_podlink_to_rsync": ratio(podlink, rsync),
            "ratio_podlink_to_unison": ratio(podlink, median(times.get("unison"))),
            "target": "podlink <= rsync",
            "met": None if rsync is None or podlink is None else podlink <= rsync,
            "runs": {name: [round(value, 3) for value in values] for name, values in times.items()},
        },
        notes,
    )


async def with_session(
    args: argparse.Namespace,
    scratch: Path,
    tree: Path,
    podlink_container: str,
    rsync_container: str,
) -> None:
    """Figures 3 and 4: podlink under one running session, then the peers."""
    session = new_session(tree, write_config(scratch, podlink_container))
    await session.start()
    poller = await Poller.start(podlink_container)
    try:
        await asyncio.to_thread(settle)
        latencies = await measure_edits(tree, poller, args.edits)
        shared_clock = poller.shared_clock
        # rsync's container catches up with these edits (not timed), for figure 4's peer.
        with contextlib.suppress(PeerFailed):
            await asyncio.to_thread(rsync_copy, tree, rsync_container)
        switch = await branch_switch(args, tree, poller)
    finally:
        await poller.close()
        await session.stop()
    peers, notes = await edit_peers(args, tree, rsync_container)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    emit(
        {
            "bench": "save_to_target_docker",
            "edits": len(latencies),
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "max_ms": round(max(latencies), 1),
            **{f"{name}_p50_ms": value for name, value in peers.items()},
            "ratio_p50_to_docker_cp": ratio(p50, peers.get("docker_cp")),
            "ratio_p50_to_docker_exec_cat": ratio(p50, peers.get("docker_exec_cat")),
            "target": "p50 <= 20 ms and p99 <= 60 ms",
            "met": p50 <= 20 and p99 <= 60,
            "clock": "container monotonic" if shared_clock else "host receipt",
        },
        notes,
    )
    emit(*switch_record(args, tree, switch, rsync_container))


async def branch_switch(
    args: argparse.Namespace, tree: Path, poller: Poller
) -> tuple[list[Path], list[float | None], list[float]]:
    """Figure 4, podlink's side: (files, seconds per repeat or None, writer's seconds)."""
    staging = tree.parent / "switch-staging"
    files = switch_files(tree, min(args.switch_files, args.files))
    seen: list[float | None] = []
    writes: list[float] = []
    try:
        for repeat in range(args.repeats):
            staged = await asyncio.to_thread(stage_switch, staging, files, 1000 + repeat)
            seconds, writing = await measure_switch(tree, poller, staged)
            seen.append(seconds)
            writes.append(writing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files, seen, writes


def switch_record(
    args: argparse.Namespace,
    tree: Path,
    switch: tuple[list[Path], list[float | None], list[float]],
    rsync_container: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Figure 4's line; rsync's side is timed here, on the same files with new content."""
    files, seen, writes = switch
    notes: dict[str, str] = {}
    times: dict[str, list[float]] = {"podlink": [value for value in seen if value is not None]}
    for repeat in range(args.repeats):
        for path, data in switch_contents(files, 2000 + repeat):
            path.write_bytes(data)
        measure_peer(times, notes, "rsync", lambda: rsync_copy(tree, rsync_container))
    missed = seen.count(None)
    if missed:
        notes["podlink"] = f"{missed} run(s) not complete within {SWITCH_TIMEOUT_SECONDS:.0f} s"
    podlink, rsync = median(times["podlink"]), median(times.get("rsync"))
    record = {
        "bench": "branch_switch_docker",
        "files": len(files),
        "podlink_s": podlink,
        "writes_s": median(writes),
        "rsync_s": rsync,
        "ratio_podlink_to_rsync": ratio(podlink, rsync),
        "target": "podlink <= 1.5 s",
        "met": podlink is not None and not missed and podlink <= 1.5,
        "runs": {name: [round(value, 3) for value in values] for name, values in times.items()},
    }
    return record, notes


async def edit_peers(
    args: argparse.Namespace, tree: Path, container: str
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Figure 3's peers: p50 milliseconds per tool, and notes for the ones that failed."""
    poller = await Poller.start(container)
    results: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    try:
        for name, deliver in peer_deliveries(tree, container).items():
            await asyncio.to_thread(settle)
            try:
                values = await measure_edits(tree, poller, args.edits, deliver)
                results[name] = round(percentile(values, 0.5), 1)
            except PeerFailed as failure:
                results[name], notes[name] = None, str(failure)
    finally:
        await poller.close()
    return results, notes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--switch-files", type=int, default=2_000)
    parser.add_argument("--mode", choices=["upload", "two-way"], default="upload")
    args = parser.parse_args()
    SYNC_MODE["mode"] = args.mode
    image = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True)
    if image.returncode != 0:
        sys.exit(f"no {IMAGE} on this Docker Engine: run scripts/docker-env first")

    containers = Containers()
    with tempfile.TemporaryDirectory(prefix="podlink-bench-") as scratch_name:
        scratch = Path(scratch_name)
        # A state of its own: no agreed sync state from an earlier run may shortcut this one.
        os.environ["PODLINK_STATE_DIR"] = str(scratch / "state")
        tree = scratch / "tree"
        args.files, args.bytes = make_tree(tree, files=args.files, total_bytes=args.megabytes << 20)
        try:
            podlink_container, rsync_container = initial_sync(args, scratch, tree, containers)
            resync_no_change(args, scratch, tree, containers, podlink_container, rsync_container)
            asyncio.run(with_session(args, scratch, tree, podlink_container, rsync_container))
        finally:
            containers.remove_all()


if __name__ == "__main__":
    main()
