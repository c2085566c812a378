"""Housekeeping in a Kubernetes namespace for ``podlink purge``.

What podlink can leave behind in a cluster is a Deployment that dev mode patched and a
session that died never restored, and what ``podlink up`` made for the workspace: the
objects it applied, the image tags it pushed or imported and the images it built, which the
workspace's ledger lists (``ledger``, removed by ``purge``). A dev mode patch carries the
original spec in an annotation (``devmode``), so it can be put back from here, by anyone who
may patch it. Every call blocks: run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from podlink.config import KubernetesTargetConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.capabilities import Leftovers, LeftoversRemoved
from podlink.targets.kubernetes.connection import ClusterConnection
from podlink.targets.kubernetes.devmode import (
    PatchedDeployment,
    patched_deployments,
    restore_deployment,
)
from podlink.targets.kubernetes.ledger import Ledger, read_ledger
from podlink.targets.kubernetes.purge import ledger_lines, remove_ledger


class Namespace:
    """The configured namespace of a cluster, reached as a session would reach it."""

    def __init__(self, config: KubernetesTargetConfig, kubeconfig: str | None = None) -> None:
        self._cluster = ClusterConnection(config, kubeconfig)
        self.api = self._cluster.open_client()
        self.name = self._cluster.namespace

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
        return self._cluster.failure(
            error, f"{attempted} in namespace {self.name!r}", verb, "deployments"
        )


@dataclass
class KubernetesLeftovers(Leftovers):
    """Deployments dev mode left patched in a kubernetes target's namespace, and what the
    workspace's ledger says ``podlink up`` applied, pushed, imported and built."""

    namespace: Namespace | None = None
    deployments: list[PatchedDeployment] = field(default_factory=list)
    ledger: Ledger | None = None
    folder: Path | None = None

    @classmethod
    def find(
        cls, config: KubernetesTargetConfig, folder: Path, kubeconfig: str | None = None
    ) -> KubernetesLeftovers:
        found = cls(notes=["temporary files in a kubernetes target are not looked for"])
        found.folder = folder
        made = read_ledger(folder)
        if not made.empty:
            found.ledger = made
        if config.dev_mode is None and not (made.objects):
            return found
        try:
            found.namespace = Namespace(config, kubeconfig)
            if config.dev_mode is not None:
                found.deployments = found.namespace.patched_deployments()
        except TargetUnavailable as error:
            found.notes.append(f"{error}; Deployments left in dev mode were not looked for")
            if made.objects:
                found.notes.append("the objects podlink applied were not removed")
                made.objects = []
        return found

    def lines(self) -> list[str]:
        made = ledger_lines(self.ledger) if self.ledger is not None else []
        return [*(f"restore {deployment}" for deployment in self.deployments), *made]

    def keep_in_use(self, user: str) -> list[str]:
        if self.ledger is None:
            return []
        made = self.ledger
        kept = [*made.objects, *made.pushed, *made.imported, *made.built]
        self.ledger = None
        return [f"kept {entry}: {user} uses it; --all removes it too" for entry in kept]

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
        if self.ledger is not None and self.folder is not None:
            api = self.namespace.api if self.namespace is not None else None
            removed.failures += remove_ledger(self.folder, self.ledger, api, say)
        return removed

    def close(self) -> None:
        if self.namespace is not None:
            self.namespace.close()
