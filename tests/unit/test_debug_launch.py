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


def test_the_debugpy_copy_is_pure_python() -> None:
    names = [name for name, _ in debugpy_files()]
    assert "debugpy/__main__.py" in names
    assert "debugpy/_vendored/pydevd/pydevd.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd", ".pyc", ".dll"))]
