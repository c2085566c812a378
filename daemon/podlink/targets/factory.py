"""Build the target a configuration names."""

from __future__ import annotations

from podlink.config import Config, LocalTargetConfig
from podlink.targets.base import Target, TargetUnavailable
from podlink.targets.local import LocalTarget


def make_target(config: Config) -> Target:
    target = config.target
    if isinstance(target, LocalTargetConfig):
        return LocalTarget(config.folder / target.root)
    raise TargetUnavailable(
        f"the {config.target_kind} target is not available in this version of podlink; "
        "use `target: {local: {}}` in podlink.yaml for now"
    )
