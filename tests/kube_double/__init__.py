"""A test double of the Kubernetes API server, for exercising the official client over the wire.

Not a Kubernetes: see ``server.py`` for what it serves and ``cluster.py`` for how tests drive
it. Pods are real Docker containers, so exec and port-forward do real work.
"""

from tests.kube_double.cluster import KubeApiDouble

__all__ = ["KubeApiDouble"]
