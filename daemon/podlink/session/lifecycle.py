"""Bringing a session up (target, watchers, agent, initial sync, app, forwards), taking it
down, and restarting it under a changed configuration."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from podlink.agent.client import AgentGone
from podlink.agent.transport import start_transport
from podlink.config import Config, ConfigError, load_config
from podlink.diagnostics import Diagnostic
from podlink.session.app import AppRunner
from podlink.session.debug import DebugNotPossible
from podlink.session.state import Connected, Ready, StartFailed, Starting, Stopped, SyncSettled
from podlink.sync.engine import SyncRootRefused
from podlink.sync.ignore import IgnoreRules
from podlink.sync.outcome import ProgressCallback
from podlink.sync.scan import scan_tree
from podlink.sync.watch import TreeWatcher
from podlink.targets.base import TargetUnavailable
from podlink.targets.factory import make_target

if TYPE_CHECKING:
    from podlink.session.core import Session


class Lifecycle:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._reconfiguring = asyncio.Lock()

    async def start(self, progress: ProgressCallback | None = None) -> None:
        """Connect, sync, watch and start the app. Raises TargetUnavailable, cleaned up."""
        session = self._session
        try:
            await self._bring_up(progress)
        except (TargetUnavailable, AgentGone) as error:
            await self._fail_start(str(error))
            if isinstance(error, TargetUnavailable) and error.at is not None:
                # The target named the line of the user's file to fix (a failed image build).
                diagnostic = Diagnostic(line=error.at.line, message=error.at.message)
                session.diagnostics.publish("podlink-build", error.at.path, [diagnostic])
            raise TargetUnavailable(str(error)) from error
        except ConfigError as error:
            # A file the start read is wrong (a deploy manifest, a setting the target refused).
            await self._fail_start(str(error))
            raise
        session.diagnostics.clear("podlink-build")

    async def _fail_start(self, message: str) -> None:
        await self._tear_down()
        self._session.store.dispatch(StartFailed(message))

    async def stop(self) -> None:
        await self._tear_down()
        self._session.store.dispatch(Stopped())
        self._session.status_file.remove()

    async def apply_config(self, config: Config) -> None:
        """Restart every part under a new, already validated configuration."""
        async with self._reconfiguring:
            await self._apply_config_locked(config)

    async def reload_config(self) -> None:
        """Re-read the config file after it changed; a broken one keeps the running config."""
        session = self._session
        async with self._reconfiguring:
            try:
                config = await asyncio.to_thread(
                    load_config, session.config.folder, session.config.path
                )
            except ConfigError as error:
                message = f"{error} (the session keeps its last good configuration)"
                session.log("daemon", message)
                session.listener.show_error(message)
                return
            if config != session.config:
                await self._apply_config_locked(config)

    async def _apply_config_locked(self, config: Config) -> None:
        session = self._session
        session.log("daemon", f"configuration changed ({config.path}): restarting the session")
        debugging = session.debugger is not None
        await self._tear_down()
        session.config = config
        await self.start()
        if debugging:
            try:
                await session.start_debug()
            except (DebugNotPossible, TargetUnavailable) as error:
                session.log("daemon", f"debugging stopped with the new configuration: {error}")

    async def _bring_up(self, progress: ProgressCallback | None) -> None:
        session, sync, config = self._session, self._session.sync, self._session.config
        session.store.dispatch(Starting())
        target = make_target(config, lambda line: session.log("build", line))
        session.target = target
        sync.engines_ready.clear()
        # The local side needs nothing from the target: scan it while the target is reached.
        prepared = [sync.rules_factory(entry)() for entry in config.sync]
        local_scans = [
            asyncio.ensure_future(asyncio.to_thread(scan_tree, config.local_root(e), rules))
            for e, rules in zip(config.sync, prepared, strict=True)
        ]
        # Watch before the first pass: a save made while the scans run is queued, not lost.
        for index, entry in enumerate(config.sync):
            session.watchers.append(
                TreeWatcher(
                    config.local_root(entry),
                    functools.partial(sync.is_ignored, index, prepared[index]),
                    functools.partial(sync.on_batch, index),
                    on_warning=sync.warn,
                    is_unwatched=functools.partial(_never_synced, prepared[index]),
                    may_go_first=functools.partial(sync.may_go_first, index),
                )
            )
        starting = [asyncio.ensure_future(watcher.start()) for watcher in session.watchers]
        try:
            await target.connect()
            session.recovery.follow(target)
            session.agent = await start_transport(target, lambda text: session.log("sync", text))
            for entry, rules, watcher in zip(config.sync, prepared, session.watchers, strict=True):
                engine = sync.make_engine(target, entry, rules)
                engine.on_bulk_applying = watcher.offer_priority
                session.engines.append(engine)
            # The target scans while the watches are set up (a walk of the local tree).
            begun = await self._begin_initial_sync()
            await asyncio.gather(*starting)
        except BaseException:
            for scan in local_scans:
                scan.cancel()
            # Started watchers are stopped with the session; one still starting must be done.
            await asyncio.gather(*starting, return_exceptions=True)
            raise
        session.store.dispatch(Connected())
        sync.engines_ready.set()
        try:
            await sync.initial_sync(target, progress, local_scans, begun=begun)
        except SyncRootRefused as refused:
            raise sync.refused_setting(refused) from refused
        session.store.dispatch(SyncSettled(sync.settled_state()))
        if config.run is not None:
            run = config.run
            session.app = AppRunner(
                target,
                run.command,
                cwd=target.target_path(run.cwd or config.sync[0].remote),
                env=run.env,
                on_output=lambda text: session.log("app", text),
                on_change=session.store.part_changed,
            )
            await session.app.start()
        await session.open_configured_ports()
        session.store.dispatch(Ready())

    async def _begin_initial_sync(self) -> bool:
        """Whether the initial sync's first requests went out; not when the agent was lost
        meanwhile (the initial sync starts it again)."""
        sync = self._session.sync
        try:
            await sync.begin_initial_sync()
        except AgentGone:
            return False
        except SyncRootRefused as refused:
            raise sync.refused_setting(refused) from refused
        return True

    async def _tear_down(self) -> None:
        session = self._session
        await asyncio.gather(session.tests.stop(), session.builds.stop())
        await session.recovery.stop()
        session.sync.engines_ready.set()  # a batch waiting for engines must not hold up its watcher
        watchers, session.watchers = session.watchers, []
        await asyncio.gather(*(watcher.stop() for watcher in watchers))
        await session.ports.close()
        session.attacher = None
        debugger, session.debugger = session.debugger, None
        app, session.app = session.app, None
        if app is not None:
            await app.stop()
        if debugger is not None:
            await debugger.close()
        engines, session.engines = session.engines, []
        for engine in engines:
            await engine.close()
        agent, session.agent = session.agent, None
        if agent is not None:
            await agent.close()
        target, session.target = session.target, None
        if target is not None:
            await target.close()


def _never_synced(rules: IgnoreRules, folder: str) -> bool:
    """Folders podlink itself keeps out (``.git/``, ``.podlink/``, a local target's root):
    no rule a user edits can bring them back, so they need no watch."""
    return rules.is_built_in(folder, is_dir=True)
