"""Kubernetes target on a real cluster: podlink beside tar over kubectl exec and kubectl cp.

Run after ``scripts/kube-env up`` (it builds and starts a single-node cluster on loopback and
prints its kubeconfig), with ``kubectl`` on PATH for the peers:

    KUBECONFIG=~/.cache/podlink-test/kube/kubeconfig .venv/bin/python -m bench.sync_kube \\
        [--context podlink-test] [--files N] [--megabytes M] [--edits N] [--peer-edits N] \\
        [--repeats K]

Defaults: 10,000 files, 100 MB, 200 edits (20 for each per-change peer), 3 repeats. The
bench makes a namespace ``podlink-bench-<id>`` and deletes it at the end, also after a
failure or Ctrl-C. Pods run ``sleep infinity`` in podlink-test-python:bookworm (imported into
the cluster by scripts/kube-env). One JSON object per line: podlink's figure beside its
peers', medians over the repeats, the goal and whether it was met.

1. ``initial_sync_kube``: the tree into the empty ``/app`` of a fresh pod, once per tool and
   repeat, each repeat starting with another tool. podlink: ``Session.start()`` of a session
   on that pod. Peers: ``tar -C tree -c . | kubectl exec -i POD -- tar -x -C /app`` and
   ``kubectl cp tree/. POD:/app``. Each copy is checked by counting files. Goal: podlink <=
   1.5x the tar stream.
2. ``save_to_pod_kube``: with a session running, single-file edits (a line appended to a
   ~10 KB file) one at a time. A poller runs in the pod over one ``kubectl exec -i`` and
   reports ``time.monotonic()`` when the file holds the new bytes; pods share this machine's
   kernel, so that is the host's clock (checked at start, else the report's arrival time
   counts). Peers, per change with the session stopped: ``kubectl cp FILE POD:/app/...`` and
   ``kubectl exec -i POD -- sh -c 'cat > ...'``. Goal: podlink p50 <= 10 ms.
3. ``pod_replaced_kube``: a Deployment of one pod; a session follows it by selector, runs a
   small HTTP app from the workspace that answers with its pod's name and a marker file's
   content, and forwards its port. The pod is deleted; the figure is the time from the
   replacement pod being Running (seen by a watch) to the forward answering from that pod
   with the workspace's marker. Goal: <= 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes import config as kube_config

from bench.sync_docker import (
    PeerFailed,
    Poller,
    measure_edits,
    measure_peer,
    median,
    ratio,
    run_quiet,
    time_start,
)
from bench.sync_local import QuietListener, percentile
from bench.tree import make_tree
from podlink.config import load_config
from podlink.session import Session

IMAGE = "podlink-test-python:bookworm"
REMOTE_ROOT = "/app"
READY_SECONDS = 120
PEER_SECONDS = 300
APP_PORT = 8000
SERVE_SOURCE = """\
import http.server, pathlib, socket

