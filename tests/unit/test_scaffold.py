"""`podlink init`: what it detects in a project, and that the starter file always loads."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from podlink.config import (
    CONFIG_FILE_NAME,
    DockerBuildConfig,
    DockerTargetConfig,
    KubernetesTargetConfig,
    LocalTargetConfig,
    PortConfig,
    load_config,
)
from podlink.scaffold import detect_project, render_starter_config, write_starter_config

DEPLOYMENT = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {app: web, tier: api}
  template:
    metadata: {labels: {app: web, tier: api, version: v1}}
    spec:
      containers:
        - name: server
          image: web:dev
          workingDir: /srv/web
          ports: [{containerPort: 8000}, {containerPort: 9090}]
        - name: sidecar
          image: proxy
"""


def write(folder: Path, relative: str, text: str = "") -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------
# Project layouts, each a function that fills a folder.


def empty_project(folder: Path) -> None:
    pass


def kubernetes_project(folder: Path) -> None:
    write(folder, "deploy/k8s/web.yaml", DEPLOYMENT)
    write(folder, "app/__main__.py", "print('hi')\n")
    write(folder, "tests/test_app.py")


def kubernetes_project_without_python(folder: Path) -> None:
    write(folder, "k8s.yml", DEPLOYMENT)


def dockerfile_project(folder: Path) -> None:
    write(
        folder,
        "Dockerfile",
        """\
        FROM python:3.12-slim AS base
        WORKDIR /code
        # EXPOSE 1111 in a comment does not count
        EXPOSE 8000/tcp $PORT \\
               9000
        CMD ["python", "main.py"]
        """,
    )
    write(folder, "main.py")
    write(folder, "pytest.ini", "[pytest]\n")


def compose_project(folder: Path) -> None:
    write(
        folder,
        "compose.yaml",
        """\
        services:
          api:
            image: api:dev
            container_name: api-dev
            working_dir: /work
            ports: ["127.0.0.1:8080:80", "5000", 7000, {target: 6000, published: 16000}]
          db:
            image: postgres
        """,
    )
    write(folder, "app.py")


def compose_project_without_container_name(folder: Path) -> None:
    write(folder, "docker-compose.yml", "services:\n  worker:\n    image: w\n")


def local_project(folder: Path) -> None:
    write(folder, "main.py")
    write(folder, "pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-q'\n")


