"""What a Kubernetes target puts in place before it looks for its pod: the image of
``build.image`` built and delivered, the ``deploy:`` manifests (rendered where they are a
kustomization or a helm release) applied with the image in them, their rollouts waited for.

The build needs nothing from the cluster, so it runs while the client connects and the
manifests are read; a deploy happens once per session (a reconnect finds it in place).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from podlink.config import DeployConfig, DeployImageConfig, ImageBuildConfig
from podlink.targets.kubernetes.build import BuiltImage
from podlink.targets.kubernetes.connection import ClusterConnection
from podlink.targets.kubernetes.image_steps import ImageSteps

if TYPE_CHECKING:
    from podlink.targets.kubernetes.deploy import Deployer, Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _PreparedDeploy:
    """The objects to apply (the built image not yet in place) and who applies them."""

    manifests: list[Manifest]
    deployer: Deployer


class WorkloadSetUp:
    def __init__(
        self,
        cluster: ClusterConnection,
        folder: Path,
        deploy: DeployConfig | None,
        image: ImageBuildConfig | None,
        on_log: Callable[[str], None],
    ) -> None:
        self._cluster = cluster
        self._folder = folder
        self._deploy = deploy
        self._deployed = False
        self._on_log = on_log
        self._image: ImageSteps | None = None
        if image is not None:
            self._image = ImageSteps(folder, image, on_log)

    async def put_in_place(self) -> None:
        """Connect the client; build, deliver and deploy on the first call. Raises
        ConfigError for a manifest that does not parse, TargetUnavailable for the rest."""
        building: asyncio.Future[BuiltImage] | None = None
        prepared: _PreparedDeploy | None = None
        if self._image is not None and self._deploy is not None and not self._deployed:
            # The build needs nothing from the cluster: it runs while the client connects.
            building = asyncio.ensure_future(asyncio.to_thread(self._image.build))
        try:
            if self._cluster.api is None:
                self._cluster.api = await asyncio.to_thread(self._cluster.open_client)
                if self._deploy is None or self._deployed:
                    # A deploy checks it without the typed client (``deploy``).
                    await asyncio.to_thread(self._cluster.check_namespace)
            if building is not None:
                # Reading the manifests and the cluster's resource list overlaps it too.
                prepared = await asyncio.to_thread(self._prepare)
        except BaseException:
            if building is not None:
                building.cancel()
            raise
        if building is not None:
            await building
        if self._deploy is not None and not self._deployed:
            # Once per session: a reconnect finds what was applied already in place.
            await asyncio.to_thread(self._apply, prepared or self._prepare())

    def deploy(self) -> None:
        """Apply the ``deploy:`` manifests and wait for their rollouts (``Deploys``).

        Blocking. Raises ConfigError for a manifest that does not parse (before the cluster
        is contacted), TargetUnavailable for what the cluster refuses."""
        if self._deploy is None:
            return
        self._apply(self._prepare())

    def _prepare(self) -> _PreparedDeploy:
        """What a deploy does before it needs the image: read (and render) the manifests,
        check the namespace, look up the API resource of each object. Blocking."""
        from podlink.targets.kubernetes import ledger
        from podlink.targets.kubernetes.deploy import Deployer, load_manifests

        assert self._deploy is not None
        if self._cluster.api is None:
            # Reads the kubeconfig only: helm needs the namespace before anything is sent.
            self._cluster.api = self._cluster.open_client()
        manifests = load_manifests(self._folder, self._deploy, self._cluster.namespace)
        self._cluster.check_namespace(untyped=True)
        deployer = Deployer(
            self._cluster.api,
            self._cluster.namespace,
            self._on_log,
            where=self._cluster.where(),
            on_created=functools.partial(ledger.record, self._folder),
        )
        deployer.look_up_kinds(manifests)
        return _PreparedDeploy(manifests, deployer)

    def _apply(self, prepared: _PreparedDeploy) -> None:
        """Put the built image in place, apply, wait for the rollouts. Blocking."""
        from podlink.targets.kubernetes.deploy import replace_image

        manifests = prepared.manifests
        if self._image is not None:
            reference = self._image.reference_in_cluster(self._cluster.context)
            substitution = DeployImageConfig(name=self._image.image.name, replace=reference)
            for manifest in manifests:
                replace_image(manifest.body, substitution)
        self._on_log(f"deploying {len(manifests)} objects to namespace {self._cluster.namespace}")
        prepared.deployer.deploy(manifests)
        self._deployed = True
