"""The pure parts of debugging: the debugpy command line and the attach configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from podlink.config import Config, SyncEntryConfig
from podlink.session.debug import (
    DebugNotPossible,
    attach_configuration,
    debug_command,
    debugpy_files,
)
from podlink.session.debug_attach import PtraceFacts, pid_refusal

UNDER_DEBUGPY = ("-Xfrozen_modules=off", "-m", "debugpy", "--listen", "127.0.0.1:5678")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("python3", "-m", "app"), ("python3", *UNDER_DEBUGPY, "-m", "app")),
        (
            ("python", "main.py", "--port", "80"),
            ("python", *UNDER_DEBUGPY, "main.py", "--port", "80"),
        ),
        (
            ("/usr/bin/python3.11", "-u", "-m", "app"),
            ("/usr/bin/python3.11", "-u", *UNDER_DEBUGPY, "-m", "app"),
        ),
        (
            ("python3", "-X", "dev", "-W", "error", "-m", "app"),
            ("python3", "-X", "dev", "-W", "error", *UNDER_DEBUGPY, "-m", "app"),
        ),
        (("python3", "-mapp"), ("python3", *UNDER_DEBUGPY, "-m", "app")),
        (("python3", "-c", "print(1)"), ("python3", *UNDER_DEBUGPY, "-c", "print(1)")),
    ],
)
def test_python_commands_run_under_debugpy(
    command: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert debug_command(command, 5678) == expected


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        (("node", "server.js"), "'node'"),
        (("gunicorn", "app:wsgi"), "'gunicorn'"),
        ((), "(empty)"),
        (("python3",), "script"),
        (("python3", "-u"), "script"),
        (("python3", "-"), "script"),
        (("python3", "-m"), "script"),
    ],
)
def test_other_commands_are_refused_with_a_reason(command: tuple[str, ...], complaint: str) -> None:
    with pytest.raises(DebugNotPossible, match=r"run\.command") as raised:
        debug_command(command, 5678)
    assert complaint in str(raised.value)


def test_attach_configuration_maps_every_sync_entry_most_specific_first(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    config = Config(
        folder=tmp_path,
        path=None,
        sync=(
            SyncEntryConfig(local=".", remote="/srv/app"),
            SyncEntryConfig(local="lib", remote="/opt/lib"),
        ),
    )
    configuration = attach_configuration(config, lambda remote: f"/root{remote}", 6000)
    assert configuration == {
        "type": "debugpy",
        "request": "attach",
        "name": f"podlink: {tmp_path.name}",
        "connect": {"host": "127.0.0.1", "port": 6000},
        "pathMappings": [
            {"localRoot": str(tmp_path / "lib"), "remoteRoot": "/root/opt/lib"},
            {"localRoot": str(tmp_path), "remoteRoot": "/root/srv/app"},
        ],
        "justMyCode": True,
        "subProcess": True,
    }


def test_the_debugpy_copy_is_pure_python_but_for_the_attach_helper() -> None:
    names = [name for name, _ in debugpy_files()]
    assert "debugpy/__main__.py" in names
    assert "debugpy/_vendored/pydevd/pydevd.py" in names
    compiled = [name for name in names if name.endswith((".so", ".pyd", ".pyc", ".dll"))]
    # gdb loads the helper into a process to attach by pid; nothing of Python's is compiled.
    assert compiled, "the attach helper is missing"
    helpers = "debugpy/_vendored/pydevd/pydevd_attach_to_process/attach_linux_"
    assert [name for name in compiled if not name.startswith(helpers)] == []


def test_a_test_run_waits_for_the_debugger() -> None:
    assert debug_command(("python3", "-m", "pytest", "-q"), 40123, wait_for_client=True) == (
        "python3",
        "-Xfrozen_modules=off",
        "-m",
        "debugpy",
        "--listen",
        "127.0.0.1:40123",
        "--wait-for-client",
        "-m",
        "pytest",
        "-q",
    )


def test_a_test_command_that_is_not_python_is_refused_by_its_own_name() -> None:
    with pytest.raises(DebugNotPossible) as raised:
        debug_command(("pytest", "-q"), 40123, setting="test.command")
    assert str(raised.value).startswith("test.command starts with 'pytest'")
    assert "[python3, -m, pytest]" in str(raised.value)


# -- attaching by pid: what the target lacks ------------------------------------------------

CAP_SYS_PTRACE_ONLY = 1 << 19
DOCKER_DEFAULT_CAPABILITIES = 0x00000000A80425FB  # no CAP_SYS_PTRACE


def facts(**changes: object) -> PtraceFacts:
    found = {
        "exists": True,
        "exe": "/usr/local/bin/python3.12",
        "gdb": "/usr/bin/gdb",
        "ptrace_scope": 1,
        "capabilities": CAP_SYS_PTRACE_ONLY,
    }
    found.update(changes)
    return PtraceFacts(**found)  # type: ignore[arg-type]


def test_a_target_with_gdb_and_ptrace_permission_is_not_refused() -> None:
    assert pid_refusal(7, facts()) is None
    # Without Yama (or with it at 0) the same user may ptrace without the capability.
    assert (
        pid_refusal(7, facts(ptrace_scope=None, capabilities=DOCKER_DEFAULT_CAPABILITIES)) is None
    )
    assert pid_refusal(7, facts(ptrace_scope=0, capabilities=DOCKER_DEFAULT_CAPABILITIES)) is None


def test_missing_gdb_and_capability_are_both_named_with_their_fixes() -> None:
    refusal = pid_refusal(7, facts(gdb="", capabilities=DOCKER_DEFAULT_CAPABILITIES))
    assert refusal is not None
    assert refusal.startswith("cannot attach to process 7 by pid: gdb is not installed")
    assert "apt-get install -y gdb" in refusal
    assert "kernel.yama.ptrace_scope = 1 and no CAP_SYS_PTRACE" in refusal
    assert "--cap-add SYS_PTRACE" in refusal
    assert "securityContext.capabilities.add" in refusal


def test_ptrace_switched_off_on_the_host_points_to_attaching_by_port() -> None:
    refusal = pid_refusal(7, facts(ptrace_scope=3))
    assert refusal is not None
    assert "kernel.yama.ptrace_scope = 3" in refusal
    assert "debug.attach.port" in refusal


def test_a_missing_or_non_python_process_is_named() -> None:
    assert pid_refusal(7, facts(exists=False)) == (
        "no process 7 runs in the target: give the id of a running Python process there "
        "(`ps -ef` in the container lists them)"
    )
    refusal = pid_refusal(7, facts(exe="/usr/sbin/nginx"))
    assert refusal is not None and "runs /usr/sbin/nginx, not Python" in refusal
