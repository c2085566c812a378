"""`podlink shell`, `podlink logs` and `podlink purge` as real processes.

The Docker cases run against a real Docker Engine (``docker_client`` fails them when there is
none, unless PODLINK_SKIP_DOCKER=1); the local-target cases need nothing else. The terminal
case drives `podlink shell` through a real pseudo-terminal, as a person at a keyboard would.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podlink.targets.docker.containers import container_name_for
from tests.helpers import run_podlink as podlink
from tests.helpers import start_podlink
from tests.integration.test_cli import LineWatcher
from tests.targets import TEST_IMAGE, TEST_LABEL, docker_client, start_test_container

MANAGED = {"podlink.managed": "1"}
WAIT_SECONDS = 30.0


def write_config(folder: Path, target_section: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "podlink.yaml").write_text(
        f"version: 1\n{target_section}sync:\n  - local: .\n    remote: /app\n"
    )
    return folder


def run_in(container: Any, script: str) -> str:
    code, output = container.exec_run(["sh", "-c", script])
    text = str(output.decode(errors="replace"))
    assert code == 0, f"{script!r} failed in the container: {text}"
    return text


def wait_until(condition: Any, what: str, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def client() -> Any:
    return docker_client()


@pytest.fixture
def container(client: Any) -> Iterator[Any]:
    """A running container podlink did not create, with an empty /app."""
    created = start_test_container(client)
    run_in(created, "mkdir -p /app")
    yield created
    created.remove(force=True)


@pytest.fixture
def docker_workspace(tmp_path: Path, container: Any) -> Path:
    return write_config(
        tmp_path / "workspace", f"target:\n  docker:\n    container: {container.name}\n"
    )


@pytest.fixture
def local_workspace(tmp_path: Path) -> Path:
    return write_config(tmp_path / "workspace", "target:\n  local:\n    root: .podlink/target\n")


def test_help_for_the_terminal_commands(local_workspace: Path, env: dict[str, str]) -> None:
    for command in ("shell", "logs", "purge"):
        result = podlink(command, "--help", cwd=local_workspace, env=env)
        assert result.returncode == 0, result.stderr
        assert f"Usage: python -m podlink {command}" in result.stdout
    assert "[-- COMMAND...]" in podlink("shell", "--help", cwd=local_workspace, env=env).stdout


# -- shell -------------------------------------------------------------------------------


def test_shell_runs_a_command_after_dashes_in_the_container(
    docker_workspace: Path, container: Any, env: dict[str, str]
) -> None:
    run_in(container, "printf 'written in the container\\n' > /app/notes.txt")
    result = podlink("shell", "--", "cat", "/app/notes.txt", cwd=docker_workspace, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "written in the container\n"

    listing = podlink("shell", "--", "ls", "/app", cwd=docker_workspace, env=env)
    assert listing.stdout.split() == ["notes.txt"]
    failing = podlink(
        "shell", "--", "sh", "-c", "echo oops >&2; exit 9", cwd=docker_workspace, env=env
    )
    assert failing.returncode == 9
    assert failing.stderr == "oops\n"


def test_shell_reads_a_script_from_a_pipe_in_the_remote_folder(
    docker_workspace: Path, env: dict[str, str]
) -> None:
    result = podlink("shell", cwd=docker_workspace, env=env, stdin_text="pwd; exit 3\n")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "/app\n"


class TerminalScreen:
    """Everything a pseudo-terminal's program writes, read on a thread; waits have deadlines."""

    def __init__(self, master_fd: int) -> None:
        self.output = b""
        self._fd = master_fd
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:
                chunk = b""  # EIO: every program holding the terminal has gone
            with self._changed:
                self.output += chunk
                self._changed.notify_all()
            if not chunk:
                return

    def type(self, keys: bytes) -> int:
        """Send keys; the position in the output from which their effects appear."""
        with self._changed:
            mark = len(self.output)
        os.write(self._fd, keys)
        return mark

    def wait_for(self, text: bytes, after: int = 0, seconds: float = WAIT_SECONDS) -> int:
        deadline = time.monotonic() + seconds
        with self._changed:
            while (found := self.output.find(text, after)) < 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {text!r} on the terminal; it shows:\n{self.output!r}")
                self._changed.wait(remaining)
            return found + len(text)


