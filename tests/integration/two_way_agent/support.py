"""Helpers for driving an agent in a target: shell commands there, and the changes it reports."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable

import pytest

from podlink.agent.client import RemoteChanges
from podlink.sync.core.snapshot import Entry
from podlink.targets.base import Target

MiB = 1024 * 1024


async def sh(target: Target, script: str, cwd: str | None = None) -> str:
    """Run ``script`` with ``sh`` in the target (in ``cwd``); its output, failing on an error."""
    if cwd is not None:
        script = f"cd {shlex.quote(cwd)} && {script}"
    running = await target.exec(["sh", "-c", script])
    output = await running.stdout.read()
    errors = await running.stderr.read() if running.stderr is not None else b""
    code = await running.wait()
    assert code == 0, f"{script!r} failed with exit code {code}: {errors.decode()}"
    return output.decode()


class Reported:
    """A watch's ``on_changes``: every report it got, and the tree as those reports describe it."""

    def __init__(self) -> None:
        self.reports: list[RemoteChanges] = []
        self.view: dict[str, Entry | None] = {}  # None: reported gone
        self._arrived = asyncio.Event()

    def __call__(self, changes: RemoteChanges) -> None:
        self.reports.append(changes)
        for gone in changes.gone:
            for path in list(self.view):
                if path == gone or path.startswith(gone + "/"):
                    self.view[path] = None
            self.view[gone] = None
        self.view.update(changes.entries)
        self._arrived.set()

    def present(self, path: str) -> Entry | None:
        return self.view.get(path)

    def gone(self, top: str) -> bool:
        """Whether ``top`` and everything reported below it were reported gone."""
        below = [path for path in self.view if path == top or path.startswith(top + "/")]
        return top in self.view and all(self.view[path] is None for path in below)

    def paths(self) -> set[str]:
        """Every path any report named."""
        return {path for report in self.reports for path in (*report.entries, *report.gone)}

    async def until(self, condition: Callable[[], bool], within: float = 20.0) -> None:
        """Wait for reports until ``condition`` holds."""
        try:
            async with asyncio.timeout(within):
                while not condition():
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            pytest.fail(f"not reported within {within} s; the reports said: {self.view}")
