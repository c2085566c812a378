"""Session requests: start, stop, list, flush, resume/reset after a halt, the app controls,
and why a path is (not) synced."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pygls.uris import to_fs_path

from podlink import protocol as wire
from podlink.server.progress import work_done_progress
from podlink.server.rpc import protocol_error, register_not_implemented, register_request

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer


def folder_from_uri(uri: str) -> Path:
    path = to_fs_path(uri) if uri.startswith("file:") else uri
    if not path:
        raise protocol_error(wire.ErrorCode.INVALID_PARAMS, f"not a local folder: {uri!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise protocol_error(wire.ErrorCode.INVALID_PARAMS, f"no such folder: {folder}")
    return folder


def register(server: PodlinkServer) -> None:
    registry = server.registry

    async def start_session(params: wire.StartSessionParams) -> wire.Session:
        folder = folder_from_uri(params.folder)
        async with work_done_progress(server, "podlink: initial sync") as report:
            session = await registry.start(folder, params.config_file, progress=report)
        return session.to_protocol()

    async def stop_session(params: wire.StopSessionParams) -> None:
        await registry.stop(params.session_id)

    async def list_sessions(_params: wire.ListSessionsParams) -> list[wire.Session]:
        return [session.to_protocol() for session in registry.list()]

    async def flush_sync(params: wire.FlushSyncParams) -> wire.SyncStatus:
        timeout = params.timeout_ms / 1000 if params.timeout_ms is not None else None
        return await registry.get(params.session_id).flush(timeout)

    async def restart_app(params: wire.RestartAppParams) -> wire.AppProcess:
        app = await registry.get(params.session_id).restart_app()
        if app is None:
            raise protocol_error(
                wire.ErrorCode.INVALID_PARAMS,
                "this session runs no app: add a `run:` section to podlink.yaml",
            )
        return app

    async def stop_app(params: wire.StopAppParams) -> None:
        await registry.get(params.session_id).stop_app()

    register_request(server, wire.START_SESSION, start_session)
    register_request(server, wire.STOP_SESSION, stop_session)
    register_request(server, wire.LIST_SESSIONS, list_sessions)
    register_request(server, wire.FLUSH_SYNC, flush_sync)
    register_request(server, wire.RESTART_APP, restart_app)

    async def resume_sync(params: wire.ResumeSyncParams) -> wire.SyncStatus:
        return await registry.get(params.session_id).resume_sync()

    async def reset_sync(params: wire.ResetSyncParams) -> wire.SyncStatus:
        return await registry.get(params.session_id).reset_sync()

    async def explain_path(params: wire.ExplainPathParams) -> wire.PathExplanation:
        session = registry.get(params.session_id)
        path = to_fs_path(params.uri) if params.uri.startswith("file:") else None
        if not path or not Path(path).is_absolute():
            raise protocol_error(
                wire.ErrorCode.INVALID_PARAMS, f"not a local file: URI: {params.uri!r}"
            )
        return session.explain_path(Path(path))

    register_request(server, wire.STOP_APP, stop_app)
    register_request(server, wire.EXPLAIN_PATH, explain_path)
    register_request(server, wire.RESUME_SYNC, resume_sync)
    register_request(server, wire.RESET_SYNC, reset_sync)
    register_not_implemented(server)
