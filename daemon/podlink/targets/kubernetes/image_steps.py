"""The image of a ``build.image`` section, made ready for the cluster once per session.

Building needs nothing from the cluster, so the target starts it while its client connects;
a delivery that does not depend on the kubeconfig context (a registry push, a containerd
import) follows the build at once, the others (kind, minikube) once the context is known.

``podlink up`` starts it earlier still (``start_early``): as soon as it has read the
configuration, before it imports the session and the Kubernetes client (most of a second),
which then happen while the Docker Engine builds. The session's ``ImageSteps`` takes that
build over, with the lines it logged so far, instead of starting its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from podlink.config import Config, ImageBuildConfig, KubernetesTargetConfig
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
        early = _take_early(self._folder, self.image)
        if early is not None:
            self._built, self._delivered = early.join(self._on_log)
            return self._built
        return self._build_here()

    def _build_here(self) -> BuiltImage:
        built = build(self._folder, self.image, self._on_log)
        if not needs_context(self.image):
            deliver_built(self._folder, built, self.image, context="", on_log=self._on_log)
            self._delivered = True
        self._built = built
        return built

    @property
    def delivered(self) -> bool:
        """Whether the built image is where the cluster can pull it."""
        return self._delivered

    def reference_in_cluster(self, context: str) -> str:
        """The built image's reference once the cluster of ``context`` can run it. Blocking."""
        built = self._built or self.build()
        if not self._delivered:
            deliver_built(self._folder, built, self.image, context=context, on_log=self._on_log)
            self._delivered = True
        return built.reference


class _EarlyBuild:
    """``ImageSteps.build`` begun in a thread before any session exists; its log lines wait
    for the session that joins it."""

    def __init__(self, folder: Path, image: ImageBuildConfig) -> None:
        self.folder = folder
        self.image = image
        self._lock = threading.Lock()
        self._waiting_lines: list[str] = []
        self._on_log: Callable[[str], None] | None = None
        self._done = threading.Event()
        # Set by the first line (the build is under way in the Engine) or the end.
        self.under_way = threading.Event()
        self._result: tuple[BuiltImage, bool] | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name="podlink-early-build", daemon=True).start()

    def _run(self) -> None:
        steps = ImageSteps(self.folder, self.image, self._log)
        try:
            built = steps._build_here()
            self._result = (built, steps.delivered)
        except BaseException as error:  # handed to the session, which reports it
            self._error = error
        finally:
            self._done.set()
            self.under_way.set()

    def _log(self, line: str) -> None:
        self.under_way.set()
        with self._lock:
            if self._on_log is None:
                self._waiting_lines.append(line)
                return
            # Under the lock: a line never overtakes the waiting ones being handed over.
            self._on_log(line)

    def join(self, on_log: Callable[[str], None]) -> tuple[BuiltImage, bool]:
        """Send the lines so far and all later ones to ``on_log``; wait for the build.
        The image and whether it was delivered; raises what the build raised."""
        with self._lock:
            for line in self._waiting_lines:
                on_log(line)
            self._waiting_lines.clear()
            self._on_log = on_log
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None  # set whenever no error was
        return self._result


_early_builds: dict[Path, _EarlyBuild] = {}
_early_lock = threading.Lock()


# How long ``start_early`` waits for the Engine to have the build.
UNDER_WAY_SECONDS = 1.0


def start_early(folder: Path, image: ImageBuildConfig) -> None:
    """Begin building (and delivering, where that needs no context) the image of the
    workspace ``folder`` now, in a thread; the first ``ImageSteps.build`` for the same folder
    and image section joins it.

    Returns once the Engine has the build (or after a second): until then the thread imports
    the Docker SDK and hashes the context, which the caller's own imports would slow down,
    while afterwards it only waits on the Engine."""
    with _early_lock:
        early = _early_builds.get(folder.resolve())
        if early is None:
            early = _early_builds[folder.resolve()] = _EarlyBuild(folder, image)
    early.under_way.wait(UNDER_WAY_SECONDS)


def start_early_for(config: Config) -> None:
    """``start_early`` for the image a session of ``config`` will build before it deploys,
    if it builds one. Waits as ``start_early`` does."""
    image = config.build.image if config.build is not None else None
    if isinstance(config.target, KubernetesTargetConfig) and image and config.deploy:
        start_early(config.folder, image)


def _take_early(folder: Path, image: ImageBuildConfig) -> _EarlyBuild | None:
    with _early_lock:
        early = _early_builds.pop(folder.resolve(), None)
    if early is not None and early.image != image:
        # podlink.yaml changed in between: that build is not the one wanted.
        return None
    return early
