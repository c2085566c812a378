"""A Session: one workspace folder bound to one target, owning sync, watchers and the app.

The session's state lives in its store; lifecycle, sync, recovery and the app dispatch events
to it, and the store tells the listener (the language server, or the terminal for
``podlink up``) at most ten times a second. This class holds the running parts and is what
the server, the CLI, tests and builds talk to.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from podlink import protocol
from podlink.agent.transport import FileTransport
from podlink.build import BuildRunner
from podlink.config import Config
from podlink.diagnostics import Diagnostic, DiagnosticSource
from podlink.ignored import explain_path
from podlink.session.app import AppRunner
from podlink.session.debug import DebugContext, Debugger, DebugNotPossible
from podlink.session.debug_attach import RunningProcessDebugger
from podlink.session.debug_tests import TestDebugging
from podlink.session.diagnostics import SessionDiagnostics
from podlink.session.lifecycle import Lifecycle
from podlink.session.listener import GuardedListener, SessionListener
from podlink.session.ports import PortForwards
from podlink.session.recovery import Recovery
from podlink.session.status import app_status, describe_session, sync_status
from podlink.session.status_file import StatusFile
from podlink.session.store import ChangeEmitter, SessionStore
from podlink.session.sync import SessionSync
from podlink.sync.engine import SyncEngine
from podlink.sync.outcome import ProgressCallback
from podlink.sync.watch import TreeWatcher
from podlink.targets.base import Target, TargetUnavailable
from podlink.targets.capabilities import OnThisMachine
from podlink.testing.runner import ResultCallback, RunSummary, TestRunner

__all__ = ["ProgressCallback", "Session", "SessionListener"]


class Session:
    def __init__(self, config: Config, listener: SessionListener) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.config = config
        self.listener: SessionListener = GuardedListener(listener)
        self.store = SessionStore()
        self.status_file = StatusFile(self.id)
        self.store.subscribe(ChangeEmitter(self.to_protocol, self.listener, self.status_file))
        self.target: Target | None = None
        self.agent: FileTransport | None = None
        self.engines: list[SyncEngine] = []
        self.watchers: list[TreeWatcher] = []
        self.app: AppRunner | None = None
        self.ports = PortForwards(
            self._open_tunnel,
            self._check_target,
            on_change=self.store.part_changed,
            on_log=lambda text: self.log("daemon", text),
        )
        self.debugger: Debugger | None = None
        self.attacher: RunningProcessDebugger | None = None
        self.diagnostics = SessionDiagnostics(self.listener)
        self.sync = SessionSync(self)
        self.recovery = Recovery(self)
        self.lifecycle = Lifecycle(self)
        self.tests = TestRunner(self)
        self.builds = BuildRunner(self)

    @property
    def folder(self) -> Path:
        return self.config.folder

    @property
    def state(self) -> protocol.SessionState:
        return self.store.state.state

    @property
    def sync_state(self) -> protocol.SyncState:
        return self.store.state.sync_state

    @property
    def error(self) -> str | None:
        return self.store.state.error

    @property
    def transport(self) -> FileTransport | None:
        """The file channel into the target while connected (tests put their plugin there)."""
        return self.agent

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, progress: ProgressCallback | None = None) -> None:
        """Connect, sync, watch and start the app. Raises TargetUnavailable, cleaned up."""
        await self.lifecycle.start(progress)

    async def stop(self) -> None:
        await self.lifecycle.stop()

    async def apply_config(self, config: Config) -> None:
        """Restart every part under a new, already validated configuration."""
        await self.lifecycle.apply_config(config)

    async def reload_config(self) -> None:
        """Re-read the config file after it changed; a broken one keeps the running config."""
        await self.lifecycle.reload_config()

    # -- sync ----------------------------------------------------------------------------

    async def flush(self, timeout_seconds: float | None = None) -> protocol.SyncStatus:
        """Return once every local change made before the call is in the target."""
        return await self.sync.flush(timeout_seconds)

    async def resume_sync(self) -> protocol.SyncStatus:
        """Apply what a safety halt held back (the user looked and agreed)."""
        return await self.sync.resume()

    async def reset_sync(self) -> protocol.SyncStatus:
        """Forget the agreed state and sync afresh: the workspace is the truth."""
        return await self.sync.reset()

    def explain_path(self, path: Path) -> protocol.PathExplanation:
        """Whether a local path is synced, by the rules as they are on disk now."""
        return explain_path(self.config, path)

    # -- app -----------------------------------------------------------------------------

    async def restart_app(self) -> protocol.AppProcess | None:
        if self.app is None:
            return None
        await self.app.restart()
        return app_status(self.app)

    async def stop_app(self) -> None:
        if self.app is not None:
            await self.app.stop()

    # -- ports and debugging ---------------------------------------------------------------

    def _shares_loopback(self) -> bool:
        """The local target's 127.0.0.1 is this machine's: a port's own number is the app's."""
        return isinstance(self.target, OnThisMachine)

    async def open_configured_ports(self) -> None:
        for port in self.config.ports:
            try:
                await self.add_port(port.remote_port, port.local_port)
            except OSError as error:
                self.log("daemon", f"cannot forward port {port.remote_port}: {error}")

    async def add_port(
        self, remote_port: int, local_port: int | None = None
    ) -> protocol.PortForward:
        """Forward ``remote_port`` to 127.0.0.1:``local_port`` or the next free port."""
        forward = await self.ports.add(
            remote_port, local_port, shares_loopback=self._shares_loopback()
        )
        if self.state == "degraded":
            forward.target_lost(self.error or "the target is unreachable")
        return forward.to_protocol()

    async def remove_port(self, local_port: int) -> bool:
        return await self.ports.remove(local_port)

    async def _open_tunnel(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        target = self.target
        if target is None or self.state == "stopped":
            raise TargetUnavailable("the session is stopped")
        return await target.tunnel(port)

    async def _check_target(self) -> None:
        """A forward's retry: the target is usable again once the session reconnected."""
        if self.target is None or self.state in ("degraded", "stopped"):
            raise TargetUnavailable(self.error or "the session is not connected to its target")

    def _debug_context(self, target: Target, log_source: protocol.LogSource) -> DebugContext:
        """What a debugger of this session works with; its messages go to ``log_source``."""
        return DebugContext(
            config=self.config,
            target=target,
            transport=lambda: self.agent,
            forwards=self.ports,
            shares_loopback=self._shares_loopback(),
            log=lambda text: self.log(log_source, text),
        )

    async def start_debug(
        self, attach_port: int | None = None, attach_pid: int | None = None
    ) -> dict[str, Any]:
        """Run the app under debugpy from now on; the editor's attach configuration. With
        ``attach_port`` (or debug.attach.port), attach to a process that already serves
        debugpy on that port in the target instead, and restart nothing; with ``attach_pid``
        (or debug.attach.pid), inject debugpy into that process.

        Raises DebugNotPossible (the configuration, or what the target lacks for a pid) or
        TargetUnavailable (the target).
        """
        configured = self.config.debug.attach
        if attach_port is None and attach_pid is None and configured is not None:
            attach_port, attach_pid = configured.port, configured.pid
        if attach_port is not None:
            return await self._running_process_debugger().attach(attach_port)
        if attach_pid is not None:
            return await self._running_process_debugger().attach_pid(attach_pid)
        if self.app is None:
            raise DebugNotPossible("this session runs no app: add a `run:` section to podlink.yaml")
        if self.target is None or self.state != "ready":
            raise TargetUnavailable(self.error or f"the session is {self.state}, not ready")
        if self.debugger is None:
            self.debugger = Debugger(self._debug_context(self.target, "daemon"), self.app)
        return await self.debugger.start()

    def _running_process_debugger(self) -> RunningProcessDebugger:
        if self.target is None or self.state != "ready":
            raise TargetUnavailable(self.error or f"the session is {self.state}, not ready")
        if self.attacher is None:
            self.attacher = RunningProcessDebugger(self._debug_context(self.target, "daemon"))
        return self.attacher

    async def debug_tests(
        self,
        ids: Sequence[str] | None,
        run_id: str | None,
        on_result: ResultCallback | None = None,
    ) -> tuple[str, dict[str, Any], asyncio.Task[RunSummary]]:
        """Start a test run under debugpy; once pytest waits for a debugger: the run's id,
        the attach configuration and the run itself, which ends after the debugger let it.

        Raises DebugNotPossible (the configuration), InvalidTestRequest (a run id in use) or
        TargetUnavailable (the target, or pytest ended before it could be attached to).
        """
        if self.target is None or self.state != "ready":
            raise TargetUnavailable(self.error or f"the session is {self.state}, not ready")
        run_id = run_id or uuid.uuid4().hex[:12]
        debugging = TestDebugging(self._debug_context(self.target, "test"))

        async def run_then_clean_up() -> RunSummary:
            try:
                return await self.tests.run(ids, run_id, on_result, under=debugging)
            finally:
                await debugging.close()

        run = asyncio.create_task(run_then_clean_up())
        configuration = asyncio.ensure_future(debugging.configuration())
        try:
            await asyncio.wait({run, configuration}, return_when=asyncio.FIRST_COMPLETED)
            if configuration.done():
                return run_id, configuration.result(), run
            summary = run.result()  # raises what stopped the run from starting
            raise TargetUnavailable(
                "pytest ended before a debugger could attach"
                + (
                    f": {summary.problem}"
                    if summary.problem
                    else f" (exit code {summary.exit_code})"
                )
            )
        except BaseException:
            configuration.cancel()
            if not run.done():
                await self.tests.cancel(run_id)
                with contextlib.suppress(Exception):
                    await run
            raise

    # -- state out -------------------------------------------------------------------------

    def sync_status(self) -> protocol.SyncStatus:
        return sync_status(self)

    def to_protocol(self) -> protocol.Session:
        return describe_session(self)

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        """For tests and builds: replace ``source``'s diagnostics of a local file."""
        self.diagnostics.publish(source, path, diagnostics)

    def log(self, source: protocol.LogSource, text: str) -> None:
        self.listener.log(self.id, source, text)
