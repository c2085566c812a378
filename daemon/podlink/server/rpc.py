"""Serving one typed request handler: decode params, call it, encode the result. A
PodlinkError becomes the JSON-RPC error its code names, as does a timeout; anything else is a
bug and travels as one. ``protocol.bind`` calls ``bind_request`` for every request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from pygls.exceptions import JsonRpcException

from podlink import protocol
from podlink.errors import InvalidParams, PodlinkError

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer

log = logging.getLogger(__name__)


def protocol_error(error: PodlinkError) -> JsonRpcException:
    return JsonRpcException(message=str(error), code=int(error.code), data=error.data)


def _translate(error: Exception) -> JsonRpcException | None:
    if isinstance(error, PodlinkError):
        return protocol_error(error)
    if isinstance(error, TimeoutError):
        timeout = PodlinkError(protocol.ErrorCode.TIMEOUT, "timed out before the work was done")
        return protocol_error(timeout)
    return None


def bind_request(
    server: PodlinkServer, spec: protocol.RequestSpec, handler: Callable[[Any], Awaitable[object]]
) -> None:
    """Serve one request: decode its params, call its handler, encode the result."""
    method = spec.method

    async def handle(raw_params: Any) -> Any:
        try:
            params = msgspec.convert(raw_params or {}, spec.params)
        except msgspec.ValidationError as error:
            raise protocol_error(InvalidParams(f"{method}: {error}")) from error
        try:
            result = await handler(params)
        except Exception as error:
            translated = _translate(error)
            if translated is None:
                raise
            log.info("%s failed: %s", method, error)
            raise translated from error
        return None if result is None else msgspec.to_builtins(result)

    server.feature(method)(handle)
