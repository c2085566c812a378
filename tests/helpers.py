"""Helpers shared by tests: tree listings to compare, and process trees from /proc."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from podlink.agent.transport import FileTransport
from podlink.sync.ancestor import AncestorStore
from podlink.sync.engine import SyncEngine
from podlink.sync.ignore import IgnoreRules
from podlink.targets.local import LocalTarget


def tree_listing(root: Path) -> dict[str, Any]:
    """Every path under ``root`` with its kind, permission bits, and content digest or link."""
    listing: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(folder) / name
            relative = full.relative_to(root).as_posix()
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                listing[relative] = ("link", os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                listing[relative] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                listing[relative] = ("file", stat.S_IMODE(info.st_mode), digest)
    return listing


def descendants(pid: int) -> list[int]:
    """Living processes below ``pid``, found through /proc (zombies left out)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = (Path("/proc") / entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, parent = fields[0], int(fields[1])
        if state != "Z":
            children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def processes_mentioning(text: str) -> list[str]:
    """Command lines of living processes that contain ``text``, searched in all of /proc: a
    daemonized process (debugpy's adapter) is nobody's descendant."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            args = (Path("/proc") / entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in args:
            found.append(args.decode(errors="replace"))
    return found


def run_podlink(
    *args: str,
    cwd: Path,
    env: dict[str, str],
    stdin_text: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the `podlink` command to its end; stdin is ``stdin_text``, or empty (never a TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "podlink", *args],
        cwd=cwd,
        env=env,
        input=stdin_text if stdin_text is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_podlink(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a long-running `podlink` command (such as `up`); stderr goes with stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "podlink", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def engine_on(
    transport: FileTransport, target: LocalTarget, workspace: Path, store: Path | None = None
) -> SyncEngine:
    """An engine syncing ``workspace`` to /app of the local target, its state in ``store``."""
    return SyncEngine(
        transport,
        workspace,
        target.target_path("/app"),
        lambda: IgnoreRules.for_tree(workspace),
        store=AncestorStore(store) if store is not None else None,
    )
