"""The targets the same scenarios run against, and how a test looks inside each of them.

Docker tests need a real Docker Engine: `scripts/docker-env` starts one and builds the test
image. When the engine cannot be reached they fail; a person may set PODLINK_SKIP_DOCKER=1 to
skip them instead (CI never does). Kubernetes tests run against the API server double, whose
pods are containers on that engine, or a real cluster (tests/kube_cluster.py).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from tests.helpers import descendants, tree_listing

if TYPE_CHECKING:
    from tests.kube_cluster import PodShell

TEST_IMAGE = "podlink-test-python:bookworm"
TEST_LABEL = "podlink.test"
TARGET_KINDS = ("local", "docker", "kubernetes")


class TargetProbe(Protocol):
    kind: str

    def config_section(self) -> str:
        """The `target:` block of podlink.yaml for this target."""

    def listing(self, remote: str = "/app") -> dict[str, Any]:
        """``tree_listing`` of a folder in the target."""

    def read(self, remote: str) -> bytes: ...

    def exists(self, remote: str) -> bool: ...

    def http_get(self, port: int, path: str) -> dict[str, Any]:
        """GET from inside the target (its own loopback), JSON-decoded."""

    def leftover_processes(self, daemon_pid: int) -> list[str]:
        """Processes podlink started that are still alive."""


class LocalProbe:
    kind = "local"

    def __init__(self, workspace: Path) -> None:
        self.root = workspace / ".podlink" / "target"

    def config_section(self) -> str:
        return "target:\n  local:\n    root: .podlink/target\n"

    def _path(self, remote: str) -> Path:
        return self.root / remote.lstrip("/")

    def listing(self, remote: str = "/app") -> dict[str, Any]:
        return tree_listing(self._path(remote))

    def read(self, remote: str) -> bytes:
        return self._path(remote).read_bytes()

    def exists(self, remote: str) -> bool:
        return os.path.lexists(self._path(remote))

    def http_get(self, port: int, path: str) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            result: dict[str, Any] = json.loads(reply.read())
            return result

    def leftover_processes(self, daemon_pid: int) -> list[str]:
        return [str(pid) for pid in descendants(daemon_pid)]


class DockerProbe:
    kind = "docker"

    def __init__(self, container: Any) -> None:
        self.container = container

    def config_section(self) -> str:
        return f"target:\n  docker:\n    container: {self.container.name}\n"

    def _run(self, *argv: str) -> str:
        code, output = self.container.exec_run(list(argv))
        text = output.decode(errors="replace")
        assert code == 0, f"{argv} failed in the container: {text}"
        return str(text)

    def listing(self, remote: str = "/app") -> dict[str, Any]:
        stream, _ = self.container.get_archive(remote)
        with tempfile.TemporaryDirectory() as scratch:
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                archive.extractall(scratch, filter="tar")
            return tree_listing(Path(scratch) / Path(remote).name)

    def read(self, remote: str) -> bytes:
        stream, _ = self.container.get_archive(remote)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.extractfile(archive.getmembers()[0])
            assert member is not None
            return member.read()

    def exists(self, remote: str) -> bool:
        code, _ = self.container.exec_run(["test", "-e", remote, "-o", "-L", remote])
        return bool(code == 0)

    def http_get(self, port: int, path: str) -> dict[str, Any]:
        script = (
            "import sys, urllib.request;"
            f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{port}{path}',"
            " timeout=5).read().decode())"
        )
        result: dict[str, Any] = json.loads(self._run("python3", "-c", script))
        return result

    def leftover_processes(self, daemon_pid: int) -> list[str]:
        lines = self._run("ps", "-eo", "pid=,args=").splitlines()
        idle = ("docker-init", "sleep infinity", "ps -eo")
        return [line.strip() for line in lines if not any(word in line for word in idle)]


# tree_listing, run by the target's own python3 (any image the Kubernetes tests use has one).
LISTING_SCRIPT = """
import hashlib, json, os, stat, sys
root = sys.argv[1]
listing = {}
for folder, dirs, files in os.walk(root):
    for name in dirs + files:
        full = os.path.join(folder, name)
        relative = os.path.relpath(full, root)
        info = os.lstat(full)
        if stat.S_ISLNK(info.st_mode):
            listing[relative] = ["link", os.readlink(full)]
        elif stat.S_ISDIR(info.st_mode):
            listing[relative] = ["dir", stat.S_IMODE(info.st_mode)]
        else:
            with open(full, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            listing[relative] = ["file", stat.S_IMODE(info.st_mode), digest]
sys.stdout.write(json.dumps(listing))
"""

# Every process but this one, from /proc: slim images have no `ps`.
PROCESSES_SCRIPT = """
import os
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != os.getpid():
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                args = handle.read().replace(b"\\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if args:
            print(entry, args)
"""


class KubernetesProbe:
    """A pod, looked into through the exec subresource (a pod of the double or of a real
    cluster alike)."""

    kind = "kubernetes"

    def __init__(self, shell: PodShell, context: str) -> None:
        self.shell = shell
        self.context = context

    @property
    def pod(self) -> str:
        return self.shell.pod

    def config_section(self) -> str:
        return (
            "target:\n  kubernetes:\n"
            f"    context: {self.context}\n"
            f"    namespace: {self.shell.namespace}\n"
            f"    pod: {{name: {self.pod}}}\n"
        )

    def listing(self, remote: str = "/app") -> dict[str, Any]:
        found = json.loads(self.shell.check("python3", "-c", LISTING_SCRIPT, remote))
        return {path: tuple(info) for path, info in found.items()}

    def read(self, remote: str) -> bytes:
        return self.shell.check("cat", remote)

    def exists(self, remote: str) -> bool:
        code, _, _ = self.shell.run("sh", "-c", 'test -e "$1" || test -L "$1"', "sh", remote)
        return code == 0

    def http_get(self, port: int, path: str) -> dict[str, Any]:
        script = (
            "import sys, urllib.request;"
            f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{port}{path}',"
            " timeout=5).read().decode())"
        )
        result: dict[str, Any] = json.loads(self.shell.check("python3", "-c", script))
        return result

    def leftover_processes(self, daemon_pid: int) -> list[str]:
        lines = self.shell.check("python3", "-c", PROCESSES_SCRIPT).decode().splitlines()
        # What the pod runs of itself (the double's containers start under docker-init).
        idle = ("docker-init", "sleep infinity")
        return [line.strip() for line in lines if not any(word in line for word in idle)]


def docker_client() -> Any:
    """A client for a reachable engine, or the test fails (or skips when a person said so)."""
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
        client.images.get(TEST_IMAGE)
    except Exception as error:
        message = (
            f"Docker tests need a running engine with {TEST_IMAGE}: {error}. "
            "Run scripts/docker-env (scripts/test does), or set PODLINK_SKIP_DOCKER=1 to skip"
        )
        if os.environ.get("PODLINK_SKIP_DOCKER") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return client


def start_test_container(client: Any) -> Any:
    return client.containers.run(
        TEST_IMAGE,
        ["sleep", "infinity"],
        name=f"podlink-test-{uuid.uuid4().hex[:8]}",
        detach=True,
        init=True,
        labels={TEST_LABEL: "1"},
    )


# The targets the agent and forwards are tested on directly (Kubernetes has its own tests).
LOCAL_AND_DOCKER = ("local", "docker")


def container_for(kind: str) -> Any:
    """A fresh test container for "docker"; None for "local"."""
    return None if kind == "local" else start_test_container(docker_client())


def target_in(container: Any, scratch: Path) -> Any:
    """An unconnected target: the container's, or a local one below ``scratch``."""
    from podlink.config import DockerTargetConfig
    from podlink.targets.docker.target import DockerTarget
    from podlink.targets.local import LocalTarget

    if container is None:
        return LocalTarget(scratch / "target")
    return DockerTarget(DockerTargetConfig(container=container.name), scratch)