def set_window_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def take_as_controlling_terminal() -> None:
    # Runs in the child after setsid(): stdin (the pty) becomes its controlling terminal, so
    # a window size change sends it SIGWINCH as a real terminal would.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_shell_on_a_terminal_is_interactive_sized_and_restores_the_terminal(
    docker_workspace: Path, env: dict[str, str]
) -> None:
    master, slave = os.openpty()
    set_window_size(master, 31, 97)
    settings_before = termios.tcgetattr(slave)
    process = subprocess.Popen(
        [sys.executable, "-m", "podlink", "shell"],
        cwd=docker_workspace,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_as_controlling_terminal,
    )
    screen = TerminalScreen(master)
    try:
        screen.wait_for(b"# ")  # the prompt of a root shell
        assert not termios.tcgetattr(slave)[3] & termios.ICANON, "not in raw mode"

        mark = screen.type(b"echo $((6*7))\r")
        screen.wait_for(b"42\r\n", after=mark)  # the typed line itself shows `6*7`, not 42

        mark = screen.type(b"stty size\r")
        screen.wait_for(b"31 97\r\n", after=mark)

        set_window_size(master, 40, 120)  # the kernel sends podlink SIGWINCH
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            mark = screen.type(b"stty size\r")
            try:
                screen.wait_for(b"40 120\r\n", after=mark, seconds=1.0)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

        screen.type(b"exit\r")
        assert process.wait(timeout=WAIT_SECONDS) == 0
        assert termios.tcgetattr(slave) == settings_before
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(slave)
        os.close(master)


