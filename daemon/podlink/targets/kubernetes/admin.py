"""Housekeeping in a Kubernetes namespace for ``podlink purge``.

What podlink can leave behind in a cluster is a Deployment that dev mode patched and a
session that died never restored. The patch carries the original spec in an annotation
(``devmode``), so it can be put back from here, by anyone who may patch it. Every
call blocks: run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from podlink.config import KubernetesTargetConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.capabilities import Leftovers, LeftoversRemoved
from podlink.targets.kubernetes.cluster import explain_failure
from podlink.targets.kubernetes.devmode import (
    PatchedDeployment,
    patched_deployments,
    restore_deployment,
)
from podlink.targets.kubernetes.target import KubernetesTarget


class Namespace:
    """The configured namespace of a cluster, reached as a session would reach it."""

    def __init__(self, config: KubernetesTargetConfig, folder: Path) -> None:
        target = KubernetesTarget(config, folder=folder)
        self.api, self.name = target.open_api()
        self._where = target.where()

    def patched_deployments(self) -> list[PatchedDeployment]:
        try:
            return patched_deployments(self.api, self.name)
        except Exception as error:
            raise self._failure(error, "listing deployments", "list") from error

    def restore(self, deployment: PatchedDeployment) -> bool:
        """Put the Deployment back as it was before dev mode; False if it no longer was
        patched (a session restored it meanwhile)."""
        try:
            return restore_deployment(client.AppsV1Api(self.api), self.name, deployment.name)
        except TargetUnavailable:
            raise
        except Exception as error:
            attempted = f"restoring deployment {deployment.name}"
            raise self._failure(error, attempted, "patch") from error

    def close(self) -> None:
        self.api.close()

    def _failure(self, error: BaseException, attempted: str, verb: str) -> TargetUnavailable:
        return TargetUnavailable(
            explain_failure(
                error,
                attempted=f"{attempted} in namespace {self.name!r}",
                where=self._where,
                namespace=self.name,
                verb=verb,
                resource="deployments",
            )
        )


@dataclass
class DevModeLeftovers(Leftovers):
    """Deployments dev mode left patched in a kubernetes target's namespace."""

    namespace: Namespace | None = None
    deployments: list[PatchedDeployment] = field(default_factory=list)

    @classmethod
    def find(cls, config: KubernetesTargetConfig, folder: Path) -> DevModeLeftovers:
        found = cls(notes=["temporary files in a kubernetes target are not looked for"])
        if config.dev_mode is None:
            return found
        try:
            found.namespace = Namespace(config, folder)
            found.deployments = found.namespace.patched_deployments()
        except TargetUnavailable as error:
            found.notes.append(f"{error}; Deployments left in dev mode were not looked for")
        return found

    def lines(self) -> list[str]:
        return [f"restore {deployment}" for deployment in self.deployments]

    @property
    def restores(self) -> bool:
        return bool(self.deployments)

    def remove(self, say: Callable[[str], None]) -> LeftoversRemoved:
        removed = LeftoversRemoved()
        for deployment in self.deployments:
            assert self.namespace is not None
            try:
                if not self.namespace.restore(deployment):
                    continue  # its session restored it meanwhile
            except TargetUnavailable as error:
                removed.failures.append(str(error))
                continue
            say(f"restored deployment {deployment.name} in namespace {deployment.namespace}")
            removed.restored += 1
        return removed

    def close(self) -> None:
        if self.namespace is not None:
            self.namespace.close()
