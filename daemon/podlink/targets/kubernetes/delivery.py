"""Getting a built image where the cluster's nodes can run it.

Four ways, picked by ``build.image.deliver`` (``auto``: by the image name and the
kubeconfig context):

* ``registry`` — ``docker push`` through the Engine, with the credentials of the Docker
  config (``docker login``). Chosen for a name with a registry host (``127.0.0.1:5000/web``,
  ``ghcr.io/me/web``). A tag the registry already has is not pushed again.
* ``kind`` — ``kind load docker-image`` into the cluster of a ``kind-NAME`` context.
* ``minikube`` — ``minikube image load`` into the profile a ``minikube`` context names.
* ``containerd`` — ``docker save`` piped into ``ctr images import`` on the node's
  containerd socket (namespace ``k8s.io``, the one the kubelet reads), for a single-node
  cluster on this machine.

What is pushed or imported goes into the workspace's ledger for ``podlink purge``. Every
call blocks.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from podlink.config import ImageBuildConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.kubernetes import ledger as kubernetes_ledger
from podlink.targets.kubernetes.build import BuiltImage
from podlink.targets.kubernetes.ledger import ImportedImage, PushedTag

CONTAINERD_NAMESPACE = "k8s.io"
# Status lines of a push worth a line in the log; the rest is byte progress.
PUSH_STATUSES = ("Pushed", "Layer already exists", "Mounted from")
LOAD_SECONDS = 600
DELETE_SECONDS = 30


def registry_host(repository: str) -> str | None:
    """The registry a repository names (``127.0.0.1:5000`` of ``127.0.0.1:5000/web``), if any."""
    first, slash, _ = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def needs_context(image: ImageBuildConfig) -> bool:
    """Whether the way to deliver ``image`` depends on the kubeconfig context."""
    if image.deliver == "auto":
        return registry_host(image.name) is None
    return image.deliver in ("kind", "minikube")


def choose_delivery(image: ImageBuildConfig, context: str) -> str:
    """The way to deliver ``image`` to the cluster of kubeconfig ``context``."""
    if image.deliver != "auto":
        return image.deliver
    if registry_host(image.name):
        return "registry"
    if context.startswith("kind-"):
        return "kind"
    if context == "minikube" or context.startswith("minikube-"):
        return "minikube"
    if image.containerd_socket:
        return "containerd"
    raise TargetUnavailable(
        f"podlink does not know how to get image {image.name!r} into the cluster of context "
        f"{context!r}: name a registry in build.image.name (e.g. 127.0.0.1:5000/web), or set "
        "build.image.deliver to kind, minikube or containerd (with containerdSocket)"
    )


def deliver(
    engine: Any,
    built: BuiltImage,
    image: ImageBuildConfig,
    *,
    context: str,
    folder: Path,
    on_log: Callable[[str], None],
) -> str:
    """Make ``built`` runnable by the cluster; returns the way it went."""
    way = choose_delivery(image, context)
    if way == "registry":
        _push(engine, built, folder, on_log)
    elif way == "kind":
        cluster = context.removeprefix("kind-") or "kind"
        _run_tool(["kind", "load", "docker-image", built.reference, "--name", cluster], way, on_log)
    elif way == "minikube":
        _run_tool(["minikube", "image", "load", built.reference, "-p", context], way, on_log)
    else:
        assert image.containerd_socket is not None  # config.py requires it
        _import(engine, built, image.containerd_socket, folder, on_log)
    return way


def _push(engine: Any, built: BuiltImage, folder: Path, on_log: Callable[[str], None]) -> None:
    import docker.errors

    host = registry_host(built.repository) or "docker.io"
    try:
        engine.api.inspect_distribution(built.reference)
    except docker.errors.DockerException:
        pass  # not there (or not readable): push it
    else:
        on_log(f"{built.reference} is in the registry already")
        return
    on_log(f"pushing {built.reference} …")
    digest = ""
    try:
        for message in engine.api.push(built.repository, tag=built.tag, stream=True, decode=True):
            error = message.get("error") or (message.get("errorDetail") or {}).get("message")
            if error:
                raise TargetUnavailable(_push_refused(built.reference, host, str(error)))
            status = str(message.get("status") or "")
            if status.startswith(PUSH_STATUSES):
                on_log(f"{message.get('id', '')}: {status}".lstrip(": "))
            aux = message.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
    except docker.errors.DockerException as error:
        raise TargetUnavailable(_push_refused(built.reference, host, str(error))) from error
    on_log(f"pushed {built.reference} ({digest or 'no digest reported'})")
    if digest:
        kubernetes_ledger.record(folder, PushedTag(built.reference, digest))


def _push_refused(reference: str, host: str, error: str) -> str:
    hint = "is the registry running, and is its address right in build.image.name?"
    lowered = error.lower()
    if "unauthorized" in lowered or "denied" in lowered or "authentication" in lowered:
        hint = f"log in first: `docker login {host}` (podlink uses the Docker config's credentials)"
    elif "http response to https client" in lowered:
        hint = (
            f"the registry speaks plain HTTP: add {host} to the Engine's insecure-registries "
            "(loopback addresses are allowed already)"
        )
    return f"pushing {reference} to {host} failed: {error.strip()}; {hint}"


def _run_tool(argv: list[str], way: str, on_log: Callable[[str], None]) -> None:
    if shutil.which(argv[0]) is None:
        raise TargetUnavailable(
            f"delivering the image with {way} needs the `{argv[0]}` command, which is not on "
            f"PATH; install it, or set build.image.deliver to another way"
        )
    on_log("$ " + " ".join(argv))
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=LOAD_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise TargetUnavailable(f"`{' '.join(argv)}` did not finish in {LOAD_SECONDS} s") from None
    for line in (done.stdout + done.stderr).splitlines():
        if line.strip():
            on_log(line)
    if done.returncode != 0:
        raise TargetUnavailable(
            f"`{' '.join(argv)}` failed with exit code {done.returncode}: "
            f"{done.stderr.strip() or done.stdout.strip()}"
        )


def _import(
    engine: Any, built: BuiltImage, socket: str, folder: Path, on_log: Callable[[str], None]
) -> None:
    import docker.errors

    ctr = shutil.which("ctr")
    if ctr is None:
        raise TargetUnavailable(
            "delivering the image to a containerd needs the `ctr` command (Debian: package "
            "containerd), which is not on PATH"
        )
    base = [ctr, "--address", socket, "-n", CONTAINERD_NAMESPACE, "images"]
    listed = subprocess.run(
        [*base, "ls", "-q"], capture_output=True, text=True, timeout=60, check=False
    )
    if listed.returncode != 0:
        raise TargetUnavailable(
            f"cannot reach the containerd at {socket}: {listed.stderr.strip()}; check "
            "build.image.containerdSocket (and that podlink may open it)"
        )
    names = set(listed.stdout.split())
    if built.reference in names or f"docker.io/library/{built.reference}" in names:
        on_log(f"{built.reference} is in the containerd at {socket} already")
        return
    on_log(f"importing {built.reference} into the containerd at {socket} …")
    process = subprocess.Popen(
        [*base, "import", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        for chunk in engine.images.get(built.reference).save(named=True):
            process.stdin.write(chunk)
    except (docker.errors.DockerException, BrokenPipeError) as error:
        process.kill()
        raise TargetUnavailable(f"exporting {built.reference}: {error}") from error
    finally:
        process.stdin.close()
    output = process.stdout.read().decode(errors="replace")
    if process.wait(timeout=LOAD_SECONDS) != 0:
        raise TargetUnavailable(f"importing {built.reference} into {socket}: {output.strip()}")
    on_log(f"imported {built.reference}")
    kubernetes_ledger.record(folder, ImportedImage(built.reference, socket))


def delete_pushed(tag: PushedTag) -> None:
    """Delete a pushed tag's manifest from its registry (its v2 API). Raises RuntimeError."""
    host = registry_host(tag.reference) or "registry-1.docker.io"
    repository = tag.reference.removeprefix(host + "/").rsplit(":", 1)[0]
    loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
    url = f"{'http' if loopback else 'https'}://{host}/v2/{repository}/manifests/{tag.digest}"
    request = urllib.request.Request(url, method="DELETE")
    try:
        with urllib.request.urlopen(request, timeout=DELETE_SECONDS):
            return
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return  # gone already
        hint = {
            401: "the registry wants credentials podlink does not send for deletes; delete "
            "it with the registry's own tools",
            405: "the registry does not allow deletes (distribution: storage.delete.enabled)",
        }.get(error.code, "")
        raise RuntimeError(
            f"the registry refused to delete {tag.reference} ({error.code} {error.reason})"
            + (f": {hint}" if hint else "")
        ) from error
    except OSError as error:
        raise RuntimeError(f"cannot reach the registry {host}: {error}") from error