class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (socket.gethostname() + " " + pathlib.Path("marker.txt").read_text()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Answer).serve_forever()
""".replace("PORT", str(APP_PORT))
_loaders: Any = kube_config
_watch: Any = watch


class Cluster:
    """One namespace of the cluster for this run; ``close`` deletes it."""

    def __init__(self, context: str | None) -> None:
        self.api = _loaders.new_client_from_config(context=context)
        _, active = _loaders.list_kube_config_contexts()
        self.context = context or active["name"]
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.namespace = f"podlink-bench-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": self.namespace}})
        deadline = time.monotonic() + READY_SECONDS
        while True:  # a new namespace refuses pods until its service account exists
            try:
                self.core.read_namespaced_service_account("default", self.namespace)
                break
            except client.ApiException as error:
                if error.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        self._count = 0

    def kubectl(self, *argv: str) -> list[str]:
        return ["kubectl", "--context", self.context, "-n", self.namespace, *argv]

    def pod_spec(self) -> dict[str, Any]:
        return {
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "infinity"],
                    "workingDir": REMOTE_ROOT,  # made by the runtime: the peers need /app
                }
            ],
            "terminationGracePeriodSeconds": 0,
        }

    def create_pod(self) -> str:
        self._count += 1
        name = f"bench-{self._count}"
        self.core.create_namespaced_pod(
            self.namespace, {"metadata": {"name": name}, "spec": self.pod_spec()}
        )
        self.wait_running(f"metadata.name={name}")
        return name

    def wait_running(self, field_selector: str = "", label_selector: str = "") -> str:
        """The name of the first pod matching the selectors that is Running and not being
        deleted."""
        for event in _watch.Watch().stream(
            self.core.list_namespaced_pod,
            self.namespace,
            field_selector=field_selector,
            label_selector=label_selector,
            timeout_seconds=READY_SECONDS,
        ):
            pod = event["object"]
            if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp:
                return str(pod.metadata.name)
        raise RuntimeError(f"no pod ({field_selector}{label_selector}) ran in {READY_SECONDS} s")

    def count_files(self, pod: str) -> int:
        found = subprocess.run(
            self.kubectl("exec", pod, "--", "sh", "-c", f"find {REMOTE_ROOT} -type f | wc -l"),
            check=True,
            capture_output=True,
            text=True,
        )
        return int(found.stdout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.core.delete_namespace(self.namespace)
        self.api.close()


def emit(record: dict[str, Any], notes: dict[str, str] | None = None) -> None:
    if notes:
        record["note"] = "; ".join(f"{name}: {text}" for name, text in sorted(notes.items()))
    print(json.dumps(record), flush=True)


def write_config(workspace: Path, cluster: Cluster, pod: str, extra: str = "") -> Path:
    """A config beside the synced folder ``workspace`` (podlink reads config files only from
    inside their workspace, and the peers must copy the same files)."""
    path = workspace.parent / f"podlink-{workspace.name}.yaml"
    path.write_text(
        "version: 1\n"
        f"target: {{kubernetes: {{context: {cluster.context}, namespace: {cluster.namespace}, "
        f"pod: {pod}}}}}\n"
        f"sync: [{{local: {workspace.name}, remote: {REMOTE_ROOT}}}]\n" + extra
    )
    return path


def new_session(config: Path) -> Session:
    return Session(load_config(config.parent, config), QuietListener())


# -- peers ------------------------------------------------------------------------------


def tar_copy(cluster: Cluster, tree: Path, pod: str) -> None:
    if shutil.which("kubectl") is None:
        raise PeerFailed("kubectl is not installed on the host")
    reader = subprocess.Popen(["tar", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
    assert reader.stdout is not None
    extract = cluster.kubectl("exec", "-i", pod, "--", "tar", "-x", "-C", REMOTE_ROOT)
    try:
        writer = subprocess.run(
            extract, stdin=reader.stdout, capture_output=True, timeout=PEER_SECONDS
        )
    except subprocess.TimeoutExpired as error:
        reader.kill()
        raise PeerFailed(f"tar over kubectl exec took over {PEER_SECONDS} s") from error
    reader.stdout.close()
    if reader.wait() != 0 or writer.returncode != 0:
        raise PeerFailed(f"tar pipe failed: {writer.stderr.decode(errors='replace').strip()}")


def kubectl_cp(cluster: Cluster, tree: Path, pod: str) -> None:
    if shutil.which("kubectl") is None:
        raise PeerFailed("kubectl is not installed on the host")
    try:
        done = subprocess.run(
            cluster.kubectl("cp", f"{tree}/.", f"{pod}:{REMOTE_ROOT}"),
            capture_output=True,
            timeout=PEER_SECONDS,
        )
    except subprocess.TimeoutExpired as error:
        raise PeerFailed(f"kubectl cp took over {PEER_SECONDS} s") from error
    if done.returncode != 0:
        raise PeerFailed(f"kubectl cp failed: {done.stderr.decode(errors='replace').strip()}")


def timed(run: Callable[[], None]) -> float:
    os.sync()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# -- figures ----------------------------------------------------------------------------


def initial_sync(args: argparse.Namespace, cluster: Cluster, tree: Path) -> str:
    """Figure 1. Returns podlink's last pod, which holds the tree."""
    times: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    peers: dict[str, Callable[[Cluster, Path, str], None]] = {
        "tar": tar_copy,
        "kubectl_cp": kubectl_cp,
    }
    with contextlib.suppress(PeerFailed):  # untimed warm-up
        tar_copy(cluster, tree, cluster.create_pod())
    order = ["podlink", *peers]
    last = ""
    for repeat in range(args.repeats):
        for name in order[repeat % len(order) :] + order[: repeat % len(order)]:
            pod = cluster.create_pod()
            if name == "podlink":
                config = write_config(tree, cluster, f"{{name: {pod}}}")
                times.setdefault(name, []).append(asyncio.run(time_start(tree, config)))
                last = pod
            else:
                measure_peer(times, notes, name, functools.partial(peers[name], cluster, tree, pod))
            if name not in notes and (found := cluster.count_files(pod)) != args.files:
                raise RuntimeError(f"{name} left {found} files in {pod}, not {args.files}")
    podlink, tar = median(times["podlink"]), median(times.get("tar"))
    emit(
        {
            "bench": "initial_sync_kube",
            "files": args.files,
            "bytes": args.bytes,
            "podlink_s": podlink,
            "tar_s": tar,
            "kubectl_cp_s": median(times.get("kubectl_cp")),
            "ratio_podlink_to_tar": ratio(podlink, tar),
            "ratio_podlink_to_kubectl_cp": ratio(podlink, median(times.get("kubectl_cp"))),
            "target": "podlink <= 1.5x the tar stream",
            "met": None if podlink is None or tar is None else podlink <= 1.5 * tar,
            "runs": {name: [round(value, 3) for value in values] for name, values in times.items()},
        },
        notes,
    )
    return last


