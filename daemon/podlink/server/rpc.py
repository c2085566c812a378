"""Serving one typed request handler: decode params, map podlink's exceptions to protocol
errors, encode the result. ``protocol.bind`` calls ``bind_request`` for every request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from pygls.exceptions import JsonRpcException

from podlink import protocol as wire
from podlink.config import ConfigError
from podlink.registry import SessionNotFound
from podlink.targets.base import TargetUnavailable

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer

log = logging.getLogger(__name__)


def protocol_error(
    code: wire.ErrorCode, message: str, detail: dict[str, Any] | None = None
) -> JsonRpcException:
    data: dict[str, Any] = {"reason": wire.ERROR_REASONS[code]}
    if detail:
        data["detail"] = detail
    return JsonRpcException(message=message, code=int(code), data=data)


def _translate(error: Exception) -> JsonRpcException | None:
    if isinstance(error, ConfigError):
        detail = {"file": str(error.path), "line": error.line, "key": error.key}
        return protocol_error(wire.ErrorCode.CONFIG_INVALID, str(error), detail)
    if isinstance(error, TargetUnavailable):
        return protocol_error(wire.ErrorCode.TARGET_UNAVAILABLE, str(error))
    if isinstance(error, SessionNotFound):
        return protocol_error(
            wire.ErrorCode.SESSION_NOT_FOUND, str(error), {"sessionId": error.session_id}
        )
    if isinstance(error, TimeoutError):
        return protocol_error(wire.ErrorCode.TIMEOUT, "timed out before the work was done")
    return None


def bind_request(
    server: PodlinkServer, spec: wire.RequestSpec, handler: Callable[[Any], Awaitable[object]]
) -> None:
    """Serve one request: decode its params, call its handler, encode the result."""
    method = spec.method

    async def handle(raw_params: Any) -> Any:
        try:
            params = msgspec.convert(raw_params or {}, spec.params)
        except msgspec.ValidationError as error:
            raise protocol_error(wire.ErrorCode.INVALID_PARAMS, f"{method}: {error}") from error
        try:
            result = await handler(params)
        except JsonRpcException:
            raise
        except Exception as error:
            translated = _translate(error)
            if translated is None:
                raise
            log.info("%s failed: %s", method, error)
            raise translated from error
        return None if result is None else msgspec.to_builtins(result)

    server.feature(method)(handle)
