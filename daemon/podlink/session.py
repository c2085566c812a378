"""A Session: one workspace folder bound to one target, owning sync, watchers and the app.

The session holds the state; its parts report changes to it, and it tells its listener (the
language server, or the terminal for ``podlink up``) at most ten times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from podlink import protocol
from podlink.agent.client import AgentError, AgentGone
from podlink.agent.transport import FileTransport, start_transport
from podlink.app import AppRunner
from podlink.build import BuildRunner
from podlink.config import Config, ConfigError, SyncEntryConfig, load_config
from podlink.debug import Debugger, DebugNotPossible
from podlink.diagnostics import Diagnostic, DiagnosticSource
from podlink.ignored import explain_path, rules_for_entry
from podlink.ports import PortForwards
from podlink.runtime import sessions_dir, state_dir
from podlink.sync.ancestor import AncestorStore, ancestor_file
from podlink.sync.core.reconcile import Conflict, Mode
from podlink.sync.engine import SyncEngine, SyncRootRefused
from podlink.sync.ignore import IgnoreRules
from podlink.sync.outcome import BatchResult, ProgressCallback
from podlink.sync.scan import IGNORED_EXAMPLES, LocalScan, scan_tree
from podlink.sync.watch import TreeWatcher
from podlink.targets.base import Target, TargetEventKind, TargetUnavailable
from podlink.targets.docker_build import BuildFailure
from podlink.targets.factory import make_target
from podlink.targets.local import LocalTarget
from podlink.testing import TestRunner

log = logging.getLogger(__name__)

NOTIFY_INTERVAL_SECONDS = 0.1
RECONNECT_FIRST_DELAY = 0.05
RECONNECT_MAX_DELAY = 15.0
INITIAL_SYNC_ATTEMPTS = 3


class SessionListener(Protocol):
    def session_changed(self, session: protocol.Session) -> None: ...

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None: ...

    def show_error(self, message: str) -> None:
        """Something the user must see now (the editor shows a message box)."""

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        """Replace ``source``'s diagnostics for the local file ``path`` (empty: clear)."""


