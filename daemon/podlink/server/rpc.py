"""Typed request handlers: decode params, map podlink's exceptions to protocol errors.

Every request in the protocol schema gets a handler; the ones this daemon does not
implement yet answer ``notImplemented`` at once instead of hanging or crashing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from pygls.exceptions import JsonRpcException

from podlink import protocol as wire
from podlink.config import ConfigError
from podlink.registry import SessionNotFound
from podlink.targets.base import TargetUnavailable

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer

log = logging.getLogger(__name__)

P = TypeVar("P", bound=msgspec.Struct)
Handler = Callable[[Any], Awaitable[Any]]


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


def register_request(
    server: PodlinkServer, method: str, implementation: Callable[[P], Awaitable[Any]]
) -> None:
    spec = wire.REQUESTS[method]

    async def handle(raw_params: Any) -> Any:
        try:
            params = msgspec.convert(raw_params or {}, spec.params)
        except msgspec.ValidationError as error:
            raise protocol_error(wire.ErrorCode.INVALID_PARAMS, f"{method}: {error}") from error
        try:
            result = await implementation(params)  # type: ignore[arg-type]
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


def register_not_implemented(server: PodlinkServer) -> None:
    """Answer every protocol request nobody registered with ``notImplemented``."""
    for method in wire.REQUESTS:
        if method in server.protocol.fm.features:
            continue

        async def refuse(_params: Any, method: str = method) -> Any:
            raise protocol_error(
                wire.ErrorCode.NOT_IMPLEMENTED,
                f"{method} is part of the podlink protocol but this daemon "
                "does not implement it yet",
            )

        server.feature(method)(refuse)