LAYOUTS: dict[str, Callable[[Path], None]] = {
    "empty": empty_project,
    "kubernetes": kubernetes_project,
    "kubernetes-without-python": kubernetes_project_without_python,
    "dockerfile": dockerfile_project,
    "compose": compose_project,
    "compose-without-container-name": compose_project_without_container_name,
    "local": local_project,
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "My Shop"
    folder.mkdir()
    return folder


# ---------------------------------------------------------------------------------------
# Detection.


def test_an_empty_folder_has_no_hints(project: Path) -> None:
    hints = detect_project(project)

    assert hints.dockerfile is None
    assert hints.compose_file is None
    assert hints.kubernetes_manifests == ()
    assert hints.deployment_name is None
    assert hints.python_entry is None
    assert hints.run_command is None
    assert hints.test_command is None


def test_detects_a_deployment_and_its_first_container(project: Path) -> None:
    kubernetes_project(project)

    hints = detect_project(project)

    assert hints.kubernetes_manifests == (Path("deploy/k8s/web.yaml"),)
    assert hints.deployment_name == "web"
    assert hints.deployment_namespace == "shop"
    assert hints.pod_labels == (("app", "web"), ("tier", "api"))
    assert hints.container_name == "server"
    assert hints.container_ports == (8000, 9090)
    assert hints.container_workdir == "/srv/web"
    assert hints.python_entry == Path("app/__main__.py")
    assert hints.run_command == ("python3", "-m", "app")
    assert hints.test_command == ("python3", "-m", "pytest")


def test_manifest_search_skips_tool_folders_deep_folders_and_broken_files(project: Path) -> None:
    write(project, "a/b/c/shallow-enough.yaml", "kind: Pod\nmetadata: {name: p}\n")
    write(project, "a/b/c/d/too-deep.yaml", "kind: Pod\n")
    write(project, "node_modules/pkg/deploy.yaml", "kind: Deployment\n")
    write(project, ".venv/lib/deploy.yaml", "kind: Deployment\n")
    write(project, ".git/deploy.yaml", "kind: Deployment\n")
    write(project, "charts/templates/deploy.yaml", "kind: Deployment\nname: {{ .Values.x }\n")
    write(project, "config/settings.yaml", "kind: ConfigMap\n")
    write(project, "sets.yml", "kind: StatefulSet\nmetadata: {name: db}\n")
    (project / "binary.yaml").write_bytes(b"\xff\xfe\x00")

    hints = detect_project(project)

    # A folder's own files come before those of its subfolders.
    assert hints.kubernetes_manifests == (Path("sets.yml"), Path("a/b/c/shallow-enough.yaml"))
    # Only a Deployment makes a Kubernetes target; a Pod or StatefulSet is just listed.
    assert hints.deployment_name is None


def test_detects_a_dockerfile_with_its_ports_and_workdir(project: Path) -> None:
    dockerfile_project(project)

    hints = detect_project(project)

    assert hints.dockerfile == Path("Dockerfile")
    assert hints.dockerfile_ports == (8000, 9000)
    assert hints.dockerfile_workdir == "/code"
    assert hints.run_command == ("python3", "main.py")
    assert hints.test_command == ("python3", "-m", "pytest")


def test_detects_the_first_compose_service(project: Path) -> None:
    compose_project(project)

    hints = detect_project(project)

    assert hints.compose_file == Path("compose.yaml")
    assert hints.compose_service == "api"
    assert hints.compose_container == "api-dev"
    assert hints.compose_container_named
    assert hints.compose_ports == (80, 5000, 7000, 6000)
    assert hints.compose_workdir == "/work"
    assert hints.run_command == ("python3", "app.py")


def test_a_compose_service_without_container_name_gets_composes_default_name(
    project: Path,
) -> None:
    compose_project_without_container_name(project)

    hints = detect_project(project)

    assert hints.compose_file == Path("docker-compose.yml")
    assert hints.compose_container == "myshop-worker-1"
    assert not hints.compose_container_named


def test_a_broken_compose_file_is_only_noted(project: Path) -> None:
    write(project, "compose.yaml", "services: [\n")

    hints = detect_project(project)

    assert hints.compose_file == Path("compose.yaml")
    assert hints.compose_container is None


@pytest.mark.parametrize(
    ("files", "entry", "command"),
    [
        (["app/__main__.py", "main.py"], "app/__main__.py", ("python3", "-m", "app")),
        (
            ["service/__main__.py", "tests/__main__.py"],
            "service/__main__.py",
            ("python3", "-m", "service"),
        ),
        (["main.py", "app.py"], "main.py", ("python3", "main.py")),
        (["app.py"], "app.py", ("python3", "app.py")),
        (["setup.py"], None, None),
    ],
)
def test_python_entry_guess(
    project: Path, files: list[str], entry: str | None, command: tuple[str, ...] | None
) -> None:
    for name in files:
        write(project, name)

    hints = detect_project(project)

    assert hints.python_entry == (Path(entry) if entry else None)
    assert hints.run_command == command


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("tests/test_x.py", ""),
        ("test/test_x.py", ""),
        ("conftest.py", ""),
        ("pytest.ini", "[pytest]\n"),
        ("setup.cfg", "[tool:pytest]\n"),
        ("tox.ini", "[pytest]\n"),
        ("pyproject.toml", "[tool.pytest.ini_options]\n"),
    ],
)
def test_pytest_is_guessed_from_tests_or_its_config(project: Path, name: str, text: str) -> None:
    write(project, name, text)

    assert detect_project(project).test_command == ("python3", "-m", "pytest")


def test_no_pytest_guess_without_a_sign_of_it(project: Path) -> None:
    write(project, "pyproject.toml", "[project]\nname = 'x'\n")

    assert detect_project(project).test_command is None


# ---------------------------------------------------------------------------------------
# The starter file.


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
def test_the_starter_file_loads_for_every_layout(
    project: Path, layout: Callable[[Path], None]
) -> None:
    layout(project)

    path = write_starter_config(project)

    assert path == project / CONFIG_FILE_NAME
    assert path.read_text() == render_starter_config(project)
    config = load_config(project)
    assert config.path == path.resolve()
    assert ".podlink/" in config.sync[0].exclude


def test_kubernetes_starter_selects_the_deployments_pods_in_dev_mode(project: Path) -> None:
    kubernetes_project(project)
    write_starter_config(project)

    config = load_config(project)

    assert isinstance(config.target, KubernetesTargetConfig)
    assert config.target.namespace == "shop"
    assert config.target.pod.selector == "app=web,tier=api"
    assert config.target.container == "server"
    assert config.target.dev_mode is not None
    assert config.target.dev_mode.deployment == "web"
    assert config.target.dev_mode.command == ("sleep", "infinity")
    assert config.sync[0].remote == "/srv/web"
    assert config.ports == (PortConfig(remote_port=8000), PortConfig(remote_port=9090))
    assert config.run is not None
    assert config.run.command == ("python3", "-m", "app")
    assert config.test is not None
    # The manifest that holds the Deployment is applied before the pod is picked.
    assert config.deploy is not None
    assert config.deploy.manifests == ("deploy/k8s/web.yaml",)


