"""podlink.yaml: the documented example, defaults, normalization, and one message per mistake.

Every rejected file must name the file, the line and the key, so each bad case states all
three.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import msgspec
import pytest

from podlink.config import (
    CONFIG_FILE_NAME,
    BuildConfig,
    CommandConfig,
    Config,
    ConfigError,
    DebugAttachConfig,
    DebugConfig,
    DeployConfig,
    DeployImageConfig,
    DevModeConfig,
    DockerBuildConfig,
    DockerTargetConfig,
    HelmReleaseConfig,
    ImageBuildConfig,
    KubernetesTargetConfig,
    LocalTargetConfig,
    PodSelectorConfig,
    PortConfig,
    RunConfig,
    SyncEntryConfig,
    load_config,
    parse_config,
)


def default_config(folder: Path) -> Config:
    """The configuration of a workspace with no podlink.yaml: local target, ``.`` -> /app."""
    return Config(folder=folder.resolve(), path=None)


# The example from the design notes, with every section in use.
DESIGN_EXAMPLE = """\
version: 1
target:                      # exactly one of local | docker | kubernetes
  docker:
    container: web-dev       # attach to this container, or create one:
    # image: python:3.12-slim
    # build: {context: ., dockerfile: Dockerfile}
  # kubernetes:
  #   context: kind-dev
  #   namespace: default
  #   pod: {selector: "app=web"}      # or {name: web-7d9c...}
  #   container: web
  #   devMode: {deployment: web, command: ["sleep", "infinity"]}
  # local:
  #   root: .podlink/target
sync:
  - local: .
    remote: /app
    mode: upload             # upload | two-way
    exclude: [".venv/", "node_modules/"]   # on top of .gitignore and .podlinkignore
ports: ["8000", "9000:8000"]  # remote 8000 -> local 8000 (or the next free port); 9000 -> 8000
run:
  command: ["python", "-m", "app"]
  restart: on-sync           # on-sync | never
  env: {APP_ENV: dev}
