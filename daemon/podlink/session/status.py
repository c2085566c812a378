"""A session as the protocol shows it: its sync status, app, target and forwards, read from
the store's state and from the parts that keep their own status."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from podlink import protocol
from podlink.session.app import AppRunner
from podlink.sync.engine import SyncEngine
from podlink.sync.scan import IGNORED_EXAMPLES

if TYPE_CHECKING:
    from podlink.session.core import Session


def sync_status(session: Session) -> protocol.SyncStatus:
    engines, folder = session.engines, session.folder
    problems = tuple(
        protocol.SyncIssue(path=path, message=message, entry=entry_root(engine, folder))
        for engine in engines
        for path, message in sorted(engine.problems.items())
    ) + tuple(
        protocol.SyncIssue(
            path="", message=f"paused: {engine.halt.reason}", entry=entry_root(engine, folder)
        )
        for engine in engines
        if engine.halt is not None
    )
    conflicts = tuple(
        protocol.SyncIssue(
            path=conflict.path,
            message=conflict.message,
            copy_path=conflict.copy_path,
            entry=entry_root(engine, folder),
        )
        for engine in engines
        for _, conflict in sorted(engine.conflicts.items())
    )
    state = session.store.state
    return protocol.SyncStatus(
        state=state.sync_state,
        pending=sum(watcher.pending_count for watcher in session.watchers),
        files_synced=state.files_synced,
        bytes_synced=state.bytes_synced,
        last_latency_ms=state.last_latency_ms,
        conflicts=conflicts,
        problems=problems,
        ignored=ignored_paths(engines, folder),
    )


def entry_root(engine: SyncEngine, folder: Path) -> str:
    """The sync root of an issue's path, as the client joins it to the workspace folder."""
    if engine.local_root.is_relative_to(folder):
        return engine.local_root.relative_to(folder).as_posix()
    return str(engine.local_root)


def ignored_paths(engines: list[SyncEngine], folder: Path) -> protocol.IgnoredPaths | None:
    counted = [engine for engine in engines if engine.ignored is not None]
    if not counted:
        return None
    files = folders = 0
    examples: list[str] = []
    for engine in counted:
        assert engine.ignored is not None
        files += engine.ignored.files
        folders += engine.ignored.folders
        prefix = ""
        if engine.local_root != folder and engine.local_root.is_relative_to(folder):
            prefix = engine.local_root.relative_to(folder).as_posix() + "/"
        examples += [prefix + path for path in engine.ignored.examples]
    return protocol.IgnoredPaths(
        files=files, folders=folders, examples=tuple(examples[:IGNORED_EXAMPLES])
    )


def app_status(app: AppRunner | None) -> protocol.AppProcess | None:
    if app is None:
        return None
    return protocol.AppProcess(state=app.state, command=app.command, exit_code=app.exit_code)


def describe_session(session: Session) -> protocol.Session:
    config = session.config
    if session.target is not None:
        description = session.target.describe()
        target = protocol.TargetInfo(
            kind=config.target_kind, name=description.name, detail=description.detail
        )
    else:
        target = protocol.TargetInfo(kind=config.target_kind, name="")
    state = session.store.state
    return protocol.Session(
        id=session.id,
        folder=session.folder.as_uri(),
        state=state.state,
        target=target,
        sync=sync_status(session),
        ports=session.ports.to_protocol(),
        app=app_status(session.app),
        error=state.error,
    )