async def save_to_pod(args: argparse.Namespace, cluster: Cluster, tree: Path, pod: str) -> None:
    """Figure 2."""
    poller = await Poller.start_over(cluster.kubectl("exec", "-i", pod, "--"))
    results: dict[str, list[float] | None] = {}
    notes: dict[str, str] = {}
    try:
        session = new_session(write_config(tree, cluster, f"{{name: {pod}}}"))
        await session.start()
        try:
            results["podlink"] = await measure_edits(tree, poller, args.edits)
        finally:
            await session.stop()

        def remote(path: Path) -> str:
            return f"{REMOTE_ROOT}/{path.relative_to(tree).as_posix()}"

        async def copy(path: Path) -> None:
            await run_quiet(*cluster.kubectl("cp", str(path), f"{pod}:{remote(path)}"))

        async def exec_cat(path: Path) -> None:
            command = f"cat > {shlex.quote(remote(path))}"
            argv = cluster.kubectl("exec", "-i", pod, "--", "sh", "-c", command)
            await run_quiet(*argv, stdin_path=path)

        for name, deliver in (("kubectl_cp", copy), ("kubectl_exec_cat", exec_cat)):
            try:
                results[name] = await measure_edits(tree, poller, args.peer_edits, deliver)
            except PeerFailed as failure:
                results[name], notes[name] = None, str(failure)
    finally:
        await poller.close()
    record: dict[str, Any] = {"bench": "save_to_pod_kube", "edits": args.edits}
    for name, values in results.items():
        record[f"{name}_p50_ms"] = None if not values else round(percentile(values, 0.5), 2)
        record[f"{name}_p99_ms"] = None if not values else round(percentile(values, 0.99), 2)
    p50 = record["podlink_p50_ms"]
    record["ratio_kubectl_exec_cat_to_podlink_p50"] = ratio(
        record.get("kubectl_exec_cat_p50_ms"), p50
    )
    record["target"] = "podlink p50 <= 10 ms"
    record["met"] = None if p50 is None else p50 <= 10
    emit(record, notes)


