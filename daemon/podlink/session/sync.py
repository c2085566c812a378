"""The session's sync: an engine per sync entry, the initial sync, the watchers' batches and
the target's changes going through them, what a result means for the user (counts, a halt
told once, conflict diagnostics, the app restarted after a sync), resume, reset and flush.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from podlink import protocol
from podlink.agent.client import AgentGone
from podlink.agent.transport import start_transport
from podlink.config import ConfigError, SyncEntryConfig
from podlink.ignored import rules_for_entry
from podlink.runtime import state_dir
from podlink.session.state import BatchSynced, SyncBusy, SyncCounted
from podlink.sync.ancestor import AncestorStore, ancestor_file
from podlink.sync.core.reconcile import Mode
from podlink.sync.engine import SyncEngine, SyncRootRefused
from podlink.sync.ignore import IgnoreRules
from podlink.sync.outcome import BatchResult, ProgressCallback
from podlink.sync.scan import LocalScan
from podlink.targets.base import Target, TargetUnavailable

if TYPE_CHECKING:
    from podlink.session.core import Session

INITIAL_SYNC_ATTEMPTS = 3


class SessionSync:
    def __init__(self, session: Session) -> None:
        self._session = session
        self.engines_ready = asyncio.Event()
        self._restart_owed = False
        self._halts_shown: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()

    # -- engines -----------------------------------------------------------------------

    def make_engine(self, target: Target, entry: SyncEntryConfig, rules: IgnoreRules) -> SyncEngine:
        session = self._session
        assert session.agent is not None
        mode = Mode(entry.mode)
        if mode is Mode.TWO_WAY and session.agent.two_way is None:
            raise TargetUnavailable(
                f"sync of {entry.local} is two-way, which needs python3 in the target; "
                "install python3 in the image or use mode: upload"
            )
        description = target.describe()
        store = AncestorStore(
            ancestor_file(
                state_dir(),
                str(session.config.local_root(entry)),
                entry.remote,
                session.config.target_kind,
                description.name,
            )
        )
        return SyncEngine(
            session.agent,
            session.config.local_root(entry),
            target.target_path(entry.remote),
            self.rules_factory(entry),
            rules,
            mode=mode,
            store=store,
            max_delete_share=entry.max_delete_share,
            owner=entry.owner,
            delete_unknown=entry.delete_unknown,
            report=lambda text: session.log("sync", text),
            # The main transport already said which kind the target gets: the lane's is the same.
            open_lane=functools.partial(start_transport, target, lambda _same_warning: None),
        )

    def rules_factory(self, entry: SyncEntryConfig) -> Callable[[], IgnoreRules]:
        return functools.partial(rules_for_entry, self._session.config, entry)

    def refused_setting(self, refused: SyncRootRefused) -> ConfigError:
        """The key of podlink.yaml behind what the target refused, and what to do."""
        session = self._session
        index = next(
            (i for i, e in enumerate(session.engines) if e.remote_root == refused.remote_root), 0
        )
        entry = session.config.sync[index]
        if refused.field == "owner":
            hint = (
                "name a user (or user:group) that exists in the target, e.g. one `id` prints "
                "there, or leave owner out to keep the target's own user"
            )
        else:
            hint = f"choose a folder for {entry.local} that can be made there, e.g. /app"
        return ConfigError(
            session.config.path or session.folder / "podlink.yaml",
            f"the target refused {getattr(entry, refused.field)!r}: {refused.message}",
            key=f"sync[{index}].{refused.field}",
            hint=hint,
        )

    async def initial_sync(
        self,
        target: Target,
        progress: ProgressCallback | None = None,
        local_scans: Sequence[asyncio.Future[LocalScan]] = (),
        *,
        begun: bool = False,
    ) -> int:
        """Sync every entry; an agent lost on the way is started again, a few times. How
        many files went into the target.

        Each try reconciles both sides afresh, so what the lost agent had finished counts and
        a file it was writing (only ever a temporary file in the target) is sent again.
        ``local_scans``: one per entry, already under way (else each entry scans).
        ``begun``: ``begin_initial_sync`` was called for the first try.
        """
        session = self._session
        scans: list[asyncio.Future[LocalScan] | None] = list(local_scans) or [None] * len(
            session.engines
        )
        for attempt in range(1, INITIAL_SYNC_ATTEMPTS + 1):
            written = 0
            try:
                if not begun:
                    await self.begin_initial_sync()
                begun = False
                for index, (entry, engine) in enumerate(
                    zip(session.config.sync, session.engines, strict=True)
                ):
                    result = await engine.initial_sync(progress, scans[index])
                    scans[index] = None  # a retry scans again: the tree may have changed
                    written += result.files_written
                    session.store.dispatch(
                        SyncCounted(files=result.files_written, bytes=result.bytes_written)
                    )
                    summary = batch_summary(result)
                    session.log(
                        "sync", f"initial sync of {entry.local} -> {entry.remote}: {summary}"
                    )
                    self.note_outcome(result)
                return written
            except AgentGone as error:
                if attempt == INITIAL_SYNC_ATTEMPTS:
                    raise
                session.log("sync", f"{error}; starting the agent again")
                await self.replace_agent(target)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def replace_agent(self, target: Target) -> None:
        """Close the session's transport, if any, and start a new one for every engine."""
        session = self._session
        if session.agent is not None:
            await session.agent.close()
        session.agent = await start_transport(target, lambda text: session.log("sync", text))
        for engine in session.engines:
            engine.agent = session.agent

    async def begin_initial_sync(self) -> None:
        """What the initial sync asks of the target, asked now: the target scans while the
        local side gets ready."""
        # Follow the target before its scan: a change made while it runs is queued, not lost.
        await self.watch_target_sides()
        for engine in self._session.engines:
            engine.begin_remote_scan()

    async def watch_target_sides(self) -> None:
        for engine in self._session.engines:
            if engine.mode is Mode.TWO_WAY:
                warning = await engine.watch_target(self._after_target_change)
                if warning:
                    self._session.log("sync", warning)

    async def _after_target_change(self, result: BatchResult, latency_ms: float) -> None:
        await self.after_sync(result, latency_ms if result.changed_anything else None)

    # -- batches -----------------------------------------------------------------------

    def is_ignored(self, index: int, first_rules: IgnoreRules, path: str) -> bool:
        """The watcher's filter: the engine's current rules once it exists."""
        engines = self._session.engines
        rules = engines[index].rules if len(engines) > index else first_rules
        return rules.is_ignored(path)

    def may_go_first(self, index: int, paths: set[str]) -> bool:
        """The watcher's question: may these changes pass the engine's running bulk pass?"""
        engines = self._session.engines
        return len(engines) > index and engines[index].may_pass_bulk(paths)

    async def on_batch(self, index: int, paths: set[str], first_seen: float) -> None:
        session = self._session
        await self.engines_ready.wait()
        if session.state == "stopped" or index >= len(session.engines):
            return  # torn down while the batch waited
        engine = session.engines[index]
        if self._config_file_in(engine, paths):
            reload = asyncio.get_running_loop().create_task(session.reload_config())
            self._background.add(reload)
            reload.add_done_callback(self._background.discard)
        session.store.dispatch(SyncBusy())
        try:
            result = await engine.sync_paths(paths)
        except AgentGone as error:
            session.recovery.lost_agent(error)
            return
        latency_ms = (asyncio.get_running_loop().time() - first_seen) * 1000
        await self.after_sync(result, latency_ms)

    async def after_sync(self, result: BatchResult, latency_ms: float | None) -> None:
        session = self._session
        self.note_outcome(result)
        settled = self.settled_state()
        if not result.changed_anything:
            session.store.dispatch(BatchSynced(sync_state=settled))
        else:
            session.store.dispatch(
                BatchSynced(
                    sync_state=settled,
                    files=result.files_written,
                    bytes=result.bytes_written,
                    latency_ms=latency_ms,
                )
            )
            took = f" in {latency_ms:.0f} ms" if latency_ms is not None else ""
            session.log("sync", f"synced {batch_summary(result)}{took}")
            # Only what went into the target restarts the app: files the app writes itself
            # come back in two-way mode and must not restart it in a loop.
            run = session.config.run
            if result.paths and session.app is not None and run and run.restart == "on-sync":
                self._restart_owed = True
        # More changes already waiting: restart once they are written too, not halfway.
        if self._restart_owed and not any(w.pending_count for w in session.watchers):
            self._restart_owed = False
            if session.app is not None:
                await session.app.restart()

    def warn(self, message: str) -> None:
        self._session.log("sync", message)
        self._session.listener.show_error(message)

    def note_outcome(self, result: BatchResult) -> None:
        """Tell the user about a halt once, and keep conflict diagnostics current."""
        if result.halted is not None and result.halted.reason not in self._halts_shown:
            self._halts_shown.add(result.halted.reason)
            message = (
                f"podlink paused the sync: {result.halted.reason}. Resume with "
                "`podlink resume` (apply it) or `podlink reset` (forget the last synced "
                "state and make the target match the workspace)."
            )
            self._session.log("sync", message)
            self._session.listener.show_error(message)
        self._session.diagnostics.publish_conflicts(self._session.engines)

    def settled_state(self) -> protocol.SyncState:
        engines = self._session.engines
        if any(engine.halt is not None for engine in engines):
            return "paused"
        if any(engine.conflicts for engine in engines):
            return "conflict"
        return "idle"

    def _config_file_in(self, engine: SyncEngine, paths: set[str]) -> bool:
        config_file = self._session.config.path
        if config_file is None or not config_file.is_relative_to(engine.local_root):
            return False
        return config_file.relative_to(engine.local_root).as_posix() in paths

    # -- the user's requests -------------------------------------------------------------

    async def resume(self) -> protocol.SyncStatus:
        """Apply what a safety halt held back (the user looked and agreed)."""
        return await self._after_user_choice(lambda engine: engine.resume())

    async def reset(self) -> protocol.SyncStatus:
        """Forget the agreed state and sync afresh: the workspace is the truth."""
        return await self._after_user_choice(lambda engine: engine.reset())

    async def _after_user_choice(
        self, action: Callable[[SyncEngine], Awaitable[BatchResult]]
    ) -> protocol.SyncStatus:
        session = self._session
        if not session.engines:
            raise TargetUnavailable(session.error or f"the session is {session.state}")
        self._halts_shown.clear()
        for engine in list(session.engines):
            try:
                result = await action(engine)
            except AgentGone as error:
                session.recovery.lost_agent(error)
                raise TargetUnavailable(str(error)) from error
            await self.after_sync(result, None)
        return session.sync_status()

    async def flush(self, timeout_seconds: float | None = None) -> protocol.SyncStatus:
        """Return once every local change made before the call is in the target."""
        session = self._session
        async with asyncio.timeout(timeout_seconds):
            exact = [await watcher.barrier() for watcher in list(session.watchers)]
            for watcher in list(session.watchers):
                await watcher.drain()
            for engine, noticed_all in zip(list(session.engines), exact, strict=False):
                if noticed_all and not engine.needs_rescan:
                    continue  # every earlier change went through the watcher's batches
                try:
                    result = await engine.rescan()
                except AgentGone as error:
                    session.recovery.lost_agent(error)
                    raise TargetUnavailable(str(error)) from error
                await self.after_sync(result, None)
        return session.sync_status()


def batch_summary(result: BatchResult) -> str:
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