debug: {port: 5678, justMyCode: true}
test:  {command: ["python", "-m", "pytest"]}
build: {command: ["python", "-m", "compileall", "-q", "."]}
"""


def parse(text: str, folder: Path) -> Config:
    return parse_config(textwrap.dedent(text), path=folder / CONFIG_FILE_NAME, folder=folder)


# ---------------------------------------------------------------------------------------
# Good files.


def test_design_example_parses_every_section(tmp_path: Path) -> None:
    config = parse(DESIGN_EXAMPLE, tmp_path)

    assert config.folder == tmp_path.resolve()
    assert config.path == tmp_path / CONFIG_FILE_NAME
    assert config.version == 1
    assert config.target == DockerTargetConfig(container="web-dev")
    assert config.target_kind == "docker"
    assert config.sync == (
        SyncEntryConfig(
            local=".", remote="/app", mode="upload", exclude=(".venv/", "node_modules/")
        ),
    )
    assert config.ports == (
        PortConfig(remote_port=8000, local_port=None),
        PortConfig(remote_port=8000, local_port=9000),
    )
    assert config.run == RunConfig(
        command=("python", "-m", "app"), restart="on-sync", env={"APP_ENV": "dev"}
    )
    assert config.debug == DebugConfig(port=5678, just_my_code=True)
    assert config.test == CommandConfig(command=("python", "-m", "pytest"))
    assert config.build == BuildConfig(command=("python", "-m", "compileall", "-q", "."))


def test_kubernetes_target_with_every_key(tmp_path: Path) -> None:
    config = parse(
        """\
        target:
          kubernetes:
            context: kind-dev
            namespace: default
            pod: {selector: "app=web"}
            container: web
            devMode: {deployment: web, command: ["sleep", "infinity"], image: "web:dev"}
        """,
        tmp_path,
    )

    assert config.target == KubernetesTargetConfig(
        context="kind-dev",
        namespace="default",
        pod=PodSelectorConfig(selector="app=web"),
        container="web",
        dev_mode=DevModeConfig(deployment="web", command=("sleep", "infinity"), image="web:dev"),
    )
    assert config.target_kind == "kubernetes"


def test_docker_target_creating_from_a_dockerfile(tmp_path: Path) -> None:
    config = parse("target: {docker: {build: {dockerfile: dev.Dockerfile}}}", tmp_path)

    assert config.target == DockerTargetConfig(
        build=DockerBuildConfig(context=".", dockerfile="dev.Dockerfile")
    )


def test_a_minimal_file_takes_the_defaults(tmp_path: Path) -> None:
    config = parse("version: 1\n", tmp_path)

    assert config == msgspec.structs.replace(default_config(tmp_path), path=config.path)
    assert config.target == LocalTargetConfig(root=".podlink/target")
    assert config.target_kind == "local"
    assert config.sync == (SyncEntryConfig(local=".", remote="/app"),)
    assert config.ports == ()
    assert config.run is None
    assert config.debug == DebugConfig()
    assert config.test is None
    assert config.build is None


def test_default_config_has_no_file(tmp_path: Path) -> None:
    config = default_config(tmp_path)

    assert config.path is None
    assert config.folder == tmp_path.resolve()
    assert config.target_kind == "local"


def test_a_local_key_with_nothing_under_it_means_the_local_defaults(tmp_path: Path) -> None:
    config = parse("target:\n  local:\n", tmp_path)

    assert config.target == LocalTargetConfig()


def test_a_command_string_is_split_like_a_shell_would(tmp_path: Path) -> None:
    config = parse(
        """\
        run: {command: python -m app --name "my app"}
        test: {command: "python -m pytest -q"}
        build: {command: make}
        target: {kubernetes: {pod: {name: web-0}, devMode: {deployment: web, command: sleep 1d}}}
        """,
        tmp_path,
    )

    assert config.run is not None
    assert config.run.command == ("python", "-m", "app", "--name", "my app")
    assert config.test == CommandConfig(command=("python", "-m", "pytest", "-q"))
    assert config.build == BuildConfig(command=("make",))
    assert isinstance(config.target, KubernetesTargetConfig)
    assert config.target.dev_mode is not None
    assert config.target.dev_mode.command == ("sleep", "1d")


def test_numbers_and_booleans_in_commands_and_env_stay_as_written(tmp_path: Path) -> None:
    config = parse(
        """\
        run:
          command: [python3, -m, http.server, 8000]
          env: {PORT: 8000, DEBUG: yes, RATIO: 1.50, DAY: 2024-01-01}
        """,
        tmp_path,
    )

    assert config.run is not None
    assert config.run.command == ("python3", "-m", "http.server", "8000")
    assert config.run.env == {"PORT": "8000", "DEBUG": "yes", "RATIO": "1.50", "DAY": "2024-01-01"}


def test_ports_in_every_accepted_form(tmp_path: Path) -> None:
    # An unquoted 8080:59 is a base-60 number to YAML 1.1; it still means LOCAL:REMOTE.
    config = parse('ports: [8000, "8001", "9000:8000", 8080:59, " 7000 "]', tmp_path)

    assert config.ports == (
        PortConfig(remote_port=8000),
        PortConfig(remote_port=8001),
        PortConfig(remote_port=8000, local_port=9000),
        PortConfig(remote_port=59, local_port=8080),
        PortConfig(remote_port=7000),
    )


def test_remote_paths_are_normalized(tmp_path: Path) -> None:
    config = parse("sync: [{local: ., remote: /srv//app/./}]", tmp_path)

    assert config.sync[0].remote == "/srv/app"


def test_sibling_remotes_and_two_way_mode_are_fine(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "worker").mkdir()
    config = parse(
        """\
        sync:
          - {local: web, remote: /app, mode: two-way}
          - {local: worker, remote: /application, exclude: ["*.log"]}
        """,
        tmp_path,
    )

    assert [entry.remote for entry in config.sync] == ["/app", "/application"]
    assert config.sync[0].mode == "two-way"
    assert config.local_root(config.sync[1]) == (tmp_path / "worker").resolve()


def test_local_root_is_absolute_and_resolved(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "src")
    config = parse("sync: [{local: ./alias/../src/, remote: /app}]", tmp_path)

    assert config.local_root(config.sync[0]) == (tmp_path / "src").resolve()


def test_null_optional_sections_are_absent(tmp_path: Path) -> None:
    config = parse("run:\ntest:\nbuild:\ndebug:\n", tmp_path)

    assert (config.run, config.test, config.build) == (None, None, None)
    assert config.debug == DebugConfig()


# ---------------------------------------------------------------------------------------
# Bad files: each names the file, the line and the key.

BAD_FILES = [
    # --- YAML itself
    pytest.param(
        "version: 1\nsync:\n - local: .\n   remote: /app\n  mode: upload\n",
        5,
        None,
        "check the indentation",
        id="yaml-syntax",
    ),
    pytest.param("version: 1\nrun:\n\tcommand: x\n", 3, None, "tabs", id="yaml-tab"),
    pytest.param("", None, None, "the file is empty", id="empty"),
    pytest.param("# nothing yet\n\n", None, None, "the file is empty", id="only-comments"),
    pytest.param("- sync\n- run\n", 1, None, "must be a mapping", id="top-level-list"),
    pytest.param("just words\n", 1, None, "must be a mapping", id="top-level-scalar"),
    pytest.param("a: 1\n---\nb: 2\n", 2, None, "single document", id="two-documents"),
    pytest.param(
        "version: 1\nsync: []\nrun: {command: x}\nsync: []\n",
        4,
        "sync",
        "duplicate key, already given on line 2",
        id="duplicate-top-level-key",
    ),
    pytest.param(
        "run:\n  command: x\n  env: {A: 1}\n  command: y\n",
        4,
        "run.command",
        "already given on line 2",
        id="duplicate-nested-key",
    ),
    # --- unknown keys
    pytest.param("version: 1\nsnyc: []\n", 2, "snyc", "did you mean 'sync'?", id="unknown-top"),
    pytest.param(
        "target:\n  docker:\n    imag: python\n",
        3,
        "target.docker.imag",
        "did you mean 'image'?",
        id="unknown-nested",
    ),
    pytest.param(
        "sync:\n  - local: .\n    remot: /app\n",
        3,
        "sync[0].remot",
        "did you mean 'remote'?",
        id="unknown-in-list",
    ),
    pytest.param(
        "debug:\n  port: 5678\n  just_my_code: false\n",
        3,
        "debug.just_my_code",
        "write justMyCode",
        id="snake-case-key",
    ),
    pytest.param(
        "target:\n  k8s: {}\n", 2, "target.k8s", "local, docker, kubernetes", id="unknown-kind"
    ),
    pytest.param("docker: {image: x}\n", 1, "docker", "under target:", id="kind-at-top"),
    pytest.param("1: x\n", 1, "1", "unknown key '1'", id="non-string-key"),
    # --- wrong types
    pytest.param(
        "sync:\n  - local: .\n    remote: /app\n    exclude: .venv/\n",
        4,
        "sync[0].exclude",
        "expected a list of strings, got a string",
        id="exclude-string",
    ),
    pytest.param(
        "sync:\n  local: .\n",
        1,
        "sync",
        "expected a list of mappings, got a mapping",
        id="sync-mapping",
    ),
    pytest.param(
        'version: "1"\n', 1, "version", "expected an integer, got a string", id="version-string"
    ),
    pytest.param(
        "debug:\n  port: high\n",
        2,
        "debug.port",
        "expected an integer, got a string",
        id="debug-port-string",
    ),
    pytest.param(
        "debug: {justMyCode: 1}\n",
        1,
        "debug.justMyCode",
        "expected true or false, got an integer",
        id="bool-int",
    ),
    pytest.param(
        "run:\n  command: x\n  restart: nevr\n",
        3,
        "run.restart",
        "expected one of 'never', 'on-sync', got 'nevr' (did you mean 'never'?)",
        id="bad-literal",
    ),
    pytest.param(
        "sync:\n  - mode: twoway\n",
        2,
        "sync[0].mode",
        "did you mean 'two-way'?",
        id="bad-sync-mode",
    ),
    pytest.param(
        "run:\n  command: 5\n", 2, "run.command", "expected a command", id="command-number"
    ),
    pytest.param(
        "test:\n  command: [pytest, [x]]\n",
        2,
        "test.command[1]",
        "expected a string, got a list",
        id="command-word-list",
    ),
    pytest.param(
        "run:\n  restart: never\n",
        1,
        "run",
        "missing required key 'command'",
        id="run-without-command",
    ),
    pytest.param(
        "build:\n  command: make\n  env:\n    A: b\n    C:\n",
        5,
        "build.env.C",
        "has no value",
        id="env-null",
    ),
    pytest.param(
        "run:\n  command: x\n  env:\n    A: [1, 2]\n",
        4,
        "run.env.A",
        "expected a string, got a list",
        id="env-list",
    ),
    pytest.param(
        "run:\n  command: python -m 'app\n",
        2,
        "run.command",
        "No closing quotation",
        id="command-unbalanced-quote",
    ),
    # --- version
    pytest.param("version: 2\n", 1, "version", "version 2 is not supported", id="version-2"),
    # --- target
    pytest.param("version: 1\ntarget:\n", 2, "target", "give one of local", id="target-null"),
    pytest.param("target: {}\n", 1, "target", "give one of local", id="target-empty"),
    pytest.param(
        "target:\n  local: {}\n  docker:\n    image: python\n",
        3,
        "target.docker",
        "cannot be combined with local (line 2)",
        id="target-two-kinds",
    ),
    pytest.param(
        "target:\n  docker:\n    container: web\n    image: python\n",
        4,
        "target.docker.image",
        "cannot be combined with container (line 3)",
        id="docker-container-and-image",
    ),
    pytest.param(
        "target:\n  docker:\n    build: {}\n    container: web\n",
        4,
        "target.docker.container",
        "cannot be combined with build (line 3)",
        id="docker-build-and-container",
    ),
    pytest.param(
        "target:\n  docker: {}\n", 2, "target.docker", "give one of container", id="docker-empty"
    ),
    pytest.param(
        "target:\n  docker:\n", 2, "target.docker", "give one of container", id="docker-null"
    ),
    pytest.param(
        "target:\n  kubernetes:\n    pod:\n      name: web-0\n      selector: app=web\n",
        5,
        "target.kubernetes.pod.selector",
        "cannot be combined with name (line 4)",
        id="pod-name-and-selector",
    ),
    pytest.param(
        "target:\n  kubernetes:\n    pod: {}\n",
        3,
        "target.kubernetes.pod",
        "give one of name, selector",
        id="pod-empty",
    ),
    pytest.param(
        "target:\n  kubernetes:\n    namespace: dev\n",
        2,
        "target.kubernetes",
        "missing required key 'pod'",
        id="kubernetes-without-pod",
    ),
    pytest.param(
        "target:\n  kubernetes:\n",
        2,
        "target.kubernetes",
        "missing required key 'pod'",
        id="kubernetes-null",
    ),
    pytest.param(
        "target:\n  kubernetes:\n    pod: {name: a}\n    devMode:\n      deployment: web\n"
        "      command: []\n",
        6,
        "target.kubernetes.devMode.command",
        "the command is empty",
        id="dev-mode-empty-command",
    ),
    # --- sync
    pytest.param(
        "sync:\n  - local: ../elsewhere\n    remote: /app\n",
        2,
        "sync[0].local",
        "outside the workspace folder",
        id="local-dotdot",
    ),
    pytest.param(
        "sync:\n  - local: /etc\n", 2, "sync[0].local", "outside the workspace", id="local-abs"
    ),
    pytest.param(
        "sync:\n  - local: .\n    remote: app\n",
        3,
        "sync[0].remote",
        "must be an absolute path in the target, got 'app' (write /app)",
        id="remote-relative",
    ),
    pytest.param("sync:\n  - remote: ~/app\n", 2, "sync[0].remote", "full path", id="remote-home"),
    pytest.param(
        "sync:\n  - remote: 'C:\\app'\n", 2, "sync[0].remote", "POSIX", id="remote-windows"
    ),
    pytest.param(
        "sync:\n  - remote: /app/../etc\n",
        2,
        "sync[0].remote",
        "must not contain '..'",
        id="remote-dotdot",
    ),
    pytest.param(
        "sync:\n  - remote: /app\n  - remote: /app/\n",
        3,
        "sync[1].remote",
        "'/app' is also sync[0].remote (line 2)",
        id="remote-twice",
    ),
    pytest.param(
        "sync:\n  - remote: /app/src\n  - remote: /app\n",
        3,
        "sync[1].remote",
        "are nested",
        id="remote-nested",
    ),
    pytest.param(
        "sync:\n  - remote: /srv\n  - remote: /\n", 3, "sync[1].remote", "nested", id="root-nests"
    ),
    pytest.param("sync: []\n", 1, "sync", "needs at least one entry", id="sync-empty"),
    # --- ports
    pytest.param(
        'ports:\n  - "8000"\n  - "web"\n', 3, "ports[1]", "got 'web'", id="port-not-a-number"
    ),
    pytest.param(
        'ports: ["127.0.0.1:9000:8000"]\n',
        1,
        "ports[0]",
        "forwarded to localhost",
        id="port-with-address",
    ),
    pytest.param("ports: [0]\n", 1, "ports[0]", "port 0 is out of range", id="port-zero"),
    pytest.param(
        'ports:\n  - "70000"\n', 2, "ports[0]", "port 70000 is out of range", id="port-too-big"
    ),
    pytest.param(
        'ports:\n  - "70000:80"\n', 2, "ports[0]", "out of range 1-65535", id="local-too-big"
    ),
    pytest.param("ports: [80.5]\n", 1, "ports[0]", "got a number", id="port-float"),
    pytest.param("ports: [true]\n", 1, "ports[0]", "got true (a boolean)", id="port-bool"),
    pytest.param("ports: 8000\n", 1, "ports", "a list of ports", id="ports-not-a-list"),
    pytest.param(
        'ports:\n  - "8000"\n  - "8000:9000"\n',
        3,
        "ports[1]",
        "local port 8000 is already used by ports[0] (line 2)",
        id="duplicate-local-port",
    ),
    pytest.param(
        'ports:\n  - "9000:8000"\n  - 9000\n',
        3,
        "ports[1]",
        "local port 9000 is already used",
        id="duplicate-local-port-mixed",
    ),
    # --- commands
    pytest.param("run:\n  command: []\n", 2, "run.command", "is empty", id="run-empty"),
    pytest.param("test:\n  command: ''\n", 2, "test.command", "is empty", id="test-empty-string"),
    pytest.param("build: {command: ['']}\n", 1, "build.command", "is empty", id="build-empty-word"),
    # --- debug
    pytest.param("debug:\n  port: 0\n", 2, "debug.port", "out of range", id="debug-port-zero"),
    pytest.param(
        "version: 1\ndebug: {port: 65536}\n", 2, "debug.port", "out of range", id="debug-port-big"
    ),
    pytest.param(
        "debug:\n  attach: {port: 70000}\n",
        2,
        "debug.attach.port",
        "port 70000 is out of range",
        id="debug-attach-port-big",
    ),
    pytest.param(
        "debug:\n  attach: {port: 5679, pid: 7}\n",
        2,
        "debug.attach.pid",
        "cannot be combined with port",
        id="attach-by-port-and-pid",
    ),
    pytest.param(
        "debug:\n  attach: {}\n", 2, "debug.attach", "give one of port, pid", id="attach-to-nothing"
    ),
    pytest.param(
        "debug:\n  attach: {pid: 0}\n",
        2,
        "debug.attach.pid",
        "pid 0 is not a process id",
        id="attach-pid-zero",
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "fragment"), BAD_FILES)
def test_bad_file_is_explained_with_file_line_and_key(
    tmp_path: Path, text: str, line: int | None, key: str | None, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path=tmp_path / CONFIG_FILE_NAME, folder=tmp_path)
    error = caught.value
    message = str(error)

    assert CONFIG_FILE_NAME in message
    assert (error.line, error.key) == (line, key), message
    where = f"{CONFIG_FILE_NAME}:{line}: " if line is not None else f"{CONFIG_FILE_NAME}: "
    assert where in message
    if key is not None:
        assert f": {key}: " in message
    assert fragment in message
    assert "\n" not in message


def test_a_local_that_escapes_through_a_symlink_is_refused(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "workspace", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (workspace / "shared").symlink_to(outside)

    with pytest.raises(ConfigError) as caught:
        parse("sync:\n  - local: shared\n    remote: /app\n", workspace)

    assert (caught.value.line, caught.value.key) == (2, "sync[0].local")
    assert str(outside.resolve()) in str(caught.value)


@pytest.mark.parametrize(
    "remote", ["/", "/usr", "/etc/", "/usr/local", "/var/lib", "/proc/1", "/home"]
)
@pytest.mark.parametrize(
    "target", ["docker:\n    container: web", "kubernetes:\n    pod: {name: a}"]
)
def test_a_system_folder_as_remote_is_refused(tmp_path: Path, target: str, remote: str) -> None:
    text = f"target:\n  {target}\nsync:\n  - local: .\n    remote: {remote}\n"

    with pytest.raises(ConfigError) as caught:
        parse(text, tmp_path)

    assert (caught.value.line, caught.value.key) == (6, "sync[0].remote")
    assert "system folder" in str(caught.value)
    assert "a folder of its own" in str(caught.value)  # what to do instead


@pytest.mark.parametrize("remote", ["/app", "/usr/src/app", "/srv/web", "/home/dev/app", "/opt/x"])
def test_a_folder_below_a_system_folder_is_fine(tmp_path: Path, remote: str) -> None:
    config = parse(
        f"target:\n  docker:\n    container: web\nsync: [{{remote: {remote}}}]\n", tmp_path
    )

    assert config.sync[0].remote == remote


def test_on_the_local_target_the_folder_on_this_machine_counts(tmp_path: Path) -> None:
    # `/` of the local target is its root folder, which podlink made: fine.
    assert parse("sync: [{remote: /}]\n", tmp_path).sync[0].remote == "/"
    # A root of `/` makes `/usr` the machine's own.
    with pytest.raises(ConfigError) as caught:
        parse("target:\n  local:\n    root: /\nsync:\n  - remote: /usr\n", tmp_path)

    assert (caught.value.line, caught.value.key) == (5, "sync[0].remote")
    assert "system folder" in str(caught.value)
    assert "target.local.root" in str(caught.value)


# ---------------------------------------------------------------------------------------
# Reading files and formatting errors.


def test_load_config_reads_the_folders_file(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE_NAME).write_text(DESIGN_EXAMPLE)

    config = load_config(tmp_path)

    assert config.path == tmp_path.resolve() / CONFIG_FILE_NAME
    assert config.target_kind == "docker"


def test_load_config_takes_a_config_file_relative_to_the_folder_or_absolute(
    tmp_path: Path,
) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "podlink.dev.yaml").write_text("target: {docker: {image: python}}\n")
    absolute = tmp_path / "elsewhere.yaml"
    absolute.write_text("target: {local: {root: /tmp/x}}\n")

    relative_config = load_config(tmp_path, "dev/podlink.dev.yaml")
    absolute_config = load_config(tmp_path, absolute)

    assert relative_config.path == tmp_path.resolve() / "dev" / "podlink.dev.yaml"
    assert relative_config.target == DockerTargetConfig(image="python")
    assert absolute_config.path == absolute
    assert absolute_config.target == LocalTargetConfig(root="/tmp/x")


@pytest.mark.parametrize(
    "name",
    [
        "../secret.yaml",
        "dev/../../secret.yaml",
        "{outside}/secret.yaml",
        "dev/link.yaml",  # a link inside that leads outside
    ],
)
def test_a_config_file_outside_the_folder_is_refused_unread(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "workspace"
    (folder / "dev").mkdir(parents=True)
    secret = tmp_path / "secret.yaml"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin\n")
    (folder / "dev" / "link.yaml").symlink_to(secret)

    with pytest.raises(ConfigError) as caught:
        load_config(folder, name.format(outside=tmp_path))

    assert "must be inside the workspace folder" in str(caught.value)
    assert "root:" not in str(caught.value)


def test_a_top_level_value_is_described_not_quoted(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE_NAME).write_text("root:x:0:0:root:/root:/bin/bash\n")

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)

    assert "must be a mapping of keys, got a single value" in str(caught.value)
    assert "/root" not in str(caught.value)


def test_a_missing_file_suggests_podlink_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)

    assert f"no {CONFIG_FILE_NAME} in {tmp_path.resolve()}" in str(caught.value)
    assert caught.value.hint == "run `podlink init` to create one"
    assert "podlink init" in str(caught.value)


def test_a_missing_explicit_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, "other.yaml")

    assert caught.value.path == tmp_path.resolve() / "other.yaml"
    assert "does not exist" in str(caught.value)


def test_a_file_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE_NAME).write_bytes(b"version: 1\nrun: {command: caf\xe9}\n")

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)

    assert caught.value.line == 2
    assert "not UTF-8" in str(caught.value)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE_NAME).write_bytes(b"\xef\xbb\xbfversion: 1\n")

    assert load_config(tmp_path).version == 1


def test_error_text_is_relative_to_the_working_directory_when_inside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    error = ConfigError(
        tmp_path / CONFIG_FILE_NAME,
        "must be an absolute path in the target, got 'app'",
        line=7,
        key="sync[0].remote",
        hint="write /app",
    )

    assert str(error) == (
        "podlink.yaml:7: sync[0].remote: must be an absolute path in the target, got 'app'"
        " (write /app)"
    )


def test_error_text_without_line_key_or_hint() -> None:
    error = ConfigError(Path("/somewhere/else/podlink.yaml"), "the file is empty")

    assert str(error) == "/somewhere/else/podlink.yaml: the file is empty"
    assert (error.line, error.key, error.hint) == (None, None, None)


# ---------------------------------------------------------------------------------------
# deploy:


KUBE_TARGET = """\
version: 1
target:
  kubernetes:
    pod: {selector: app=web}
