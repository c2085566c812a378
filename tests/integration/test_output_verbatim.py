"""What the app prints and what files are called reach the terminal as they are, and a
listener that fails to report something never stops the work it was reporting on."""

from __future__ import annotations

import signal
from pathlib import Path

from podlink import protocol
from podlink.config import load_config
from podlink.session import Session
from tests.helpers import start_podlink
from tests.integration.test_cli import LineWatcher
from tests.recording import RecordingListener

ODD_LINES = [
    "mount [/static] ok",
    "[info] starting",
    "[red]alert[/red] and [bold]",
    "closing [/] tag and :smile: and \\[escaped]",
]

APP = (
    "import sys, time\n"
    f"for line in {ODD_LINES!r}:\n"
    "    print(line)\n"
    "for index in range(20000):\n"  # far more than a pipe holds: nobody may stop reading
    "    print(f'filler {index} [/x]')\n"
    "print('all printed', flush=True)\n"
    "time.sleep(600)\n"
)


def write_workspace(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(APP)
    (folder / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  local:\n    root: .podlink/target\n"
        "sync:\n  - local: .\n    remote: /app\n"
        'run:\n  command: ["python3", "app.py"]\n  restart: never\n'
    )


def test_app_output_and_odd_names_print_verbatim_and_ctrl_c_still_stops(
    tmp_path: Path, env: dict[str, str]
) -> None:
    workspace = tmp_path / "work[/z] [bold]"
    write_workspace(workspace)
    process = start_podlink("up", str(workspace), cwd=tmp_path, env=env)
    try:
        output = LineWatcher(process)
        ready = output.wait_for("ready:", seconds=60)
        assert f"{workspace.resolve()} -> " in output.lines[ready]
        output.wait_for("all printed", seconds=60)
        app_lines = [line.split(" app | ", 1)[1] for line in output.lines if " app | " in line]
        for line in ODD_LINES:
            assert line in app_lines
        assert "filler 19999 [/x]" in app_lines

        (workspace / "w[").mkdir()
        (workspace / "w[/z]").write_text("odd name\n")
        output.wait_for("synced 1 file(s)", after=ready, seconds=30)
        assert (workspace / ".podlink" / "target" / "app" / "w[/z]").read_text() == "odd name\n"

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert not any("MarkupError" in line for line in output.lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


class FailingListener(RecordingListener):
    """Records like the usual listener, then fails the way a broken terminal would."""

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None:
        super().log(session_id, source, text)
        raise ValueError(f"cannot print {text!r}")

    def session_changed(self, session: protocol.Session) -> None:
        super().session_changed(session)
        raise ValueError("cannot show the session")


async def test_a_listener_that_fails_never_stops_the_sync(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    write_workspace(workspace)
    (workspace / "podlink.yaml").write_text(
        "version: 1\ntarget:\n  local:\n    root: .podlink/target\n"
        "sync:\n  - local: .\n    remote: /app\n"
    )
    target = workspace / ".podlink" / "target" / "app"
    (workspace / "w[").mkdir()
    listener = FailingListener()
    session = Session(load_config(workspace), listener)
    await session.start()
    try:
        for round_number in range(3):
            (workspace / "w[/z]").write_text(f"round {round_number}\n")
            status = await session.flush(20)
            assert (target / "w[/z]").read_text() == f"round {round_number}\n"
            assert status.state == "idle"
        await listener.wait_for_log("synced 1 file(s)")
    finally:
        await session.stop()