def test_shell_local_target_runs_in_the_target_folder(
    local_workspace: Path, env: dict[str, str]
) -> None:
    remote_folder = local_workspace / ".podlink" / "target" / "app"
    remote_folder.mkdir(parents=True)
    result = podlink("shell", "--", "pwd", cwd=local_workspace, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{remote_folder}\n"

    piped = podlink("shell", cwd=local_workspace, env=env, stdin_text="pwd; exit 4\n")
    assert piped.returncode == 4
    assert piped.stdout == f"{remote_folder}\n"


def test_a_bad_or_missing_config_exits_2(tmp_path: Path, env: dict[str, str]) -> None:
    broken = write_config(tmp_path / "broken", "target:\n  local:\n    rooot: x\n")
    for command in ("shell", "logs", "purge"):
        result = podlink(command, cwd=broken, env=env)
        assert result.returncode == 2
        assert "podlink.yaml:4: target.local.rooot: unknown key" in result.stderr

    for command in ("shell", "logs"):
        missing = podlink(command, cwd=tmp_path, env=env)
        assert missing.returncode == 2
        assert "no podlink.yaml" in missing.stderr


def test_a_missing_container_exits_1_saying_so(
    tmp_path: Path, client: Any, env: dict[str, str]
) -> None:
    absent = f"podlink-absent-{uuid.uuid4().hex[:8]}"
    assert not client.containers.list(all=True, filters={"name": absent})
    nowhere = write_config(tmp_path / "nowhere", f"target:\n  docker:\n    container: {absent}\n")
    for command in ("shell", "logs"):
        unreachable = podlink(command, cwd=nowhere, env=env)
        assert unreachable.returncode == 1
        assert f"podlink: no container named {absent!r}" in unreachable.stderr


# -- logs --------------------------------------------------------------------------------


@pytest.fixture
def talking_container(client: Any) -> Iterator[tuple[Any, str]]:
    """A container whose main process prints two lines, and a third once /tmp/go exists."""
    marker = uuid.uuid4().hex[:8]
    script = (
        f"echo one-{marker}; echo two-{marker}; "
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; "
        f"echo three-{marker}; exec sleep infinity"
    )
    created = client.containers.run(
        TEST_IMAGE,
        ["sh", "-c", script],
        name=f"podlink-test-{marker}",
        detach=True,
        init=True,
        labels={TEST_LABEL: "1"},
    )
    wait_until(lambda: f"two-{marker}".encode() in created.logs(), "the container's first lines")
    yield created, marker
    created.remove(force=True)


def test_logs_prints_tails_and_follows_the_container_output(
    tmp_path: Path, talking_container: tuple[Any, str], env: dict[str, str]
) -> None:
    talker, marker = talking_container
    workspace = write_config(
        tmp_path / "workspace", f"target:\n  docker:\n    container: {talker.name}\n"
    )
    everything = podlink("logs", cwd=workspace, env=env)
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout == f"one-{marker}\ntwo-{marker}\n"

    last = podlink("logs", "--tail", "1", cwd=workspace, env=env)
    assert last.stdout == f"two-{marker}\n"

    following = subprocess.Popen(
        [sys.executable, "-m", "podlink", "logs", "--follow"],
        cwd=workspace,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        output = LineWatcher(following)
        output.wait_for(f"two-{marker}")
        run_in(talker, "touch /tmp/go")
        output.wait_for(f"three-{marker}")
        following.send_signal(signal.SIGINT)
        assert following.wait(timeout=WAIT_SECONDS) == 0
    finally:
        if following.poll() is None:
            following.kill()
            following.wait()


def test_logs_refuse_the_pod_only_flags_for_a_container(
    tmp_path: Path, talking_container: tuple[Any, str], env: dict[str, str]
) -> None:
    talker, _ = talking_container
    workspace = write_config(
        tmp_path / "workspace", f"target:\n  docker:\n    container: {talker.name}\n"
    )
    for flag in ("--previous", "--all"):
        result = podlink("logs", flag, cwd=workspace, env=env)
        assert result.returncode == 1
        assert result.stdout == ""
        assert f"{flag} is for pods: a Docker container keeps one log" in result.stderr


def test_logs_of_the_local_target_explain_where_the_output_is(
    local_workspace: Path, env: dict[str, str]
) -> None:
    result = podlink("logs", cwd=local_workspace, env=env)
    assert result.returncode == 1
    assert "the local target has no container logs" in result.stderr
    assert "`podlink up` shows its output" in result.stderr


# -- purge -------------------------------------------------------------------------------


def test_purge_removes_what_podlink_made_and_nothing_else(
    client: Any, container: Any, docker_workspace: Path, env: dict[str, str]
) -> None:
    import docker.errors

    # Made for this test's folder only: `--folder` keeps purge off what others made.
    tag, image = build_managed_image(client, docker_workspace)
    managed = client.containers.run(
        TEST_IMAGE,
        ["sleep", "infinity"],
        name=f"podlink-purge-test-{uuid.uuid4().hex[:8]}",
        detach=True,
        init=True,
        labels={**managed_for(docker_workspace), TEST_LABEL: "1"},
    )
    run_in(
        container,
        "mkdir -p /app/deep && touch /app/.podlink-tmp-x /app/deep/.podlink-tmp-y "
        "/app/keep.txt /app/.podlink-tmpz",
    )
    try:
        preview = podlink("purge", "--folder", ".", cwd=docker_workspace, env=env)
        assert preview.returncode == 1
        assert "pass --yes" in preview.stderr
        assert f"container {managed.name} ({managed.id[:12]}, running)" in preview.stdout
        assert tag in preview.stdout
        assert f"file {container.name}:/app/.podlink-tmp-x" in preview.stdout
        assert f"container {container.name}" not in preview.stdout
        managed.reload()  # still there: nothing is removed without --yes

        result = podlink("purge", "--yes", "--folder", ".", cwd=docker_workspace, env=env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert f"removed container {managed.name} ({managed.id[:12]}, running)" in lines
        assert any(line.startswith(f"removed image {tag}") for line in lines)
        assert f"removed file {container.name}:/app/.podlink-tmp-x" in lines
        assert f"removed file {container.name}:/app/deep/.podlink-tmp-y" in lines
        assert lines[-1].startswith("purged ")

        with pytest.raises(docker.errors.NotFound):
            managed.reload()
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(image.id)
        client.images.get(TEST_IMAGE)
        container.reload()
        assert container.status == "running"
        left = run_in(container, "find /app -type f | sort").split()
        assert left == ["/app/.podlink-tmpz", "/app/keep.txt"]
    finally:
        for leftover in client.containers.list(all=True, filters={"name": managed.name}):
            leftover.remove(force=True)
        for leftover_image in client.images.list(name=tag.split(":")[0]):
            client.images.remove(leftover_image.id, force=True)


def managed_for(folder: Path) -> dict[str, str]:
    """The labels podlink puts on what it makes for a workspace folder."""
    return {**MANAGED, "podlink.folder": str(folder.resolve())}


def build_managed_image(client: Any, folder: Path) -> tuple[str, Any]:
    tag = f"podlink-purge-test-{uuid.uuid4().hex[:8]}:dev"
    labels = "".join(f' "{key}"="{value}"' for key, value in managed_for(folder).items())
    dockerfile = f"FROM {TEST_IMAGE}\nLABEL{labels}\n".encode()
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
    return tag, image


def test_purge_leaves_what_a_running_session_uses_unless_all(
    client: Any, tmp_path: Path, env: dict[str, str]
) -> None:
    import docker.errors

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    tag, image = build_managed_image(client, workspace)
    write_config(workspace, f"target:\n  docker:\n    image: {tag}\n")
    idle = client.containers.run(  # made for the folder earlier, used by no session
        TEST_IMAGE,
        ["sleep", "infinity"],
        name=f"podlink-purge-test-{uuid.uuid4().hex[:8]}",
        detach=True,
        labels={**managed_for(workspace), TEST_LABEL: "1"},
    )
    up = start_podlink("up", str(workspace), cwd=workspace, env=env)
    try:
        output = LineWatcher(up)
        output.wait_for("ready:", seconds=120)
        used = client.containers.get(container_name_for(workspace.resolve()))

        result = podlink("purge", "--yes", "--folder", ".", cwd=workspace, env=env)

        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert f"removed container {idle.name} ({idle.id[:12]}, running)" in lines
        kept = [line for line in lines if line.startswith("kept ")]
        assert len(kept) == 2, lines
        assert f"container {used.name}" in kept[0] and f"pid {up.pid}" in kept[0]
        assert tag in kept[1]
        assert "--all" in kept[0]
        used.reload()
        assert used.status == "running"
        client.images.get(image.id)
        with pytest.raises(docker.errors.NotFound):
            idle.reload()

        result = podlink("purge", "--yes", "--all", "--folder", ".", cwd=workspace, env=env)

        assert result.returncode == 0, result.stderr
        assert f"removed container {used.name} ({used.id[:12]}, running)" in result.stdout
        with pytest.raises(docker.errors.NotFound):
            used.reload()
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(image.id)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        # Only what this test made, by exact id or name: other runs share the engine.
        for made in (idle.id, container_name_for(workspace.resolve())):
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(made).remove(force=True)
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image.id, force=True)


def test_purge_cleans_the_local_target_even_without_an_engine(
    local_workspace: Path, env: dict[str, str]
) -> None:
    root = local_workspace.resolve() / ".podlink" / "target"
    (root / "app" / "deep").mkdir(parents=True)
    leftovers = [root / "app" / ".podlink-tmp-1", root / "app" / "deep" / ".podlink-tmp-2"]
    kept = [root / "app" / "keep.txt", local_workspace / ".podlink-tmp-outside"]
    for path in leftovers + kept:
        path.write_text("x")
    no_engine = {**env, "DOCKER_HOST": f"unix://{local_workspace}/no-engine.sock"}

    result = podlink("purge", "--yes", cwd=local_workspace, env=no_engine)
    assert result.returncode == 0, result.stderr
    assert "cannot reach the Docker Engine" in result.stderr
    assert result.stdout.splitlines() == [
        *(f"removed file {path}" for path in sorted(leftovers)),
        "purged 0 containers, 0 images and 2 temporary files",
    ]
    assert [path.exists() for path in leftovers + kept] == [False, False, True, True]