async def pod_replaced(args: argparse.Namespace, cluster: Cluster, scratch: Path) -> None:
    """Figure 3."""
    workspace = scratch / "app"
    workspace.mkdir()
    (workspace / "serve.py").write_text(SERVE_SOURCE)
    marker = uuid.uuid4().hex
    (workspace / "marker.txt").write_text(marker)
    labels = {"app": "bench-web"}
    cluster.apps.create_namespaced_deployment(
        cluster.namespace,
        {
            "metadata": {"name": "bench-web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": cluster.pod_spec()},
            },
        },
    )
    pod = cluster.wait_running(label_selector="app=bench-web")
    run = 'run: {command: ["python3", "serve.py"]}\n'
    config = write_config(workspace, cluster, "{selector: app=bench-web}", run)
    session = new_session(config)
    await session.start()
    seconds: list[float] = []
    try:
        forward = await session.add_port(APP_PORT)
        url = f"http://127.0.0.1:{forward.local_port}/"
        await answer_from(url, pod, marker)
        for _ in range(args.repeats):
            running: dict[str, float] = {}
            old = pod

            def wait_for_replacement(old: str = old, running: dict[str, float] = running) -> str:
                for event in _watch.Watch().stream(
                    cluster.core.list_namespaced_pod,
                    cluster.namespace,
                    label_selector="app=bench-web",
                    timeout_seconds=READY_SECONDS,
                ):
                    found = event["object"]
                    if (
                        found.metadata.name != old
                        and found.status.phase == "Running"
                        and not found.metadata.deletion_timestamp
                    ):
                        running["at"] = time.monotonic()
                        return str(found.metadata.name)
                raise RuntimeError("no replacement pod ran")

            replacement = asyncio.create_task(asyncio.to_thread(wait_for_replacement))
            await asyncio.to_thread(
                cluster.core.delete_namespaced_pod, old, cluster.namespace, grace_period_seconds=0
            )
            pod = await replacement
            served_at = await answer_from(url, pod, marker)
            seconds.append(served_at - running["at"])
    finally:
        await session.stop()
    value = median(seconds)
    emit(
        {
            "bench": "pod_replaced_kube",
            "replacements": len(seconds),
            "running_to_serving_s": value,
            "target": "<= 5 s from the new pod Running to it serving the workspace's code",
            "met": None if value is None else value <= 5,
            "runs": [round(each, 3) for each in seconds],
        }
    )


async def answer_from(url: str, pod: str, marker: str, seconds: float = 60) -> float:
    """When ``url`` first answered from ``pod`` with ``marker`` (polled every 20 ms)."""
    expected = f"{pod} {marker}".encode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        body = await asyncio.to_thread(fetch, url)
        if body == expected:
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{url} never answered from {pod}")


def fetch(url: str) -> bytes | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body: bytes = response.read()
            return body
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--context", default=None)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--peer-edits", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    try:
        cluster = Cluster(args.context)
    except Exception as error:
        sys.exit(f"cannot reach the cluster ({error}): run scripts/kube-env up and set KUBECONFIG")
    try:
        with tempfile.TemporaryDirectory(prefix="podlink-bench-") as scratch_name:
            scratch = Path(scratch_name)
            os.environ["PODLINK_STATE_DIR"] = str(scratch / "state")
            tree = scratch / "tree"
            args.files, args.bytes = make_tree(
                tree, files=args.files, total_bytes=args.megabytes << 20
            )
            pod = initial_sync(args, cluster, tree)
            asyncio.run(save_to_pod(args, cluster, tree, pod))
            asyncio.run(pod_replaced(args, cluster, scratch))
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
