"""`podlink init`: look at a project and write a commented starter podlink.yaml.

Detection is best effort and never fails: unreadable or broken files are skipped. The
target is picked in this order: a Kubernetes Deployment in the manifests, a Dockerfile, a
compose file, and otherwise the local target. Every guessed value is checked before it is
written (ports in range, remote paths absolute) so that the starter file always loads.
"""

from podlink.scaffold.detect import ProjectHints, detect_project
from podlink.scaffold.render import render_starter_config, write_starter_config

__all__ = ["ProjectHints", "detect_project", "render_starter_config", "write_starter_config"]
