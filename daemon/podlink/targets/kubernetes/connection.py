"""One Kubernetes target's way to its cluster: the client, the context, the namespace, and
messages that say where a failure happened and what to grant."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from podlink.config import KubernetesTargetConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.kubernetes.cluster import REQUEST_TIMEOUT, cluster_settings, explain_failure


class ClusterConnection:
    def __init__(self, config: KubernetesTargetConfig, kubeconfig: str | None) -> None:
        self._config = config
        self._kubeconfig = kubeconfig
        self.api: Any = None
        self.configuration: Any = None
        self.context = config.context or ""
        self.namespace = config.namespace or "default"
        self.server = ""

    def open_client(self) -> Any:
        cluster = cluster_settings(self._config, self._kubeconfig)
        self.context, self.namespace = cluster.context, cluster.namespace
        self.server, self.configuration = cluster.server, cluster.configuration
        return client.ApiClient(cluster.configuration)

    def core(self) -> Any:
        if self.api is None:
            raise TargetUnavailable("the Kubernetes target is not connected")
        return client.CoreV1Api(self.api)

    @contextlib.contextmanager
    def stream_core(self) -> Iterator[Any]:
        """A CoreV1Api on an ApiClient of its own, for one exec or port-forward.

        The client's ``stream()`` and ``portforward()`` swap the ``request`` function of the
        ApiClient they are given while they open their WebSocket: a call made meanwhile on
        the same ApiClient from another thread (the pod watch's) would go to the WebSocket
        function and fail. The opened WebSocket does not need its ApiClient afterwards.
        """
        if self.api is None or self.configuration is None:
            raise TargetUnavailable("the Kubernetes target is not connected")
        api: Any = client.ApiClient(self.configuration)
        try:
            yield client.CoreV1Api(api)
        finally:
            api.close()

    def check_namespace(self, *, untyped: bool = False) -> None:
        """``untyped``: through the dynamic client, which needs none of the typed client's
        models (seconds to load): a deploy goes first and the models load meanwhile."""
        try:
            if untyped:
                from kubernetes import dynamic

                untyped_module: Any = dynamic
                namespaces = untyped_module.DynamicClient(self.api)
                kind = namespaces.resources.get(api_version="v1", kind="Namespace")
                namespaces.get(kind, name=self.namespace, _request_timeout=REQUEST_TIMEOUT)
            else:
                self.core().read_namespace(self.namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 403:
                return  # many developers may not read namespaces; the pod lookup tells more
            if error.status == 404:
                raise TargetUnavailable(
                    f"namespace {self.namespace!r} does not exist in {self.where()}; "
                    "set target.kubernetes.namespace (`kubectl get namespaces` lists them)"
                ) from error
            raise self.failure(
                error, f"looking up namespace {self.namespace!r}", "get", "namespaces"
            ) from error
        except Exception as error:
            raise self.failure(error, f"looking up namespace {self.namespace!r}") from error

    def where(self) -> str:
        return f"context {self.context or '(current)'}, API server {self.server or '?'}"

    def failure(
        self, error: BaseException, attempted: str, verb: str = "", resource: str = ""
    ) -> TargetUnavailable:
        return TargetUnavailable(
            explain_failure(
                error,
                attempted=attempted,
                where=self.where(),
                namespace=self.namespace,
                verb=verb,
                resource=resource,
            )
        )
