"""Port forward and debugging requests: addPort, removePort, startDebug."""

from __future__ import annotations

from typing import TYPE_CHECKING

from podlink import protocol as wire
from podlink.debug import DebugNotPossible
from podlink.server.rpc import protocol_error, register_request

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer

MAX_PORT = 65535


def _check_port(name: str, port: int) -> None:
    if not 1 <= port <= MAX_PORT:
        raise protocol_error(
            wire.ErrorCode.INVALID_PARAMS, f"{name} must be a port number (1-65535), got {port}"
        )


def register(server: PodlinkServer) -> None:
    registry = server.registry

    async def add_port(params: wire.AddPortParams) -> wire.PortForward:
        _check_port("remotePort", params.remote_port)
        if params.local_port is not None:
            _check_port("localPort", params.local_port)
        session = registry.get(params.session_id)
        return await session.add_port(params.remote_port, params.local_port)

    async def remove_port(params: wire.RemovePortParams) -> None:
        if not await registry.get(params.session_id).remove_port(params.local_port):
            raise protocol_error(
                wire.ErrorCode.INVALID_PARAMS,
                f"no forward listens on local port {params.local_port} in this session",
            )

    async def start_debug(params: wire.StartDebugParams) -> wire.StartDebugResult:
        session = registry.get(params.session_id)
        try:
            configuration = await session.start_debug(params.port)
        except DebugNotPossible as error:
            raise protocol_error(wire.ErrorCode.INVALID_PARAMS, str(error)) from error
        return wire.StartDebugResult(configuration=configuration)

    register_request(server, wire.ADD_PORT, add_port)
    register_request(server, wire.REMOVE_PORT, remove_port)
    register_request(server, wire.START_DEBUG, start_debug)
