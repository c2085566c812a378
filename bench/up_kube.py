"""The whole loop on a real cluster: `podlink up` from nothing to serving, beside the same by hand.

Run after ``scripts/kube-env up`` (the cluster) and ``scripts/registry-env`` (a registry on
127.0.0.1:5000 that the cluster pulls from), with ``docker`` and ``kubectl`` on PATH:

    KUBECONFIG=~/.cache/podlink-test/kube/kubeconfig .venv/bin/python -m bench.up_kube \\
        [--context podlink-test] [--repeats K] [--edits N] [--base IMAGE]

Each repeat starts from nothing: a fresh copy of examples/kube-web whose image repository
is new (nothing built, nothing in the registry, nothing deployed), once through podlink and
once by hand, alternating which goes first. The bench's namespace ``podlink-bench-<id>`` is
deleted at the end, also after a failure. One JSON object per line: medians, the goal and
whether it was met.

1. ``up_kube``: podlink: ``podlink up`` until the forward answers. By hand: ``docker build``,
   ``docker push``, ``kubectl apply`` (the manifest with the tag put in), ``kubectl rollout
   status``, ``kubectl cp`` of the workspace into the pod, ``kubectl port-forward`` until it
   answers. Goal: podlink <= 1.1x by hand.
2. ``save_to_serving_kube``: with ``podlink up`` running, greeting.py is saved with a new
   text; the figure is the time until a request through the forward answers with it (the
   example's server reloads greeting.py when it changed). Peer: ``kubectl cp`` of the file,
   then the same wait. Goal: podlink p50 <= 1.0 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.sync_docker import median, ratio
from bench.sync_kube import Cluster, emit
from bench.sync_local import percentile

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPOSITORY_ROOT / "examples" / "kube-web"
BASE_IMAGE = "podlink-test-python:bookworm"
DEPLOYMENT = "kube-web"
SERVE_SECONDS = 300.0
POLL_SECONDS = 0.01


def run(argv: list[str]) -> None:
    """Run a step of the hand-made sequence; its output is not part of the figure."""
    subprocess.run(argv, check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answer(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
            return str(reply.read().decode().strip())
    except OSError:
        return None


def wait_for_answer(port: int, wanted: str, seconds: float = SERVE_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while answer(port) != wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"127.0.0.1:{port} did not answer {wanted!r} in {seconds:.0f} s")
        time.sleep(POLL_SECONDS)


def workspace(scratch: Path, name: str, repository: str) -> Path:
    folder = scratch / name
    shutil.copytree(EXAMPLE, folder)
    manifest = folder / "k8s" / "web.yaml"
    manifest.write_text(manifest.read_text().replace("127.0.0.1:5000/kube-web", repository))
    return folder


def podlink_config(folder: Path, repository: str, cluster: Cluster, base: str, port: int) -> None:
    (folder / "podlink.yaml").write_text(
        "version: 1\n"
        f"target:\n  kubernetes:\n    context: {cluster.context}\n"
        f"    namespace: {cluster.namespace}\n"
        "    pod: {selector: app=kube-web}\n    container: web\n"
        f"build:\n  image:\n    name: {repository}\n    args: {{BASE: {base}}}\n"
        "deploy:\n  manifests: [k8s/]\n"
        "sync:\n  - local: .\n    remote: /app\n    exclude: [k8s/, Dockerfile]\n"
        f'ports: ["{port}:8000"]\n'
    )


def save(folder: Path, text: str) -> None:
    (folder / "greeting.py").write_text(f"def text() -> str:\n    return {text!r}\n")


def edits(count: int, saved: Callable[[str], None], port: int) -> list[float]:
    """Seconds from each save to the forward answering with it."""
    figures = []
    for number in range(count):
        text = f"edit {number} {time.monotonic_ns()}"
        started = time.monotonic()
        saved(text)
        wait_for_answer(port, text, seconds=60)
        figures.append(time.monotonic() - started)
    return figures


def with_podlink(
    cluster: Cluster, scratch: Path, tag: str, base: str, registry: str, edit_count: int
) -> tuple[float, list[float]]:
    repository = f"{registry}/bench-{cluster.namespace}-{tag}-podlink"
    folder = workspace(scratch, f"podlink-{tag}", repository)
    port = free_port()
    podlink_config(folder, repository, cluster, base, port)
    env = {**os.environ, "PODLINK_STATE_DIR": str(scratch / "state")}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "podlink", "up", str(folder)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_answer(port, "hello from kube-web")
        up_seconds = time.monotonic() - started
        saves = edits(edit_count, lambda text: save(folder, text), port)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    subprocess.run(
        [sys.executable, "-m", "podlink", "purge", "--yes", "--folder", str(folder)],
        env=env,
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return up_seconds, saves


def by_hand(
    cluster: Cluster, scratch: Path, tag: str, base: str, registry: str, edit_count: int
) -> tuple[float, list[float]]:
    repository = f"{registry}/bench-{cluster.namespace}-{tag}-hand"
    reference = f"{repository}:hand"
    folder = workspace(scratch, f"hand-{tag}", repository)
    manifest = folder / "k8s" / "web.yaml"
    manifest.write_text(manifest.read_text().replace(repository, reference))
    port = free_port()
    started = time.monotonic()
    run(["docker", "build", "-q", "-t", reference, "--build-arg", f"BASE={base}", str(folder)])
    run(["docker", "push", "-q", reference])
    run(cluster.kubectl("apply", "-f", str(manifest)))
    run(cluster.kubectl("rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=300s"))
    pod = cluster.wait_running(label_selector="app=kube-web")
    for name in ("server.py", "greeting.py"):
        run(cluster.kubectl("cp", str(folder / name), f"{pod}:/app/{name}"))
    forward = subprocess.Popen(
        cluster.kubectl("port-forward", f"pod/{pod}", f"{port}:8000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_answer(port, "hello from kube-web")
        up_seconds = time.monotonic() - started

        def copy(text: str) -> None:
            save(folder, text)
            run(cluster.kubectl("cp", str(folder / "greeting.py"), f"{pod}:/app/greeting.py"))

        saves = edits(edit_count, copy, port)
    finally:
        forward.terminate()
        forward.wait(timeout=30)
        subprocess.run(
            cluster.kubectl("delete", "-f", str(manifest), "--wait=true"), capture_output=True
        )
        subprocess.run(["docker", "rmi", reference], capture_output=True)
    return up_seconds, saves


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--context", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--base", default=BASE_IMAGE, help="the Dockerfile's BASE argument")
    args = parser.parse_args()
    registry = subprocess.run(
        [str(REPOSITORY_ROOT / "scripts" / "registry-env")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        cluster = Cluster(args.context)
    except Exception as error:
        sys.exit(f"cannot reach the cluster ({error}): run scripts/kube-env up and set KUBECONFIG")
    ups: dict[str, list[float]] = {"podlink": [], "by_hand": []}
    saves: dict[str, list[float]] = {"podlink": [], "by_hand": []}
    try:
        with tempfile.TemporaryDirectory(prefix="podlink-bench-") as scratch_name:
            scratch = Path(scratch_name)
            for repeat in range(args.repeats):
                ways = [("podlink", with_podlink), ("by_hand", by_hand)]
                for name, way in ways if repeat % 2 == 0 else ways[::-1]:
                    up_seconds, save_seconds = way(
                        cluster, scratch, str(repeat), args.base, registry, args.edits
                    )
                    ups[name].append(up_seconds)
                    saves[name].extend(save_seconds)
    finally:
        with contextlib.suppress(Exception):
            cluster.close()
    podlink_up, hand_up = median(ups["podlink"]), median(ups["by_hand"])
    up_ratio = ratio(podlink_up, hand_up)
    emit(
        {
            "bench": "up_kube",
            "repeats": args.repeats,
            "podlink_s": podlink_up,
            "by_hand_s": hand_up,
            "ratio": up_ratio,
            "goal": "podlink <= 1.1x by hand",
            "met": up_ratio is not None and up_ratio <= 1.1,
        }
    )
    podlink_p50 = statistics.median(saves["podlink"])
    emit(
        {
            "bench": "save_to_serving_kube",
            "edits": len(saves["podlink"]),
            "podlink_p50_ms": round(podlink_p50 * 1000, 1),
            "podlink_p90_ms": round(percentile(saves["podlink"], 0.9) * 1000, 1),
            "kubectl_cp_p50_ms": round(statistics.median(saves["by_hand"]) * 1000, 1),
            "goal": "podlink p50 <= 1000 ms",
            "met": podlink_p50 <= 1.0,
        }
    )


if __name__ == "__main__":
    main()
