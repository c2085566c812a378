"""Standard LSP lifecycle hooks: stop every session before the daemon goes away."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer


def register(server: PodlinkServer) -> None:
    @server.feature(types.SHUTDOWN)
    async def on_shutdown(_params: Any) -> None:
        await server.registry.stop_all()
