"""The one error type that reaches a client: a message and the protocol error code it travels
with. Configuration, target, session, debugging, build and test errors subclass it, so the
server turns any of them into a JSON-RPC error by reading ``code`` and ``detail``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from podlink.protocol import ERROR_REASONS, ErrorCode


class PodlinkError(Exception):
    """Something the user can act on, with its protocol error code.

    ``str()`` is the message; ``detail`` is the machine-readable part of the error's data
    (e.g. the file, line and key of a config error), ``data`` the whole of it as sent.
    """

    def __init__(
        self, code: ErrorCode, message: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.detail: dict[str, Any] = dict(detail or {})

    @property
    def data(self) -> dict[str, Any]:
        """The JSON-RPC error's data: ``{reason, detail?}``."""
        data: dict[str, Any] = {"reason": ERROR_REASONS[self.code]}
        if self.detail:
            data["detail"] = self.detail
        return data


class InvalidParams(PodlinkError):
    """A request's params have the right shape but a value podlink cannot use."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_PARAMS, message)