def test_kubernetes_starter_builds_the_dockerfile_into_the_image_the_deployment_runs(
    project: Path,
) -> None:
    kubernetes_project(project)
    write(project, "Dockerfile", "FROM python:3.12-slim\nWORKDIR /srv/web\n")

    text = render_starter_config(project)
    write_starter_config(project)
    config = load_config(project)

    assert config.build is not None and config.build.image is not None
    assert config.build.image.name == "web"  # web:dev without its tag
    assert config.build.image.dockerfile == "Dockerfile"
    assert config.build.command == ()
    # Says what it assumed, and how the image reaches the cluster.
    assert "Assumed: Dockerfile builds the image that container server of" in text
    assert "loaded into a kind or minikube cluster" in text


def test_kubernetes_starter_deploys_the_first_overlay_of_a_kustomization(project: Path) -> None:
    kubernetes_project(project)
    write(project, "deploy/k8s/kustomization.yaml", "resources: [web.yaml]\n")
    overlay = "resources: [../../k8s]\nnamePrefix: {}-\n"
    write(project, "deploy/overlays/prod/kustomization.yaml", overlay.format("prod"))
    write(project, "deploy/overlays/dev/kustomization.yaml", overlay.format("dev"))

    text = render_starter_config(project)
    write_starter_config(project)
    config = load_config(project)

    assert detect_project(project).kustomizations == (
        Path("deploy/overlays/dev"),
        Path("deploy/overlays/prod"),
    )
    assert config.deploy is not None
    assert config.deploy.manifests == ("deploy/overlays/dev",)
    assert "Assumed: the kustomization in deploy/overlays/dev is the one to deploy" in text
    assert "Also here: deploy/overlays/prod." in text


def test_a_kubernetes_starter_without_a_dockerfile_builds_nothing(project: Path) -> None:
    kubernetes_project(project)
    write_starter_config(project)

    assert load_config(project).build is None


def test_only_a_kubernetes_starter_deploys(project: Path) -> None:
    dockerfile_project(project)
    write_starter_config(project)
    assert load_config(project).deploy is None


def test_kubernetes_starter_leaves_dev_mode_off_without_a_run_command(project: Path) -> None:
    kubernetes_project_without_python(project)

    text = render_starter_config(project)
    write_starter_config(project)
    config = load_config(project)

    assert isinstance(config.target, KubernetesTargetConfig)
    assert config.target.dev_mode is None
    assert "# devMode: {deployment: web" in text
    assert config.run is None


def test_dockerfile_starter_builds_a_dev_container(project: Path) -> None:
    dockerfile_project(project)
    write_starter_config(project)

    config = load_config(project)

    assert config.target == DockerTargetConfig(
        build=DockerBuildConfig(context=".", dockerfile="Dockerfile")
    )
    assert config.sync[0].remote == "/code"
    assert config.ports == (PortConfig(remote_port=8000), PortConfig(remote_port=9000))
    assert config.run is not None
    assert config.run.command == ("python3", "main.py")


@pytest.mark.parametrize("workdir", ["/", "/usr/src", "/root", "/tmp"])
def test_a_system_folder_as_workdir_is_not_made_the_sync_root(project: Path, workdir: str) -> None:
    write(project, "Dockerfile", f"FROM python:3.12-slim\nWORKDIR {workdir}\n")
    write_starter_config(project)

    config = load_config(project)

    assert config.sync[0].remote == "/app"


def test_compose_starter_attaches_to_the_services_container(project: Path) -> None:
    compose_project(project)
    write_starter_config(project)

    config = load_config(project)

    assert config.target == DockerTargetConfig(container="api-dev")
    assert config.sync[0].remote == "/work"
    assert [port.remote_port for port in config.ports] == [80, 5000, 7000, 6000]


def test_compose_starter_notes_a_guessed_container_name(project: Path) -> None:
    compose_project_without_container_name(project)

    text = render_starter_config(project)

    assert "container: myshop-worker-1" in text
    assert "docker ps" in text


