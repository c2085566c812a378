"""Two-way sync, the agreed state across restarts, conflicts and safety halts, through the
daemon over stdio, on the local target and a Docker container."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Daemon
from tests.helpers import tree_listing
from tests.targets import DockerProbe, LocalProbe, TargetProbe

TWO_WAY_KINDS = ["local", "docker"]
GREETING = "app/greeting.py"


def configure(
    workspace: Path, probe: TargetProbe, mode: str, local: str = ".", owner: str | None = None
) -> None:
    (workspace / "podlink.yaml").write_text(
        "version: 1\n"
        + probe.config_section()
        + "sync:\n"
        + f"  - local: {local}\n    remote: /app\n    mode: {mode}\n"
        + '    exclude: ["*.log", "cache/"]\n'
        + (f'    owner: "{owner}"\n' if owner else "")
    )


def target_write(probe: TargetProbe, remote: str, data: bytes) -> None:
    if isinstance(probe, LocalProbe):
        path = probe.root / remote.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    assert isinstance(probe, DockerProbe)
    script = (
        "import os, sys; os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True); "
        "open(sys.argv[1], 'wb').write(bytes.fromhex(sys.argv[2]))"
    )
    probe._run("python3", "-c", script, remote, data.hex())


def target_shell(probe: TargetProbe, command: str) -> None:
    if isinstance(probe, LocalProbe):
        import subprocess

        subprocess.run(["sh", "-c", command], cwd=probe.root, check=True)
        return
    assert isinstance(probe, DockerProbe)
    probe._run("sh", "-c", f"cd / && {command}")


def local_part(workspace: Path) -> dict[str, Any]:
    listing = tree_listing(workspace)
    return {
        path: entry
        for path, entry in listing.items()
        if not path.startswith((".podlink", "podlink.yaml"))
        and ".podlink-conflict-" not in path
        and "__pycache__" not in path
    }


def target_part(probe: TargetProbe) -> dict[str, Any]:
    return {
        path: entry
        for path, entry in probe.listing().items()
        if not path.startswith(("podlink.yaml", "cache")) and "__pycache__" not in path
    }


async def until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Wait for a condition about files, which no notification announces."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition never held")
        await asyncio.sleep(0.02)


async def start(daemon: Daemon, workspace: Path) -> dict[str, Any]:
    session: dict[str, Any] = await daemon.request(
        "podlink/startSession", {"folder": workspace.as_uri()}
    )
    return session


async def stop(daemon: Daemon, session: dict[str, Any]) -> None:
    await daemon.request("podlink/stopSession", {"sessionId": session["id"]})


async def flush(daemon: Daemon, session: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = await daemon.request(
        "podlink/flushSync", {"sessionId": session["id"], "timeoutMs": 20000}
    )
    return status


@pytest.mark.parametrize("target_kind", TWO_WAY_KINDS)
async def test_target_edits_reach_the_workspace(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "two-way")
    session = await start(daemon, workspace)
    assert session["state"] == "ready" and session["sync"]["state"] == "idle"

    target_write(probe, "/app/app/made_in_target.py", b"print('from the target')\n")
    target_write(probe, f"/app/{GREETING}", b"def greet(name):\n    return 'target'\n")
    target_write(probe, "/app/generated/deep/schema.json", b"{}\n")
    target_write(probe, "/app/cache/skip.bin", b"ignored on both sides")
    local_new = workspace / "app" / "made_in_target.py"
    await until(lambda: local_new.exists() and (workspace / "generated/deep/schema.json").exists())
    await until(lambda: b"target" in (workspace / GREETING).read_bytes())
    assert local_new.read_bytes() == b"print('from the target')\n"

    target_shell(
        probe, "rm -rf app/generated" if probe.kind == "local" else "rm -rf /app/generated"
    )
    await until(lambda: not (workspace / "generated").exists())
    assert not (workspace / "cache").exists()

    # And the other way still works while the target is being watched.
    (workspace / "app" / "local_edit.py").write_text("x = 1\n")
    await flush(daemon, session)
    assert probe.read("/app/app/local_edit.py") == b"x = 1\n"
    assert local_part(workspace) == target_part(probe)
    sessions = await daemon.request("podlink/listSessions")
    assert sessions[0]["sync"]["conflicts"] == []


@pytest.mark.parametrize("target_kind", TWO_WAY_KINDS)
async def test_edits_on_both_sides_while_stopped_become_a_listed_conflict(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "two-way")
    session = await start(daemon, workspace)
    await stop(daemon, session)
    (workspace / GREETING).write_text("mine = True\n")
    target_write(probe, f"/app/{GREETING}", b"theirs = True\n")

    session = await start(daemon, workspace)
    [conflict] = session["sync"]["conflicts"]
    assert conflict["path"] == GREETING
    assert session["sync"]["state"] == "conflict"
    copies = sorted((workspace / "app").glob("greeting.py.podlink-conflict-*"))
    assert [copy.read_text() for copy in copies] == ["theirs = True\n"]
    assert copies[0].name in conflict["message"]
    assert conflict["copyPath"] == f"app/{copies[0].name}"
    assert conflict["entry"] == "."  # the sync root its paths are relative to
    assert (workspace / GREETING).read_text() == "mine = True\n"
    assert probe.read(f"/app/{GREETING}") == b"mine = True\n"
    assert not probe.exists(f"/app/app/{copies[0].name}")  # conflict copies stay local
    uri = (workspace / GREETING).resolve().as_uri()
    await until(lambda: bool(daemon.client.diagnostics.get(uri)))
    [diagnostic] = daemon.client.diagnostics[uri]
    assert diagnostic.source == "podlink-sync" and copies[0].name in diagnostic.message

    copies[0].unlink()  # the user looked at it and settled the matter
    (workspace / GREETING).write_text("settled = True\n")
    status = await flush(daemon, session)
    assert status["conflicts"] == [] and status["state"] == "idle"
    await until(lambda: not daemon.client.diagnostics.get(uri))


@pytest.mark.parametrize("target_kind", TWO_WAY_KINDS)
async def test_a_restart_remembers_what_both_sides_agreed_on(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "two-way")
    session = await start(daemon, workspace)
    await stop(daemon, session)
    (workspace / GREETING).unlink()  # deleted while nothing watched
    target_write(probe, "/app/app/added_in_target.py", b"y = 2\n")

    session = await start(daemon, workspace)
    # Without the agreed state, the deletion would look like a file only the target has.
    assert not probe.exists(f"/app/{GREETING}")
    assert not (workspace / GREETING).exists()
    assert (workspace / "app" / "added_in_target.py").read_bytes() == b"y = 2\n"
    assert session["sync"]["conflicts"] == []


@pytest.mark.parametrize("target_kind", TWO_WAY_KINDS)
async def test_upload_mode_reports_target_edits_before_replacing_them(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "upload")
    session = await start(daemon, workspace)
    await stop(daemon, session)
    target_write(probe, f"/app/{GREETING}", b"edited in the target\n")

    mark = daemon.mark()
    await start(daemon, workspace)
    reported = await daemon.wait_for(
        "podlink/log", lambda p: GREETING in p["text"] and "upload mode" in p["text"], since=mark
    )
    assert "changed in the target" in reported["text"]
    assert probe.read(f"/app/{GREETING}") == (workspace / GREETING).read_bytes()


@pytest.mark.parametrize("target_kind", TWO_WAY_KINDS)
async def test_an_emptied_target_pauses_and_reset_refills_it(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "two-way")
    session = await start(daemon, workspace)
    await stop(daemon, session)
    before = local_part(workspace)
    # The container came back without its volume.
    target_shell(probe, "rm -rf app" if probe.kind == "local" else "rm -rf /app")

    shown = asyncio.ensure_future(daemon.client.wait_for_notification("window/showMessage"))
    session = await start(daemon, workspace)
    message = await asyncio.wait_for(shown, 20)
    assert session["sync"]["state"] == "paused"
    assert "paused" in message.message and "volume" in message.message
    assert "podlink reset" in message.message
    assert local_part(workspace) == before  # nothing deleted in the workspace

    status = await daemon.request("podlink/resetSync", {"sessionId": session["id"]})
    assert status["state"] == "idle"
    assert target_part(probe) == local_part(workspace) == before


@pytest.mark.parametrize("target_kind", ["local"])
async def test_resume_applies_what_the_halt_held_back(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "two-way")
    session = await start(daemon, workspace)
    await stop(daemon, session)
    target_shell(probe, "find app -mindepth 1 -delete")
    session = await start(daemon, workspace)
    assert session["sync"]["state"] == "paused"
    [problem] = [p for p in session["sync"]["problems"] if p["path"] == ""]
    assert problem["message"].startswith("paused:")

    status = await daemon.request("podlink/resumeSync", {"sessionId": session["id"]})
    assert status["state"] == "idle"
    assert local_part(workspace) == {}  # the user said the deletion was meant


@pytest.mark.parametrize("target_kind", ["local"])
async def test_deleting_most_of_the_tree_pauses_before_the_target_loses_it(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "upload")
    generated = workspace / "generated"
    generated.mkdir()
    for index in range(40):
        (generated / f"part{index}.txt").write_text(f"{index}\n")
    session = await start(daemon, workspace)

    for index in range(35):
        (generated / f"part{index}.txt").unlink()
    status = await flush(daemon, session)
    assert status["state"] == "paused"
    assert any("maxDeleteShare" in p["message"] for p in status["problems"])
    # The halt came before the first of those deletions reached the target.
    left = [name for name in probe.listing() if name.startswith("generated/part")]
    assert len(left) == 40

    status = await daemon.request("podlink/resumeSync", {"sessionId": session["id"]})
    assert status["state"] == "idle"
    assert not probe.exists("/app/generated/part0.txt")
    assert probe.exists("/app/generated/part39.txt")


@pytest.mark.parametrize("target_kind", ["local"])
async def test_a_mass_delete_halts_before_its_first_deletion_and_one_resume_is_enough(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "upload")
    (workspace / "kept.txt").write_text("before\n")
    generated = workspace / "generated"
    for folder in range(50):
        (generated / f"f{folder}").mkdir(parents=True)
        for index in range(60):
            (generated / f"f{folder}" / f"part{index}.txt").write_text(f"{index}\n")
    session = await start(daemon, workspace)
    synced = [name for name in probe.listing() if name.startswith("generated/")]

    await asyncio.to_thread(shutil.rmtree, generated)  # rm -rf of 3,000 files
    status = await flush(daemon, session)
    assert status["state"] == "paused"
    assert [name for name in probe.listing() if name.startswith("generated/")] == synced

    status = await daemon.request("podlink/resumeSync", {"sessionId": session["id"]})
    assert status["state"] == "idle"
    assert not [name for name in probe.listing() if name.startswith("generated/")]
    # The deletions the user approved do not count against the next edit.
    (workspace / "kept.txt").write_text("after the resume\n")
    status = await flush(daemon, session)
    assert status["state"] == "idle", status
    assert probe.read("/app/kept.txt") == b"after the resume\n"


@pytest.mark.parametrize("target_kind", ["local"])
async def test_an_emptied_workspace_pauses_instead_of_emptying_the_target(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "upload", local="app")
    session = await start(daemon, workspace)
    await stop(daemon, session)
    kept = probe.listing()
    for path in sorted((workspace / "app").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()

    session = await start(daemon, workspace)
    assert session["sync"]["state"] == "paused"
    assert probe.listing() == kept
    [halt] = [p for p in session["sync"]["problems"] if p["path"] == ""]
    assert halt["entry"] == "app"  # the entry's `local:`, not the workspace folder


@pytest.mark.parametrize("target_kind", ["local"])
async def test_a_moved_file_is_renamed_in_the_target(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "upload")
    session = await start(daemon, workspace)
    inode_before = os.stat(probe.root / "app" / GREETING).st_ino  # type: ignore[attr-defined]
    mark = daemon.mark()
    (workspace / GREETING).rename(workspace / "app" / "hello.py")
    await flush(daemon, session)
    moved = probe.root / "app" / "app" / "hello.py"  # type: ignore[attr-defined]
    assert os.stat(moved).st_ino == inode_before
    assert not probe.exists(f"/app/{GREETING}")
    logged = [p["text"] for p in daemon.received("podlink/log", mark) if p["source"] == "sync"]
    assert any("renamed" in text for text in logged), logged


@pytest.mark.parametrize("target_kind", ["local"])
async def test_unusual_entries_are_synced_or_reported_while_the_rest_goes_on(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "upload")
    (workspace / "empty-folder").mkdir()
    script = workspace / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (workspace / "link-inside").symlink_to("app/greeting.py")
    (workspace / "link-outside").symlink_to("../../etc/passwd")
    os.mkfifo(workspace / "pipe")
    (workspace / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"a latin-1 name")
    unreadable = workspace / "secret.txt"
    unreadable.write_text("no")
    unreadable.chmod(0)

    session = await start(daemon, workspace)
    listing = probe.listing()
    assert listing["empty-folder"][0] == "dir"
    assert listing["run.sh"][1] == 0o755
    assert probe.read("/app/run.sh") == script.read_bytes()
    assert listing["link-inside"] == ("link", "app/greeting.py")
    assert "link-outside" not in listing and "pipe" not in listing
    problems = {p["path"]: p["message"] for p in session["sync"]["problems"]}
    assert "outside" in problems["link-outside"]
    assert "UTF-8" in problems["caf\ufffd.txt"]
    if os.geteuid() != 0:  # root reads any file
        assert "secret.txt" in problems
    assert probe.read("/app/app/greeting.py") == (workspace / GREETING).read_bytes()

    # A file replaced by a folder, and back.
    (workspace / "run.sh").unlink()
    (workspace / "run.sh").mkdir()
    (workspace / "run.sh" / "inner.txt").write_text("inside\n")
    await flush(daemon, session)
    assert probe.read("/app/run.sh/inner.txt") == b"inside\n"
    (workspace / "run.sh" / "inner.txt").unlink()
    (workspace / "run.sh").rmdir()
    (workspace / "run.sh").write_text("a file again\n")
    await flush(daemon, session)
    assert probe.read("/app/run.sh") == b"a file again\n"


@pytest.mark.parametrize("target_kind", ["docker"])
async def test_files_written_in_the_target_belong_to_the_configured_owner(
    daemon: Daemon, workspace: Path, probe: TargetProbe
) -> None:
    configure(workspace, probe, "two-way", owner="1000:1000")
    session = await start(daemon, workspace)
    (workspace / "app" / "later.py").write_text("z = 3\n")
    await flush(daemon, session)
    assert isinstance(probe, DockerProbe)
    owners = probe._run(
        "stat", "-c", "%u:%g %n", f"/app/{GREETING}", "/app/app/later.py", "/app/app"
    )
    assert [line.split()[0] for line in owners.splitlines()] == ["1000:1000"] * 3
