"""Test and build requests: discover, run (streaming ``podlink/testResult``), cancel, build."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from podlink import protocol as wire
from podlink.build import NoBuildCommand
from podlink.server.progress import work_done_progress
from podlink.server.rpc import protocol_error, register_request
from podlink.testing.report import InvalidTestRequest, ReportedTest

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer


def register(server: PodlinkServer) -> None:
    """Register the handlers; call before ``register_not_implemented`` runs."""
    registry = server.registry

    async def discover_tests(params: wire.DiscoverTestsParams) -> wire.DiscoverTestsResult:
        return await registry.get(params.session_id).tests.discover()

    async def run_tests(params: wire.RunTestsParams) -> wire.RunTestsResult:
        session = registry.get(params.session_id)

        def report(result: ReportedTest) -> None:
            server.protocol.notify(wire.TEST_RESULT, msgspec.to_builtins(result.params))

        try:
            summary = await session.tests.run(params.ids, params.run_id, report)
        except InvalidTestRequest as error:
            raise protocol_error(wire.ErrorCode.INVALID_PARAMS, str(error)) from error
        return summary.to_protocol()

    async def cancel_tests(params: wire.CancelTestsParams) -> None:
        # A run that already ended is not an error: the client and the run raced.
        for session in registry.list():
            if await session.tests.cancel(params.run_id):
                return

    async def build(params: wire.BuildParams) -> wire.BuildResult:
        session = registry.get(params.session_id)
        try:
            async with work_done_progress(server, "podlink: build"):
                outcome = await session.builds.run()
        except NoBuildCommand as error:
            raise protocol_error(wire.ErrorCode.INVALID_PARAMS, str(error)) from error
        return wire.BuildResult(
            exit_code=outcome.exit_code,
            duration_ms=outcome.duration_ms,
            diagnostics=outcome.diagnostic_count,
        )

    register_request(server, wire.DISCOVER_TESTS, discover_tests)
    register_request(server, wire.RUN_TESTS, run_tests)
    register_request(server, wire.CANCEL_TESTS, cancel_tests)
    register_request(server, wire.BUILD, build)