class GuardedListener:
    """A listener that never raises into the session: telling the user about a sync, a line of
    the app's output or a diagnostic must not end the task that was doing the work. A failure
    to report is logged (with its traceback) to the daemon's log and the work goes on."""

    def __init__(self, inner: SessionListener) -> None:
        self._inner = inner

    def session_changed(self, session: protocol.Session) -> None:
        self._call("session_changed", self._inner.session_changed, session)

    def log(self, session_id: str, source: protocol.LogSource, text: str) -> None:
        self._call("log", self._inner.log, session_id, source, text)

    def show_error(self, message: str) -> None:
        self._call("show_error", self._inner.show_error, message)

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        self._call(
            "publish_diagnostics", self._inner.publish_diagnostics, source, path, diagnostics
        )

    @staticmethod
    def _call(name: str, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:
            log.exception("the session's listener failed in %s; the session goes on", name)


class Session:
    def __init__(self, config: Config, listener: SessionListener) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.config = config
        self._listener: SessionListener = GuardedListener(listener)
        self.state: protocol.SessionState = "starting"
        self.error: str | None = None
        self.sync_state: protocol.SyncState = "idle"
        self.files_synced = 0
        self.bytes_synced = 0
        self.last_latency_ms: float | None = None
        self.target: Target | None = None
        self._agent: FileTransport | None = None
        self.engines: list[SyncEngine] = []
        self._watchers: list[TreeWatcher] = []
        self.app: AppRunner | None = None
        self.ports = PortForwards(
            self._open_tunnel,
            self._check_target,
            on_change=self._changed,
            on_log=lambda text: self._log("daemon", text),
        )
        self._debugger: Debugger | None = None
        self._restart_owed = False
        self._reconfiguring = asyncio.Lock()
        self._following: asyncio.Task[None] | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._recovery_wake = asyncio.Event()
        self._engines_ready = asyncio.Event()
        self._published: dict[DiagnosticSource, set[Path]] = {}
        self._halts_shown: set[str] = set()
        self._conflicts_published: list[tuple[Path, Conflict]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._emit_handle: asyncio.TimerHandle | None = None
        self._last_emit = 0.0
        self.tests = TestRunner(self)
        self.builds = BuildRunner(self)

    @property
    def folder(self) -> Path:
        return self.config.folder

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, progress: ProgressCallback | None = None) -> None:
        """Connect, sync, watch and start the app. Raises TargetUnavailable, cleaned up."""
        try:
            await self._bring_up(progress)
        except BuildFailure as failure:
            await self._fail_start(str(failure))
            if failure.line is not None:
                diagnostic = Diagnostic(line=failure.line, message=failure.message)
                self._publish("podlink-build", failure.dockerfile, [diagnostic])
            raise TargetUnavailable(str(failure)) from failure
        except (TargetUnavailable, AgentGone) as error:
            await self._fail_start(str(error))
            raise TargetUnavailable(str(error)) from error
        except ConfigError as error:
            # A file the start read is wrong (a deploy manifest, a setting the target refused).
            await self._fail_start(str(error))
            raise
        self._clear_diagnostics("podlink-build")

    async def _fail_start(self, message: str) -> None:
        await self._tear_down()
        self.state, self.error = "stopped", message
        self._emit_now()

    async def stop(self) -> None:
        await self._tear_down()
        self.state = "stopped"
        self._emit_now()
        with contextlib.suppress(OSError):
            self._status_file().unlink(missing_ok=True)

    async def apply_config(self, config: Config) -> None:
        """Restart every part under a new, already validated configuration."""
        async with self._reconfiguring:
            await self._apply_config_locked(config)

    async def _apply_config_locked(self, config: Config) -> None:
        self._log("daemon", f"configuration changed ({config.path}): restarting the session")
        debugging = self._debugger is not None
        await self._tear_down()
        self.config = config
        self.state, self.error = "starting", None
        await self.start()
        if debugging:
            try:
                await self.start_debug()
            except (DebugNotPossible, TargetUnavailable) as error:
                self._log("daemon", f"debugging stopped with the new configuration: {error}")

    async def _bring_up(self, progress: ProgressCallback | None) -> None:
        self.state, self.error = "starting", None
        self._changed()
        target = make_target(self.config, lambda line: self._log("build", line))
        self.target = target
        self._engines_ready.clear()
        # The local side needs nothing from the target: scan it while the target is reached.
        prepared = [self._rules_factory(entry)() for entry in self.config.sync]
        local_scans = [
            asyncio.ensure_future(asyncio.to_thread(scan_tree, self.config.local_root(e), rules))
            for e, rules in zip(self.config.sync, prepared, strict=True)
        ]
        try:
            # Watch before the first scan: a save made while it runs is queued, not lost.
            for index, entry in enumerate(self.config.sync):
                watcher = TreeWatcher(
                    self.config.local_root(entry),
                    functools.partial(self._is_ignored, index, prepared[index]),
                    functools.partial(self._on_batch, index),
                    on_warning=self._warn,
                    is_unwatched=functools.partial(_never_synced, prepared[index]),
                )
                watcher.start()
                self._watchers.append(watcher)
            await target.connect()
            self._following = asyncio.create_task(self._follow_target(target))
            self._agent = await start_transport(target, lambda text: self._log("sync", text))
        except BaseException:
            for scan in local_scans:
                scan.cancel()
            raise
        self.state, self.sync_state = "syncing", "scanning"
        self._changed()
        for entry, rules in zip(self.config.sync, prepared, strict=True):
            self.engines.append(self._make_engine(target, entry, rules))
        self._engines_ready.set()
        try:
            await self._initial_sync(target, progress, local_scans)
        except SyncRootRefused as refused:
            raise self._refused_setting(refused) from refused
        self.sync_state = self._settled_sync_state()
        if self.config.run is not None:
            run = self.config.run
            self.app = AppRunner(
                target,
                run.command,
                cwd=target.target_path(run.cwd or self.config.sync[0].remote),
                env=run.env,
                on_output=lambda text: self._log("app", text),
                on_change=self._changed,
            )
            await self.app.start()
        await self._open_configured_ports()
        self.state = "ready"
        self._changed()

    def _refused_setting(self, refused: SyncRootRefused) -> ConfigError:
        """The key of podlink.yaml behind what the target refused, and what to do."""
        index = next(
            (i for i, e in enumerate(self.engines) if e.remote_root == refused.remote_root), 0
        )
        entry = self.config.sync[index]
        if refused.field == "owner":
            hint = (
                "name a user (or user:group) that exists in the target, e.g. one `id` prints "
                "there, or leave owner out to keep the target's own user"
            )
        else:
            hint = f"choose a folder for {entry.local} that can be made there, e.g. /app"
        return ConfigError(
            self.config.path or self.folder / "podlink.yaml",
            f"the target refused {getattr(entry, refused.field)!r}: {refused.message}",
            key=f"sync[{index}].{refused.field}",
            hint=hint,
        )

    async def _initial_sync(
        self,
        target: Target,
        progress: ProgressCallback | None,
        local_scans: Sequence[asyncio.Future[LocalScan]],
    ) -> None:
        """Sync every entry; an agent lost on the way is started again, a few times.

        Each try reconciles both sides afresh, so what the lost agent had finished counts and
        a file it was writing (only ever a temporary file in the target) is sent again.
        """
        scans: list[asyncio.Future[LocalScan] | None] = list(local_scans)
        for attempt in range(1, INITIAL_SYNC_ATTEMPTS + 1):
            try:
                # Watch before the first scan: a change made while it runs is queued, not lost.
                await self._watch_target_sides()
                for index, (entry, engine) in enumerate(
                    zip(self.config.sync, self.engines, strict=True)
                ):
                    result = await engine.initial_sync(progress, scans[index])
                    scans[index] = None  # a retry scans again: the tree may have changed
                    self._count(result)
                    summary = describe(result)
                    self._log("sync", f"initial sync of {entry.local} -> {entry.remote}: {summary}")
                    self._note_outcome(result)
                return
            except AgentGone as error:
                if attempt == INITIAL_SYNC_ATTEMPTS:
                    raise
                self._log("sync", f"{error}; starting the agent again")
                if self._agent is not None:
                    await self._agent.close()
                self._agent = await start_transport(target, lambda text: self._log("sync", text))
                for engine in self.engines:
                    engine.agent = self._agent

    async def _tear_down(self) -> None:
        await asyncio.gather(self.tests.stop(), self.builds.stop())
        for task in (self._recovering, self._following):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._recovering = self._following = None
        self._engines_ready.set()  # a batch waiting for engines must not hold up its watcher
        watchers, self._watchers = self._watchers, []
        await asyncio.gather(*(watcher.stop() for watcher in watchers))
        await self.ports.close()
        debugger, self._debugger = self._debugger, None
        app, self.app = self.app, None
        if app is not None:
            await app.stop()
        if debugger is not None:
            await debugger.close()
        engines, self.engines = self.engines, []
        for engine in engines:
            await engine.close()
        agent, self._agent = self._agent, None
        if agent is not None:
            await agent.close()
        target, self.target = self.target, None
        if target is not None:
            await target.close()

    def _make_engine(
        self, target: Target, entry: SyncEntryConfig, rules: IgnoreRules
    ) -> SyncEngine:
        assert self._agent is not None
        mode = Mode(entry.mode)
        if mode is Mode.TWO_WAY and self._agent.two_way is None:
            raise TargetUnavailable(
                f"sync of {entry.local} is two-way, which needs python3 in the target; "
                "install python3 in the image or use mode: upload"
            )
        description = target.describe()
        store = AncestorStore(
            ancestor_file(
                state_dir(),
                str(self.config.local_root(entry)),
                entry.remote,
                self.config.target_kind,
                description.name,
            )
        )
        return SyncEngine(
            self._agent,
            self.config.local_root(entry),
            target.target_path(entry.remote),
            self._rules_factory(entry),
            rules,
            mode=mode,
            store=store,
            max_delete_share=entry.max_delete_share,
            owner=entry.owner,
            delete_unknown=entry.delete_unknown,
            report=lambda text: self._log("sync", text),
        )

    async def _watch_target_sides(self) -> None:
        for engine in self.engines:
            if engine.mode is Mode.TWO_WAY:
                warning = await engine.watch_target(self._after_target_change)
                if warning:
                    self._log("sync", warning)

    async def _after_target_change(self, result: BatchResult, latency_ms: float) -> None:
        await self._after_sync(result, latency_ms if result.changed_anything else None)

    def _rules_factory(self, entry: SyncEntryConfig) -> Callable[[], IgnoreRules]:
        return functools.partial(rules_for_entry, self.config, entry)

    # -- sync ----------------------------------------------------------------------------

    def _is_ignored(self, index: int, first_rules: IgnoreRules, path: str) -> bool:
        """The watcher's filter: the engine's current rules once it exists."""
        rules = self.engines[index].rules if len(self.engines) > index else first_rules
        return rules.is_ignored(path)

    async def _on_batch(self, index: int, paths: set[str], first_seen: float) -> None:
        await self._engines_ready.wait()
        if self.state == "stopped" or index >= len(self.engines):
            return  # torn down while the batch waited
        engine = self.engines[index]
        if self._config_file_in(engine, paths):
            reload = asyncio.get_running_loop().create_task(self.reload_config())
            self._background.add(reload)
            reload.add_done_callback(self._background.discard)
        self.sync_state = "syncing"
        self._changed()
        try:
            result = await engine.sync_paths(paths)
        except AgentGone as error:
            self._lost_agent(error)
            return
        latency_ms = (asyncio.get_running_loop().time() - first_seen) * 1000
        await self._after_sync(result, latency_ms)

    async def _after_sync(self, result: BatchResult, latency_ms: float | None) -> None:
        self._note_outcome(result)
        self.sync_state = self._settled_sync_state()
        if result.changed_anything:
            self._count(result)
            if latency_ms is not None:
                self.last_latency_ms = round(latency_ms, 1)
            took = f" in {latency_ms:.0f} ms" if latency_ms is not None else ""
            self._log("sync", f"synced {describe(result)}{took}")
            # Only what went into the target restarts the app: files the app writes itself
            # come back in two-way mode and must not restart it in a loop.
            if (
                result.paths
                and self.app is not None
                and self.config.run
                and self.config.run.restart == "on-sync"
            ):
                self._restart_owed = True
        # More changes already waiting: restart once they are written too, not halfway.
        if self._restart_owed and not any(w.pending_count for w in self._watchers):
            self._restart_owed = False
            if self.app is not None:
                await self.app.restart()
        self._changed()

    def _warn(self, message: str) -> None:
        self._log("sync", message)
        self._listener.show_error(message)

    def _note_outcome(self, result: BatchResult) -> None:
        """Tell the user about a halt once, and keep conflict diagnostics current."""
        if result.halted is not None and result.halted.reason not in self._halts_shown:
            self._halts_shown.add(result.halted.reason)
            message = (
                f"podlink paused the sync: {result.halted.reason}. Resume with "
                "`podlink resume` (apply it) or `podlink reset` (forget the last synced "
                "state and make the target match the workspace)."
            )
            self._log("sync", message)
            self._listener.show_error(message)
        self._publish_conflicts()

    def _publish_conflicts(self) -> None:
        # Every sync result comes here, a saved file's too: only a changed list is sent.
        listed = [
            (engine.local_root, c) for engine in self.engines for c in engine.conflicts.values()
        ]
        if listed == self._conflicts_published:
            return
        self._conflicts_published = listed
        current: dict[Path, list[Diagnostic]] = {}
        for local_root, conflict in listed:
            local = local_root / conflict.path
            if not local.is_dir():
                current.setdefault(local, []).append(
                    Diagnostic(line=1, message=f"sync conflict: {conflict.message}")
                )
        for stale in self._published.get("podlink-sync", set()) - current.keys():
            self._publish("podlink-sync", stale, [])
        for local, diagnostics in current.items():
            self._publish("podlink-sync", local, diagnostics)

    def _settled_sync_state(self) -> protocol.SyncState:
        if any(engine.halt is not None for engine in self.engines):
            return "paused"
        if any(engine.conflicts for engine in self.engines):
            return "conflict"
        return "idle"

    async def resume_sync(self) -> protocol.SyncStatus:
        """Apply what a safety halt held back (the user looked and agreed)."""
        return await self._after_user_choice(lambda engine: engine.resume())

    async def reset_sync(self) -> protocol.SyncStatus:
        """Forget the agreed state and sync afresh: the workspace is the truth."""
        return await self._after_user_choice(lambda engine: engine.reset())

    async def _after_user_choice(
        self, action: Callable[[SyncEngine], Awaitable[BatchResult]]
    ) -> protocol.SyncStatus:
        if not self.engines:
            raise TargetUnavailable(self.error or f"the session is {self.state}")
        self._halts_shown.clear()
        for engine in list(self.engines):
            try:
                result = await action(engine)
            except AgentGone as error:
                self._lost_agent(error)
                raise TargetUnavailable(str(error)) from error
            await self._after_sync(result, None)
        return self.sync_status()

    def _config_file_in(self, engine: SyncEngine, paths: set[str]) -> bool:
        config_file = self.config.path
        if config_file is None or not config_file.is_relative_to(engine.local_root):
            return False
        return config_file.relative_to(engine.local_root).as_posix() in paths

    async def reload_config(self) -> None:
        """Re-read the config file after it changed; a broken one keeps the running config."""
        async with self._reconfiguring:
            try:
                config = await asyncio.to_thread(load_config, self.config.folder, self.config.path)
            except ConfigError as error:
                message = f"{error} (the session keeps its last good configuration)"
                self._log("daemon", message)
                self._listener.show_error(message)
                return
            if config != self.config:
                await self._apply_config_locked(config)

    async def flush(self, timeout_seconds: float | None = None) -> protocol.SyncStatus:
        """Return once every local change made before the call is in the target."""
        async with asyncio.timeout(timeout_seconds):
            exact = [await watcher.barrier() for watcher in list(self._watchers)]
            for watcher in list(self._watchers):
                await watcher.drain()
            for engine, noticed_all in zip(list(self.engines), exact, strict=False):
                if noticed_all and not engine.needs_rescan:
                    continue  # every earlier change went through the watcher's batches
                try:
                    result = await engine.rescan()
                except AgentGone as error:
                    self._lost_agent(error)
                    raise TargetUnavailable(str(error)) from error
                await self._after_sync(result, None)
        return self.sync_status()

    def _lost_agent(self, error: AgentError) -> None:
        self._target_lost(f"lost the connection to the target: {error}")

    # -- following the target ------------------------------------------------------------

    async def _follow_target(self, target: Target) -> None:
        async for event in target.events():
            if event.kind is TargetEventKind.GONE:
                self._target_lost(event.reason)
            elif event.kind is TargetEventKind.WARNING:
                self._log("daemon", event.reason)
                self._changed()  # the target's description lists it
            elif event.kind is not TargetEventKind.STARTED:
                self._log("daemon", event.reason)
                self._recovery_wake.set()

    def _target_lost(self, reason: str) -> None:
        if self.state in ("stopped", "starting"):
            return
        if self.state != "degraded":
            self._log("daemon", f"{reason}; reconnecting")
        self.state, self.sync_state, self.error = "degraded", "error", reason
        self._changed()
        self.ports.target_lost(reason)
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.create_task(self._recover(reason))

    async def _recover(self, reason: str) -> None:
        """Reconnect with capped backoff: a new agent, a full resync, the app again."""
        delay = RECONNECT_FIRST_DELAY
        while self.state == "degraded":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recovery_wake.wait(), delay)
            self._recovery_wake.clear()
            try:
                summary = await self._reconnect()
            except (TargetUnavailable, AgentGone) as error:
                self.error = f"{reason}; still reconnecting: {error}"
                self._changed()
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            self._log("daemon", f"reconnected to the target, {summary}")
            self.ports.target_back()
            return

    async def _reconnect(self) -> str:
        """Connect again and resync; says in one line what that took (a new pod holds none
        of the files, and naming each one would bury the log)."""
        target = self.target
        assert target is not None
        if self.app is not None:
            await self.app.stop()
        if self._agent is not None:
            await self._agent.close()
        before = target.describe().name
        started = time.monotonic()
        await target.connect()
        agent = await start_transport(target, lambda text: self._log("sync", text))
        self._agent = agent
        self.sync_state = "scanning"
        for engine in self.engines:
            await engine.close()
            engine.agent = agent
        await self._watch_target_sides()
        written = 0
        for engine in self.engines:
            result = await engine.initial_sync()
            written += result.files_written
            self._count(result)
            self._note_outcome(result)
        seconds = time.monotonic() - started
        self.state, self.error = "ready", None
        self.sync_state = self._settled_sync_state()
        self._changed()
        if self.app is not None:
            await self.app.start()
        description = target.describe()
        where = description.label
        if description.name != before:
            where = f"new {where} (was {before})"
        return f"{where}: {written:,} file(s) synced in {seconds:.1f} s"

    # -- diagnostics ---------------------------------------------------------------------

    def publish_diagnostics(
        self, source: DiagnosticSource, path: Path, diagnostics: list[Diagnostic]
    ) -> None:
        """For tests and builds: replace ``source``'s diagnostics of a local file."""
        self._publish(source, path, diagnostics)

    @property
    def transport(self) -> FileTransport | None:
        """The file channel into the target while connected (tests put their plugin there)."""
        return self._agent

    def _publish(self, source: DiagnosticSource, path: Path, items: list[Diagnostic]) -> None:
        published = self._published.setdefault(source, set())
        if items:
            published.add(path)
        else:
            published.discard(path)
        self._listener.publish_diagnostics(source, path, items)

    def _clear_diagnostics(self, source: DiagnosticSource) -> None:
        for path in list(self._published.get(source, ())):
            self._publish(source, path, [])

    def _count(self, result: BatchResult) -> None:
        self.files_synced += result.files_written
        self.bytes_synced += result.bytes_written

    # -- app -----------------------------------------------------------------------------

    async def restart_app(self) -> protocol.AppProcess | None:
        if self.app is None:
            return None
        await self.app.restart()
        return self._app_status()

    async def stop_app(self) -> None:
        if self.app is not None:
            await self.app.stop()

    # -- ports and debugging ---------------------------------------------------------------

    def _shares_loopback(self) -> bool:
        """The local target's 127.0.0.1 is this machine's: a port's own number is the app's."""
        return isinstance(self.target, LocalTarget)

    async def _open_configured_ports(self) -> None:
        for port in self.config.ports:
            try:
                await self.add_port(port.remote_port, port.local_port)
            except OSError as error:
                self._log("daemon", f"cannot forward port {port.remote_port}: {error}")

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

    async def start_debug(self) -> dict[str, Any]:
        """Run the app under debugpy from now on; the editor's attach configuration.

        Raises DebugNotPossible (the configuration) or TargetUnavailable (the target).
        """
        if self.app is None:
            raise DebugNotPossible("this session runs no app: add a `run:` section to podlink.yaml")
        if self.target is None or self.state != "ready":
            raise TargetUnavailable(self.error or f"the session is {self.state}, not ready")
        if self._debugger is None:
            self._debugger = Debugger(
                config=self.config,
                target=self.target,
                transport=lambda: self._agent,
                app=self.app,
                forwards=self.ports,
                shares_loopback=self._shares_loopback(),
                log=lambda text: self._log("daemon", text),
            )
        return await self._debugger.start()

    # -- state out -------------------------------------------------------------------------

    def sync_status(self) -> protocol.SyncStatus:
        problems = tuple(
            protocol.SyncIssue(path=path, message=message)
            for engine in self.engines
            for path, message in sorted(engine.problems.items())
        ) + tuple(
            protocol.SyncIssue(path="", message=f"paused: {engine.halt.reason}")
            for engine in self.engines
            if engine.halt is not None
        )
        conflicts = tuple(
            protocol.SyncIssue(
                path=conflict.path, message=conflict.message, copy_path=conflict.copy_path
            )
            for engine in self.engines
            for _, conflict in sorted(engine.conflicts.items())
        )
        pending = sum(watcher.pending_count for watcher in self._watchers)
        return protocol.SyncStatus(
            state=self.sync_state,
            pending=pending,
            files_synced=self.files_synced,
            bytes_synced=self.bytes_synced,
            last_latency_ms=self.last_latency_ms,
            conflicts=conflicts,
            problems=problems,
            ignored=self._ignored_paths(),
        )

    def _ignored_paths(self) -> protocol.IgnoredPaths | None:
        counted = [engine for engine in self.engines if engine.ignored is not None]
        if not counted:
            return None
        files = folders = 0
        examples: list[str] = []
        for engine in counted:
            assert engine.ignored is not None
            files += engine.ignored.files
            folders += engine.ignored.folders
            prefix = ""
            if engine.local_root != self.folder and engine.local_root.is_relative_to(self.folder):
                prefix = engine.local_root.relative_to(self.folder).as_posix() + "/"
            examples += [prefix + path for path in engine.ignored.examples]
        return protocol.IgnoredPaths(
            files=files, folders=folders, examples=tuple(examples[:IGNORED_EXAMPLES])
        )

    def explain_path(self, path: Path) -> protocol.PathExplanation:
        """Whether a local path is synced, by the rules as they are on disk now."""
        return explain_path(self.config, path)

    def _app_status(self) -> protocol.AppProcess | None:
        if self.app is None:
            return None
        return protocol.AppProcess(
            state=self.app.state, command=self.app.command, exit_code=self.app.exit_code
        )

    def to_protocol(self) -> protocol.Session:
        if self.target is not None:
            description = self.target.describe()
            target = protocol.TargetInfo(
                kind=self.config.target_kind, name=description.name, detail=description.detail
            )
        else:
            target = protocol.TargetInfo(kind=self.config.target_kind, name="")
        return protocol.Session(
            id=self.id,
            folder=self.folder.as_uri(),
            state=self.state,
            target=target,
            sync=self.sync_status(),
            ports=self.ports.to_protocol(),
            app=self._app_status(),
            error=self.error,
        )

    def log(self, source: protocol.LogSource, text: str) -> None:
        self._log(source, text)

    def _log(self, source: protocol.LogSource, text: str) -> None:
        self._listener.log(self.id, source, text)

    def _changed(self) -> None:
        if self._emit_handle is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_emit + NOTIFY_INTERVAL_SECONDS - loop.time())
        self._emit_handle = loop.call_later(delay, self._emit_now)

    def _emit_now(self) -> None:
        if self._emit_handle is not None:
            self._emit_handle.cancel()
            self._emit_handle = None
        self._last_emit = asyncio.get_running_loop().time()
        snapshot = self.to_protocol()
        self._listener.session_changed(snapshot)
        if snapshot.state != "stopped":
            self._write_status_file(snapshot)

    def _status_file(self) -> Path:
        return sessions_dir() / f"{self.id}.json"

    def _write_status_file(self, snapshot: protocol.Session) -> None:
        """Leave the state where ``podlink status`` in another terminal can read it."""
        path = self._status_file()
        record = {"pid": os.getpid(), "session": msgspec.to_builtins(snapshot)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record), encoding="utf-8")
            temporary.replace(path)
        except OSError as error:
            log.debug("cannot write the session status file %s: %s", path, error)


def describe(result: BatchResult) -> str:
    parts = []
    if result.files_written:
        parts.append(f"{result.files_written} file(s), {format_bytes(result.bytes_written)}")
    if result.downloaded:
        size = format_bytes(result.bytes_downloaded)
        parts.append(f"{len(result.downloaded)} change(s) from the target, {size}")
    if result.renamed:
        parts.append(f"{result.renamed} renamed")
    if result.deleted:
        parts.append(f"{result.deleted} deleted")
    if result.other_operations:
        parts.append(f"{result.other_operations} other change(s)")
    return ", ".join(parts) or "nothing to change"


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def _never_synced(rules: IgnoreRules, folder: str) -> bool:
    """Folders podlink itself keeps out (``.git/``, ``.podlink/``, a local target's root):
    no rule a user edits can bring them back, so they need no watch."""
    return rules.is_built_in(folder, is_dir=True)
