"""The image of a ``build.image`` section, made ready for the cluster once per session.

Building needs nothing from the cluster, so the target starts it while its client connects;
a delivery that does not depend on the kubeconfig context (a registry push, a containerd
import) follows the build at once, the others (kind, minikube) once the context is known.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from podlink.config import ImageBuildConfig
from podlink.targets.kubernetes.build import BuiltImage
from podlink.targets.kubernetes.delivery import build, deliver_built, needs_context


class ImageSteps:
    def __init__(
        self, folder: Path, image: ImageBuildConfig, on_log: Callable[[str], None]
    ) -> None:
        self.image = image
        self._folder = folder
        self._on_log = on_log
        self._built: BuiltImage | None = None
        self._delivered = False

    def build(self) -> BuiltImage:
        """Build the image; deliver it too when the way does not depend on the context.
        Blocking."""
        built = build(self._folder, self.image, self._on_log)
        if not needs_context(self.image):
            deliver_built(self._folder, built, self.image, context="", on_log=self._on_log)
            self._delivered = True
        self._built = built
        return built

    def reference_in_cluster(self, context: str) -> str:
        """The built image's reference once the cluster of ``context`` can run it. Blocking."""
        built = self._built or self.build()
        if not self._delivered:
            deliver_built(self._folder, built, self.image, context=context, on_log=self._on_log)
            self._delivered = True
        return built.reference
