"""The podlink requests, one typed method each: check what the types cannot, call into the
sessions and build the result. ``protocol.bind`` registers every method, so a request without
a handler, or with a mistyped one, fails the type check. Errors are PodlinkErrors, raised
where they happen; the server turns them into protocol errors.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from pygls.uris import to_fs_path

from podlink import protocol
from podlink.config import MAX_PORT
from podlink.errors import InvalidParams
from podlink.server.logs import LogStreams
from podlink.server.progress import work_done_progress
from podlink.testing.report import ReportedTest
from podlink.testing.runner import RunSummary

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer


def folder_from_uri(uri: str) -> Path:
    path = to_fs_path(uri) if uri.startswith("file:") else uri
    if not path:
        raise InvalidParams(f"not a local folder: {uri!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidParams(f"no such folder: {folder}")
    return folder


def _check_port(name: str, port: int) -> None:
    if not 1 <= port <= MAX_PORT:
        raise InvalidParams(f"{name} must be a port number (1-65535), got {port}")


class PodlinkRequests:
    """Answers every podlink request (``protocol.PodlinkHandlers``) for one server."""

    def __init__(self, server: PodlinkServer) -> None:
        self._server = server
        self._registry = server.registry
        self._logs = LogStreams(server)
        # Debugged runs go on after their request was answered; kept until they end.
        self._debug_runs: set[asyncio.Task[RunSummary]] = set()

    # -- sessions ------------------------------------------------------------------------

    async def start_session(self, params: protocol.StartSessionParams) -> protocol.Session:
        folder = folder_from_uri(params.folder)
        async with work_done_progress(self._server, "podlink: initial sync") as report:
            session = await self._registry.start(folder, params.config_file, progress=report)
        return session.to_protocol()

    async def stop_session(self, params: protocol.StopSessionParams) -> None:
        await self._registry.stop(params.session_id)

    async def list_sessions(
        self, params: protocol.ListSessionsParams
    ) -> tuple[protocol.Session, ...]:
        return tuple(session.to_protocol() for session in self._registry.list())

    async def flush_sync(self, params: protocol.FlushSyncParams) -> protocol.SyncStatus:
        timeout = params.timeout_ms / 1000 if params.timeout_ms is not None else None
        return await self._registry.get(params.session_id).flush(timeout)

    async def resume_sync(self, params: protocol.ResumeSyncParams) -> protocol.SyncStatus:
        return await self._registry.get(params.session_id).resume_sync()

    async def reset_sync(self, params: protocol.ResetSyncParams) -> protocol.SyncStatus:
        return await self._registry.get(params.session_id).reset_sync()

    async def explain_path(self, params: protocol.ExplainPathParams) -> protocol.PathExplanation:
        session = self._registry.get(params.session_id)
        path = to_fs_path(params.uri) if params.uri.startswith("file:") else None
        if not path or not Path(path).is_absolute():
            raise InvalidParams(f"not a local file: URI: {params.uri!r}")
        return session.explain_path(Path(path))

    # -- the app -------------------------------------------------------------------------

    async def restart_app(self, params: protocol.RestartAppParams) -> protocol.AppProcess:
        app = await self._registry.get(params.session_id).restart_app()
        if app is None:
            raise InvalidParams(
                "this session runs no app: add a `run:` section to podlink.yaml",
            )
        return app

    async def stop_app(self, params: protocol.StopAppParams) -> None:
        await self._registry.get(params.session_id).stop_app()

    # -- ports and debugging -------------------------------------------------------------

    async def add_port(self, params: protocol.AddPortParams) -> protocol.PortForward:
        _check_port("remotePort", params.remote_port)
        if params.local_port is not None:
            _check_port("localPort", params.local_port)
        session = self._registry.get(params.session_id)
        return await session.add_port(params.remote_port, params.local_port)

    async def remove_port(self, params: protocol.RemovePortParams) -> None:
        if not await self._registry.get(params.session_id).remove_port(params.local_port):
            raise InvalidParams(
                f"no forward listens on local port {params.local_port} in this session"
            )

    async def start_debug(self, params: protocol.StartDebugParams) -> protocol.StartDebugResult:
        session = self._registry.get(params.session_id)
        if params.port is not None and params.pid is not None:
            raise InvalidParams(
                "give port (a process serving debugpy) or pid (a process to inject debugpy "
                "into), not both"
            )
        if params.pid is not None and params.pid < 1:
            raise InvalidParams(f"pid must be a process id (1 or more), got {params.pid}")
        configuration = await session.start_debug(params.port, params.pid)
        return protocol.StartDebugResult(configuration=configuration)

    # -- tests and builds ----------------------------------------------------------------

    async def discover_tests(
        self, params: protocol.DiscoverTestsParams
    ) -> protocol.DiscoverTestsResult:
        return await self._registry.get(params.session_id).tests.discover()

    async def run_tests(self, params: protocol.RunTestsParams) -> protocol.RunTestsResult:
        session = self._registry.get(params.session_id)
        lsp_protocol = self._server.protocol

        def report(result: ReportedTest) -> None:
            lsp_protocol.notify(protocol.TEST_RESULT, msgspec.to_builtins(result.params))

        summary = await session.tests.run(params.ids, params.run_id, report)
        return summary.to_protocol()

    async def debug_tests(self, params: protocol.DebugTestsParams) -> protocol.DebugTestsResult:
        session = self._registry.get(params.session_id)
        lsp_protocol = self._server.protocol

        def report(result: ReportedTest) -> None:
            lsp_protocol.notify(protocol.TEST_RESULT, msgspec.to_builtins(result.params))

        run_id, configuration, run = await session.debug_tests(params.ids, params.run_id, report)

        def finished(ended: asyncio.Task[RunSummary]) -> None:
            self._debug_runs.discard(ended)
            if ended.cancelled():
                totals = RunSummary(run_id, cancelled=True, problem="the run was stopped")
            elif (error := ended.exception()) is not None:
                session.log("test", f"the debugged run {run_id} failed: {error}")
                totals = RunSummary(run_id, problem=str(error))
            else:
                totals = ended.result()
            lsp_protocol.notify(
                protocol.TEST_RUN_FINISHED, msgspec.to_builtins(totals.to_protocol())
            )

        self._debug_runs.add(run)
        run.add_done_callback(finished)
        return protocol.DebugTestsResult(run_id=run_id, configuration=configuration)

    async def cancel_tests(self, params: protocol.CancelTestsParams) -> None:
        # A run that already ended is not an error: the client and the run raced.
        for session in self._registry.list():
            if await session.tests.cancel(params.run_id):
                return

    async def build(self, params: protocol.BuildParams) -> protocol.BuildResult:
        session = self._registry.get(params.session_id)
        async with work_done_progress(self._server, "podlink: build"):
            outcome = await session.builds.run()
        return protocol.BuildResult(
            exit_code=outcome.exit_code,
            duration_ms=outcome.duration_ms,
            diagnostics=outcome.diagnostic_count,
        )

    # -- container logs ------------------------------------------------------------------

    async def follow_logs(self, params: protocol.FollowLogsParams) -> protocol.FollowLogsResult:
        return await self._logs.follow(params)

    async def stop_logs(self, params: protocol.StopLogsParams) -> None:
        await self._logs.stop(params)