def remove_imported(entry: ImportedImage) -> None:
    """Remove an imported image from its containerd. Raises RuntimeError."""
    ctr = shutil.which("ctr")
    if ctr is None:
        raise RuntimeError(f"removing {entry} needs the `ctr` command")
    names = [entry.reference, f"docker.io/library/{entry.reference}"]
    done = subprocess.run(
        [ctr, "--address", entry.socket, "-n", CONTAINERD_NAMESPACE, "images", "rm", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "not found" not in done.stderr:
        raise RuntimeError(f"removing {entry}: {done.stderr.strip()}")


def build(folder: Path, image: ImageBuildConfig, on_log: Callable[[str], None]) -> BuiltImage:
    """Build ``image`` on the local Docker Engine, unless its tag is there already."""
    from podlink.targets.kubernetes.build import build_image

    with _engine(image) as engine:
        return build_image(engine, folder, image, on_log)


def deliver_built(
    folder: Path,
    built: BuiltImage,
    image: ImageBuildConfig,
    *,
    context: str,
    on_log: Callable[[str], None],
) -> str:
    """Deliver what ``build`` made; the reference the manifests are to run."""
    with _engine(image) as engine:
        deliver(engine, built, image, context=context, folder=folder, on_log=on_log)
    return built.reference


@contextlib.contextmanager
def _engine(image: ImageBuildConfig) -> Iterator[Any]:
    from podlink.targets.docker.exec import EngineUnavailable, open_engine

    try:
        _, engine = open_engine()
    except EngineUnavailable as error:
        raise TargetUnavailable(f"building {image.name} needs a Docker Engine: {error}") from error
    try:
        yield engine
    finally:
        engine.close()
