"""The pygls server: JSON-RPC with LSP framing over stdio, and the podlink capability.

``podlink/`` requests keep their params as plain JSON here; each handler decodes them into
the generated protocol types, so a malformed request is an ``invalidParams`` error rather
than a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import attrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter
from pygls.protocol.language_server import lsp_method

from podlink import __version__, protocol
from podlink.server import framing, rpc
from podlink.session.registry import SessionRegistry
from podlink.signal_channel import answer_requests_on_signal

log = logging.getLogger(__name__)


@attrs.define
class PodlinkRequestMessage:
    """A request whose params stay raw JSON (pygls would turn unknown ones into tuples)."""

    id: int | str
    method: str
    jsonrpc: str
    params: Any = None


class PodlinkProtocol(LanguageServerProtocol):
    # The base class caches this with lru_cache; a plain method is enough here.
    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        if method in protocol.REQUESTS:
            return PodlinkRequestMessage
        return super().get_message_type(method)

    def receive(self, body: bytes) -> None:
        """Handle one framed message; whatever is wrong with it is answered, never raised."""
        data = framing.decode(body)
        if isinstance(data, framing.FrameError):
            log.warning("refused a message: %s", data.message)
            self.send_error(data)
            return
        try:
            message = self.structure_message(data)
        except JsonRpcException as error:
            # A request of a known method with fields of the wrong shape.
            log.warning("refused a message: %s", error)
            if "method" in data and data.get("id") is not None:
                self._send_response(data["id"], error=error.to_response_error())
            return
        try:
            self.handle_message(message)
        except Exception:
            log.exception("could not handle a %s message", data.get("method", "response"))

    def send_error(self, error: framing.FrameError) -> None:
        exception = JsonRpcException(message=error.message, code=int(error.code), data=error.data)
        self._send_response(error.id, error=exception.to_response_error())  # type: ignore[arg-type]

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(
        self, params: types.InitializeParams
    ) -> Generator[Any, Any, types.InitializeResult]:
        result: types.InitializeResult = yield from super().lsp_initialize(params)
        result.capabilities.experimental = {
            "podlink": {"protocolVersion": protocol.PROTOCOL_VERSION}
        }
        return result


class PodlinkServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "podlink",
            __version__,
            protocol_cls=PodlinkProtocol,
            converter_factory=default_converter,
        )
        from podlink.server.notify import ClientNotifier

        self.notifier = ClientNotifier(self)
        self.registry = SessionRegistry(self.notifier)

    def bind_request(
        self, spec: protocol.RequestSpec, handler: Callable[[Any], Awaitable[object]]
    ) -> None:
        rpc.bind_request(self, spec, handler)


def create_server() -> PodlinkServer:
    from podlink.server import lifecycle
    from podlink.server.handlers import PodlinkRequests

    server = PodlinkServer()
    lifecycle.register(server)
    protocol.bind(server, PodlinkRequests(server))
    return server


def serve_stdio() -> None:
    """Serve one client on stdin/stdout until it exits; stop every session on the way out."""
    server = create_server()
    server.notifier.install_log_forwarding()
    reader = framing.FrameReader(sys.stdin.buffer)
    lsp_protocol: PodlinkProtocol = server.protocol  # type: ignore[assignment]
    lsp_protocol.set_writer(StdoutWriter(sys.stdout.buffer))

    async def main() -> None:
        answer_requests_on_signal(server.registry, server.notifier.show_error)
        loop = asyncio.get_running_loop()
        # An editor that quits may end its server with SIGTERM rather than by closing stdin:
        # leave the same way, stopping every session and what it started.
        main_task = asyncio.current_task()
        assert main_task is not None

        def terminate() -> None:
            terminated.set()
            main_task.cancel()

        loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            while (
                frame := await loop.run_in_executor(server.thread_pool, reader.next_frame)
            ) is not None:
                if isinstance(frame, framing.FrameError):
                    log.warning("bad framing: %s", frame.message)
                    lsp_protocol.send_error(frame)
                else:
                    lsp_protocol.receive(frame)
        finally:
            await asyncio.shield(server.registry.stop_all())

    terminated = threading.Event()
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, SystemExit, BrokenPipeError, asyncio.CancelledError):
        pass
    finally:
        server.thread_pool.shutdown(wait=False, cancel_futures=True)
    if terminated.is_set():
        # The sessions are stopped; the thread reading stdin stays blocked in read(), and the
        # interpreter would wait for it at exit until the client closed the pipe.
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        os._exit(0)
