"""The Kubernetes target: a pod of a workload, reached through the API server.

``target`` implements the ``Target`` protocol; the other modules each own one part of
talking to the cluster: exec and port-forward streams, container logs, the dev-mode patch of
a Deployment, ``deploy:`` manifests, the reasons a pod is not running, and listing what
podlink left behind (for ``podlink purge``).
"""
