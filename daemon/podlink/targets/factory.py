"""Build the target a configuration names."""

from __future__ import annotations

from collections.abc import Callable

from podlink.config import Config, DockerTargetConfig, KubernetesTargetConfig, LocalTargetConfig
from podlink.targets.base import Target, TargetUnavailable
from podlink.targets.local import LocalTarget


def make_target(config: Config, on_log: Callable[[str], None]) -> Target:
    """The target for ``config``; ``on_log`` receives its set-up output (an image build,
    processes an earlier podlink left running)."""
    target = config.target
    if isinstance(target, LocalTargetConfig):
        return LocalTarget(config.folder / target.root, on_log)
    if isinstance(target, DockerTargetConfig):
        from podlink.targets.docker.target import DockerTarget

        return DockerTarget(target, config.folder, on_log)
    if isinstance(target, KubernetesTargetConfig):
        from podlink.targets.kubernetes.target import KubernetesTarget

        return KubernetesTarget(
            target,
            folder=config.folder,
            deploy=config.deploy,
            on_log=on_log,
            image=config.build.image if config.build is not None else None,
        )
    raise TargetUnavailable(
        f"the {config.target_kind} target is not available in this version of podlink; "
        "use a local or docker target in podlink.yaml for now"
    )
