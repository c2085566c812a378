"""Reaching the API server: which kubeconfig context and namespace a configuration means,
and one sentence on what failed, why and what to do when the cluster refuses or is away.

Shared by the target and by ``podlink purge`` (``admin``); nothing here looks for a pod.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from podlink.config import KubernetesTargetConfig
from podlink.targets.base import TargetUnavailable

# The client's config loaders are untyped functions in an otherwise typed package.
_loaders: Any = kube_config

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUEST_TIMEOUT = (10, 30)
HANDSHAKE_STATUS = re.compile(r"Handshake status (\d{3})")


@dataclass(frozen=True)
class ClusterSettings:
    """A client configuration for the cluster, and where it points (for messages)."""

    configuration: Any
    context: str
    namespace: str
    server: str


_models_loading = threading.Lock()
_models_loader: threading.Thread | None = None


def load_client_models_soon() -> None:
    """Start importing the client's API classes on a thread, once per process.

    Client 37 builds its pydantic models when an API class is first used: seconds of CPU
    that would otherwise sit on the path to the first request. Begun here, they overlap
    the local scan and an image build (which runs in the Docker Engine's process).
    """
    global _models_loader
    with _models_loading:
        if _models_loader is None:
            _models_loader = threading.Thread(
                target=lambda: (client.CoreV1Api, client.AppsV1Api),
                name="podlink-kube-models",
                daemon=True,
            )
            _models_loader.start()


def cluster_settings(config: KubernetesTargetConfig, kubeconfig: str | None) -> ClusterSettings:
    """The cluster ``config`` means: a kubeconfig context (``kubeconfig``, else ``KUBECONFIG``,
    else ``~/.kube/config``) or, with none, the pod's service account. Blocks on the files;
    raises TargetUnavailable saying what to set."""
    configuration = client.Configuration()
    context = config.context or ""
    namespace = config.namespace or "default"
    path = kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    files = [Path(p).expanduser() for p in path.split(os.pathsep) if p]
    if any(each.exists() for each in files):
        context, context_namespace = _load_kubeconfig(config, path, configuration)
        if not config.namespace:
            namespace = context_namespace
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            _loaders.load_incluster_config(client_configuration=configuration)
        except ConfigException as error:
            raise TargetUnavailable(f"cannot use the pod's service account: {error}") from error
        context = "in-cluster"
        if not config.namespace and SERVICE_ACCOUNT_NAMESPACE.exists():
            namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    else:
        raise TargetUnavailable(
            f"no kubeconfig at {path} and not running in a pod: set KUBECONFIG or "
            "create ~/.kube/config (your cluster's CLI writes it)"
        )
    # A dead API server must fail the attempt quickly: the session retries with backoff.
    configuration.retries = 0
    return ClusterSettings(configuration, context, namespace, str(configuration.host))


def _load_kubeconfig(
    config: KubernetesTargetConfig, path: str, configuration: Any
) -> tuple[str, str]:
    """Load the wanted context into ``configuration``; that context and its namespace."""
    try:
        contexts, active = _loaders.list_kube_config_contexts(config_file=path)
    except ConfigException as error:
        raise TargetUnavailable(f"cannot read the kubeconfig {path}: {error}") from error
    wanted = config.context or (active or {}).get("name", "")
    chosen = next((c for c in contexts or [] if c.get("name") == wanted), None)
    if chosen is None:
        names = ", ".join(c.get("name", "?") for c in contexts or []) or "none"
        raise TargetUnavailable(
            f"the kubeconfig {path} has no context {wanted!r} (it has: {names}); "
            "set target.kubernetes.context to one of them"
        )
    try:
        _loaders.load_kube_config(
            config_file=path, context=wanted, client_configuration=configuration
        )
    except (ConfigException, OSError) as error:
        raise TargetUnavailable(
            f"cannot use context {wanted!r} of the kubeconfig {path}: {error}"
        ) from error
    return wanted, (chosen.get("context") or {}).get("namespace") or "default"


def explain_failure(
    error: BaseException,
    *,
    attempted: str,
    where: str,
    namespace: str,
    verb: str = "",
    resource: str = "",
) -> str:
    """One sentence on what failed, why, and what to do, for the errors people hit."""
    status, message = status_of(error)
    if status == 401:
        return (
            f"{attempted}: the API server rejected the credentials ({where}): 401 Unauthorized. "
            "They may have expired: log in again (your cluster's CLI refreshes the kubeconfig)"
        )
    if status == 403:
        grant = (
            f"; ask for a Role in namespace {namespace!r} that grants verb {verb!r} on "
            f"resource {resource!r} (kubectl create role podlink --verb={verb} "
            f"--resource={resource} -n {namespace})"
            if verb
            else ""
        )
        return f"{attempted}: forbidden ({where}): {message}{grant}"
    if status:
        return f"{attempted}: the API server answered {status} ({where}): {message}"
    return (
        f"{attempted}: cannot reach the API server ({where}): {message}. "
        "Is the cluster running and the kubeconfig current?"
    )


def status_of(error: BaseException) -> tuple[int, str]:
    """The HTTP status and the Status message of a REST or WebSocket handshake failure."""
    if isinstance(error, ApiException):
        body = error.body
        status = int(error.status or 0)
        reason = str(error.reason or "")
        if not status and (match := HANDSHAKE_STATUS.search(reason)):
            status = int(match[1])
            body = reason.rsplit("-+-+-", 1)[-1].strip()
            if body.startswith(("b'", 'b"')):
                body = body[2:-1]
        if status:
            try:
                return status, str(json.loads(body or "{}").get("message") or reason)
            except (TypeError, ValueError, AttributeError):
                return status, reason
        return 0, reason.split("-+-+-")[0].strip() or type(error).__name__
    return 0, str(error) or type(error).__name__
