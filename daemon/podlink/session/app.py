"""The app loop: ``run.command`` started in the target, its output streamed, restarted on sync.

Stopping always takes the whole process group (SIGTERM, then SIGKILL after a grace period),
so a restart never leaves an orphan holding the app's port. An app that ends by itself shows
``exited`` with its exit code; its output, a traceback included, is in the log already, and
the line saying it exited repeats the last of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import shlex
from collections.abc import Callable, Mapping
from typing import Literal, Protocol

from podlink.targets.base import ExecStream, Target, TargetUnavailable

log = logging.getLogger(__name__)

AppState = Literal["running", "exited", "restarting", "stopped"]
TAIL_LINES = 20
STOP_GRACE_SECONDS = 3.0
# The app's output is read in pieces of this size (and longer lines are cut to it).
OUTPUT_CHUNK = 1 << 16
# How long to keep reading the app's output once it has exited. What it wrote itself is
# there at once; a daemon it left behind (debugpy's adapter is one) may hold the pipes open.
OUTPUT_DRAIN_SECONDS = 1.0


class AppWrapper(Protocol):
    """Changes how the app runs: debugging runs it under debugpy."""

    async def launch(
        self, command: tuple[str, ...], env: Mapping[str, str]
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        """The command and environment to start; TargetUnavailable: start it as configured."""

    def started(self) -> None:
        """The app was started (again)."""

    async def stopping(self) -> None:
        """The app is being stopped: stop what it started outside its process group."""


class AppRunner:
    def __init__(
        self,
        target: Target,
        command: tuple[str, ...],
        *,
        cwd: str,
        env: Mapping[str, str],
        on_output: Callable[[str], None],
        on_change: Callable[[], None],
    ) -> None:
        self._target = target
        self.command = command
        self._cwd = cwd
        self._env = dict(env)
        self._on_output = on_output
        self._on_change = on_change
        self.state: AppState = "stopped"
        self.exit_code: int | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._process: ExecStream | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.wrapper: AppWrapper | None = None

    @property
    def cwd(self) -> str:
        return self._cwd

    @property
    def env(self) -> dict[str, str]:
        return dict(self._env)

    async def start(self) -> None:
        async with self._lock:
            await self._start_locked()

    async def restart(self) -> None:
        async with self._lock:
            self._set_state("restarting")
            await self._stop_locked(final_state="restarting")
            await self._start_locked()

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_locked(final_state="stopped")

    async def _start_locked(self) -> None:
        self.exit_code = None
        self.tail.clear()
        command, env = self.command, self._env
        if self.wrapper is not None:
            try:
                command, env = await self.wrapper.launch(command, env)
            except TargetUnavailable as error:
                self._report_line(f"podlink: {error}; starting the app as configured")
        self._on_output(f"$ {shlex.join(command)}")
        try:
            process = await self._target.exec(command, env=env, cwd=self._cwd)
        except TargetUnavailable as error:
            self.exit_code = None
            self._report_line(f"podlink: could not start the app: {error}")
            self._set_state("exited")
            return
        self._process = process
        self._set_state("running")
        self._supervisor = asyncio.create_task(self._supervise(process))
        if self.wrapper is not None:
            self.wrapper.started()

    async def _stop_locked(self, final_state: AppState) -> None:
        process, supervisor = self._process, self._supervisor
        self._process = self._supervisor = None
        if process is not None:
            if self.wrapper is not None:
                await asyncio.gather(process.terminate(STOP_GRACE_SECONDS), self.wrapper.stopping())
            else:
                await process.terminate(STOP_GRACE_SECONDS)
            self._report_left_behind(process)
        if supervisor is not None:
            # Bounded: a process the target could not end may hold the app's output open.
            done, _ = await asyncio.wait({supervisor}, timeout=OUTPUT_DRAIN_SECONDS + 1)
            if not done:
                supervisor.cancel()
                self._report_line(
                    "podlink: stopped reading the app's output; something it started still "
                    "holds it open"
                )
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        self._set_state(final_state)

    def _report_left_behind(self, process: ExecStream) -> None:
        left = getattr(process, "left_behind", ())
        if left:
            self._report_line(
                f"podlink: still running after the app was stopped: {', '.join(left)}"
            )

    async def _supervise(self, process: ExecStream) -> None:
        streams = [process.stdout] + ([process.stderr] if process.stderr is not None else [])
        pumps = [asyncio.ensure_future(self._pump(stream)) for stream in streams]
        try:
            code = await process.wait()
            await asyncio.wait(pumps, timeout=OUTPUT_DRAIN_SECONDS)
        finally:
            for pump in pumps:
                pump.cancel()
        if self._process is not process:
            return  # stopped on purpose; the stopper sets the state
        self._process = None
        await process.terminate(0)  # children that outlived it must not hold its port
        self._report_left_behind(process)
        self.exit_code = code
        last = next((line.strip() for line in reversed(self.tail) if line.strip()), "")
        said = f" (its last output: {last})" if code != 0 and last else ""
        self._on_output(f"podlink: the app exited with code {code}{said}")
        self._set_state("exited")

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        """Hand over the output line by line, reading it in big pieces: an app that logs
        tens of MB a second must not wait on one await per line. Memory stays bounded: a
        line longer than OUTPUT_CHUNK is handed over in pieces of that size."""
        partial = b""
        while True:
            chunk = await stream.read(OUTPUT_CHUNK)
            if not chunk:
                if partial:
                    self._report_line(partial.decode("utf-8", errors="replace").rstrip("\r"))
                return
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            while len(partial) >= OUTPUT_CHUNK:
                lines.append(partial[:OUTPUT_CHUNK])
                partial = partial[OUTPUT_CHUNK:]
            for line in lines:
                self._report_line(line.decode("utf-8", errors="replace").rstrip("\r"))

    def _report_line(self, text: str) -> None:
        self.tail.append(text)
        self._on_output(text)

    def _set_state(self, state: AppState) -> None:
        if state != self.state:
            self.state = state
            self._on_change()