def test_local_starter_keeps_the_other_targets_as_comments(project: Path) -> None:
    local_project(project)

    text = render_starter_config(project)
    write_starter_config(project)
    config = load_config(project)

    assert config.target == LocalTargetConfig(root=".podlink/target")
    assert config.sync[0].remote == "/app"
    assert config.ports == ()
    assert config.test is not None
    assert "  # docker:" in text
    assert "  # kubernetes:" in text


def test_a_dockerfile_takes_precedence_over_a_compose_file(project: Path) -> None:
    dockerfile_project(project)
    compose_project(project)
    write_starter_config(project)

    config = load_config(project)

    assert isinstance(config.target, DockerTargetConfig)
    assert config.target.build is not None


def test_odd_names_are_quoted_so_the_file_still_loads(project: Path) -> None:
    write(
        project,
        "deploy.yaml",
        """\
        kind: Deployment
        metadata: {name: "yes"}
        spec:
          selector: {matchLabels: {"app.kubernetes.io/name": "on", enabled: true}}
          template: {spec: {containers: [{name: "0x10", workingDir: "/$HOME/app"}]}}
        """,
    )
    write(project, "main.py")
    write_starter_config(project)

    config = load_config(project)

    assert isinstance(config.target, KubernetesTargetConfig)
    assert config.target.pod.selector == "app.kubernetes.io/name=on,enabled=true"
    assert config.target.container == "0x10"
    assert config.target.dev_mode is not None
    assert config.target.dev_mode.deployment == "yes"
    assert config.sync[0].remote == "/app"


# ---------------------------------------------------------------------------------------
# Writing.


def test_an_existing_file_is_kept_without_force(project: Path) -> None:
    existing = write(project, CONFIG_FILE_NAME, "version: 1  # mine\n")

    with pytest.raises(FileExistsError, match="--force"):
        write_starter_config(project)

    assert existing.read_text() == "version: 1  # mine\n"


def test_an_existing_file_is_replaced_with_force(project: Path) -> None:
    existing = write(project, CONFIG_FILE_NAME, "version: 1  # mine\n")

    path = write_starter_config(project, force=True)

    assert path == existing
    assert existing.read_text() == render_starter_config(project)


COMPOSE_DATABASE_FIRST = """\
services:
  db:
    image: postgres:16
    container_name: shop-db
    ports: ["5432:5432"]
  cache:
    image: redis:7
  web:
    build: .
    container_name: shop-web
    ports: ["8000:8000"]
    volumes: ["./:/srv/shop", "media:/srv/media"]
"""


def test_init_picks_the_compose_service_that_builds_from_and_mounts_this_folder(
    project: Path,
) -> None:
    write(project, "compose.yaml", COMPOSE_DATABASE_FIRST)

    hints = detect_project(project)
    text = render_starter_config(project)
    config = load_config(project) if write_starter_config(project) else None

    assert hints.compose_service == "web"
    assert hints.compose_container == "shop-web"
    assert hints.compose_ports == (8000,)
    assert hints.compose_workdir == "/srv/shop"  # where the folder is mounted
    assert "service web: it builds from this folder" in text
    assert "not db, the first service" in text
    assert config is not None and isinstance(config.target, DockerTargetConfig)
    assert config.target.container == "shop-web"
    assert config.sync[0].remote == "/srv/shop"


def test_init_picks_a_compose_service_that_only_mounts_this_folder(project: Path) -> None:
    write(
        project,
        "compose.yaml",
        "services:\n  db:\n    image: postgres\n  api:\n    image: python:3.12\n"
        "    volumes:\n      - {type: bind, source: ., target: /code}\n",
    )

    hints = detect_project(project)

    assert (hints.compose_service, hints.compose_workdir) == ("api", "/code")
    assert "service api: it mounts this folder at /code" in render_starter_config(project)


DEPLOYMENT_WITH_SIDECAR_FIRST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: istio-proxy
          image: istio/proxyv2
          ports: [{containerPort: 15090}]
        - name: app
          image: shop
          workingDir: /srv/app
          ports: [{containerPort: 8000}]
"""


def test_init_skips_a_known_sidecar_for_the_app_container(project: Path) -> None:
    write(project, "deploy/web.yaml", DEPLOYMENT_WITH_SIDECAR_FIRST)

    hints = detect_project(project)
    text = render_starter_config(project)
    write_starter_config(project)
    config = load_config(project)

    assert (hints.container_name, hints.container_workdir) == ("app", "/srv/app")
    assert hints.container_ports == (8000,)
    assert "istio-proxy is a sidecar" in text
    assert isinstance(config.target, KubernetesTargetConfig)
    assert config.target.container == "app"
    assert config.sync[0].remote == "/srv/app"
