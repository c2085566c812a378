"""How a built image gets to the cluster: chosen from the image name and the context."""

from __future__ import annotations

import pytest

from podlink.config import ImageBuildConfig
from podlink.targets.base import TargetUnavailable
from podlink.targets.kubernetes.delivery import choose_delivery, needs_context, registry_host


@pytest.mark.parametrize(
    ("repository", "host"),
    [
        ("127.0.0.1:5000/web", "127.0.0.1:5000"),
        ("localhost/web", "localhost"),
        ("ghcr.io/me/web", "ghcr.io"),
        ("me/web", None),  # a Docker Hub user, not a host
        ("web", None),
    ],
)
def test_the_registry_is_the_first_part_when_it_looks_like_a_host(
    repository: str, host: str | None
) -> None:
    assert registry_host(repository) == host


@pytest.mark.parametrize(
    ("name", "deliver", "context", "way"),
    [
        ("127.0.0.1:5000/web", "auto", "kind-dev", "registry"),
        ("web", "auto", "kind-dev", "kind"),
        ("web", "auto", "minikube", "minikube"),
        ("web", "registry", "kind-dev", "registry"),
        ("127.0.0.1:5000/web", "kind", "kind-dev", "kind"),
    ],
)
def test_auto_follows_the_name_then_the_context_and_an_explicit_way_wins(
    name: str, deliver: str, context: str, way: str
) -> None:
    image = ImageBuildConfig(name=name, deliver=deliver)  # type: ignore[arg-type]
    assert choose_delivery(image, context) == way


def test_containerd_is_auto_when_a_socket_is_named() -> None:
    image = ImageBuildConfig(name="web", containerd_socket="/run/k8s/containerd.sock")
    assert choose_delivery(image, "podlink-test") == "containerd"
    assert not needs_context(ImageBuildConfig(name="web", deliver="containerd"))


def test_without_any_way_the_error_says_what_to_set() -> None:
    image = ImageBuildConfig(name="web")
    assert needs_context(image)
    with pytest.raises(TargetUnavailable) as raised:
        choose_delivery(image, "prod-cluster")
    message = str(raised.value)
    assert "'prod-cluster'" in message
    assert "name a registry in build.image.name" in message
    assert "build.image.deliver" in message