"""


def test_deploy_lists_manifests_and_an_image_to_put_in_place(tmp_path: Path) -> None:
    (tmp_path / "k8s").mkdir()
    (tmp_path / "extra.yaml").write_text("")
    config = parse(
        KUBE_TARGET
        + "deploy:\n"
        + "  manifests: [k8s/, extra.yaml]\n"
        + '  image: {name: web, replace: "registry.example/web:1.4"}\n',
        tmp_path,
    )

    assert config.deploy == DeployConfig(
        manifests=("k8s/", "extra.yaml"),
        image=DeployImageConfig(name="web", replace="registry.example/web:1.4"),
    )


def test_deploy_renders_helm_releases_with_values_and_set(tmp_path: Path) -> None:
    (tmp_path / "chart").mkdir()
    (tmp_path / "values-dev.yaml").write_text("replicaCount: 2\n")
    config = parse(
        KUBE_TARGET
        + "deploy:\n"
        + "  helm:\n"
        + "    - chart: chart/\n"
        + "      release: web\n"
        + "      values: [values-dev.yaml]\n"
        + "      set: {image.tag: dev, replicaCount: 3, debug: true}\n",
        tmp_path,
    )

    assert config.deploy == DeployConfig(
        helm=(
            HelmReleaseConfig(
                chart="chart/",
                release="web",
                values=("values-dev.yaml",),
                set={"image.tag": "dev", "replicaCount": 3, "debug": True},
            ),
        ),
    )


def test_without_deploy_nothing_is_deployed(tmp_path: Path) -> None:
    assert parse(KUBE_TARGET, tmp_path).deploy is None


@pytest.mark.parametrize(
    ("section", "line", "key", "fragment"),
    [
        pytest.param(
            "deploy:\n  manifests: []\n", 6, "deploy.manifests", "at least one", id="empty"
        ),
        pytest.param(
            "deploy:\n  manifests:\n    - k8s/\n    - missing.yaml\n",
            8,
            "deploy.manifests[1]",
            "'missing.yaml' does not exist",
            id="missing",
        ),
        pytest.param(
            "deploy:\n  manifests: [../elsewhere]\n",
            6,
            "deploy.manifests[0]",
            "outside the workspace",
            id="outside",
        ),
        pytest.param("deploy: {}\n", 5, "deploy.manifests", "or a helm: release", id="none"),
        pytest.param(
            "deploy:\n  helm:\n    - {chart: chart/, release: Web_1}\n",
            7,
            "deploy.helm[0].release",
            "'Web_1' is not a helm release name",
            id="helm-release-name",
        ),
        pytest.param(
            "deploy:\n  helm:\n    - {chart: ./nochart, release: web}\n",
            7,
            "deploy.helm[0].chart",
            "'./nochart' is not a chart folder inside the workspace",
            id="helm-chart-missing",
        ),
        pytest.param(
            "deploy:\n  helm:\n    - chart: chart/\n      release: web\n"
            "      values: [values-dev.yaml]\n",
            9,
            "deploy.helm[0].values[0]",
            "'values-dev.yaml' is not a file inside the workspace",
            id="helm-values-missing",
        ),
        pytest.param(
            "deploy:\n  helm:\n    - {chart: chart/}\n",
            7,
            "deploy.helm[0]",
            "missing required key 'release'",
            id="helm-without-release",
        ),
        pytest.param(
            "deploy:\n  manifests: [k8s/]\n  images: {}\n",
            7,
            "deploy.images",
            "did you mean 'image'?",
            id="unknown-key",
        ),
        pytest.param(
            "deploy:\n  manifests: [k8s/]\n  image: {name: web}\n",
            7,
            "deploy.image",
            "missing required key 'replace'",
            id="image-without-replace",
        ),
        pytest.param(
            'deploy:\n  manifests: [k8s/]\n  image: {name: web, replace: ""}\n',
            7,
            "deploy.image.replace",
            "is empty",
            id="image-empty",
        ),
    ],
)
def test_a_bad_deploy_section_names_line_and_key(
    tmp_path: Path, section: str, line: int, key: str, fragment: str
) -> None:
    (tmp_path / "k8s").mkdir()
    (tmp_path / "chart").mkdir()
    with pytest.raises(ConfigError) as caught:
        parse(KUBE_TARGET + section, tmp_path)

    assert (caught.value.line, caught.value.key) == (line, key), str(caught.value)
    assert fragment in str(caught.value)


def test_deploy_needs_a_kubernetes_target(tmp_path: Path) -> None:
    (tmp_path / "k8s").mkdir()
    with pytest.raises(ConfigError) as caught:
        parse(
            "version: 1\ntarget: {docker: {image: python}}\ndeploy: {manifests: [k8s/]}\n", tmp_path
        )

    assert (caught.value.line, caught.value.key) == (3, "deploy")
    assert "not a kubernetes one" in str(caught.value)


# ---------------------------------------------------------------------------------------
# build.image:


def test_build_image_names_the_repository_and_how_to_build_it(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile.dev").write_text("FROM python\n")
    config = parse(
        KUBE_TARGET
        + "build:\n  image:\n    name: 127.0.0.1:5000/web\n    context: docker\n"
        + "    dockerfile: Dockerfile.dev\n    args: {BASE: python}\n    target: dev\n",
        tmp_path,
    )

    assert config.build == BuildConfig(
        image=ImageBuildConfig(
            name="127.0.0.1:5000/web",
            context="docker",
            dockerfile="Dockerfile.dev",
            args={"BASE": "python"},
            target="dev",
        )
    )


@pytest.mark.parametrize(
    ("target", "image", "line", "key", "fragment"),
    [
        pytest.param(
            KUBE_TARGET, "{name: 'web:1.0'}", 6, "build.image.name", "without a tag", id="tag"
        ),
        pytest.param(
            KUBE_TARGET,
            "{name: web, dockerfile: Missing}",
            6,
            "build.image.dockerfile",
            "there is no Missing",
            id="no-dockerfile",
        ),
        pytest.param(
            KUBE_TARGET,
            "{name: web, context: ../up}",
            6,
            "build.image.context",
            "not a folder inside the workspace",
            id="context-outside",
        ),
        pytest.param(
            KUBE_TARGET,
            "{name: web, deliver: containerd}",
            6,
            "build.image.containerdSocket",
            "needs the socket",
            id="containerd-without-socket",
        ),
        pytest.param(
            KUBE_TARGET,
            "{name: web, deliver: ftp}",
            6,
            "build.image.deliver",
            "",
            id="unknown-way",
        ),
        pytest.param(
            "version: 1\ntarget: {docker: {image: python}}\n",
            "{name: web}",
            4,
            "build.image",
            "not a kubernetes one",
            id="docker-target",
        ),
    ],
)
def test_a_bad_build_image_names_line_and_key(
    tmp_path: Path, target: str, image: str, line: int, key: str, fragment: str
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python\n")
    with pytest.raises(ConfigError) as caught:
        parse(target + f"build:\n  image: {image}\n", tmp_path)

    assert (caught.value.line, caught.value.key) == (line, key), str(caught.value)
    assert fragment in str(caught.value)


def test_a_build_section_needs_a_command_or_an_image(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(KUBE_TARGET + "build: {env: {A: b}}\n", tmp_path)

    assert caught.value.key == "build.command", str(caught.value)


def test_debug_attach_names_the_port_of_a_running_debug_server(tmp_path: Path) -> None:
    config = parse_config(
        "debug:\n  attach: {port: 5679}\n", path=tmp_path / CONFIG_FILE_NAME, folder=tmp_path
    )
    assert config.debug == DebugConfig(attach=DebugAttachConfig(port=5679))


def test_debug_attach_names_the_pid_of_a_running_process(tmp_path: Path) -> None:
    config = parse_config(
        "debug:\n  attach: {pid: 42}\n", path=tmp_path / CONFIG_FILE_NAME, folder=tmp_path
    )
    assert config.debug == DebugConfig(attach=DebugAttachConfig(pid=42))
