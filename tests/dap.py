"""A small Debug Adapter Protocol client over TCP, written from the DAP specification.

Messages are JSON bodies behind a ``Content-Length`` header, as in LSP. The client sends
requests with increasing ``seq`` numbers; the adapter answers each with a ``response`` whose
``request_seq`` names it, sends ``event`` messages whenever it likes, and may send reverse
``request`` messages of its own, which this client refuses politely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

HEADER_END = b"\r\n\r\n"


class DapError(Exception):
    """The adapter answered a request with ``success: false``."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"{command} failed: {message}")
        self.command = command


class DapClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._seq = 0
        self._pending: dict[int, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._closed = False
        self._reading = asyncio.create_task(self._read_messages())

    @classmethod
    async def connect(cls, host: str, port: int, seconds: float = 10.0) -> DapClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), seconds)
        return cls(reader, writer)

    # -- sending -----------------------------------------------------------------------

    def send_request(
        self, command: str, arguments: dict[str, Any] | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """Send a request now; the future resolves to the response's body.

        For requests whose response comes late (``attach`` answers after
        ``configurationDone``), keep the future and await it later.
        """
        self._seq += 1
        message: dict[str, Any] = {"seq": self._seq, "type": "request", "command": command}
        if arguments is not None:
            message["arguments"] = arguments
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._seq] = (command, answer)
        self._write(message)
        return answer

    async def request(
        self, command: str, arguments: dict[str, Any] | None = None, seconds: float = 20.0
    ) -> dict[str, Any]:
        return await asyncio.wait_for(self.send_request(command, arguments), seconds)

    def _write(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self._writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    # -- receiving ---------------------------------------------------------------------

    async def wait_event(
        self,
        event: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _body: True,
        seconds: float = 20.0,
        since: int = 0,
    ) -> dict[str, Any]:
        """The body of the first matching event at or after position ``since``."""

        def find() -> dict[str, Any] | None:
            for message in self.events[since:]:
                if message.get("event") == event and predicate(message.get("body") or {}):
                    body: dict[str, Any] = message.get("body") or {}
                    return body
            return None

        async with asyncio.timeout(seconds), self._arrived:
            while (found := find()) is None:
                if self._closed:
                    raise ConnectionError(f"the adapter closed the connection before {event!r}")
                await self._arrived.wait()
            return found

    def mark(self) -> int:
        return len(self.events)

    async def _read_messages(self) -> None:
        try:
            while True:
                message = await self._read_one()
                if message is None:
                    return
                await self._dispatch(message)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._closed = True
            for command, answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(ConnectionError(f"connection closed before {command}"))
            self._pending.clear()
            async with self._arrived:
                self._arrived.notify_all()

    async def _read_one(self) -> dict[str, Any] | None:
        try:
            head = await self._reader.readuntil(HEADER_END)
        except asyncio.IncompleteReadError:
            return None
        length = None
        for line in head.decode("ascii").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise ConnectionError(f"a DAP message without Content-Length: {head!r}")
        decoded: dict[str, Any] = json.loads(await self._reader.readexactly(length))
        return decoded

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "response":
            command, answer = self._pending.pop(message["request_seq"], ("", None))
            if answer is None or answer.done():
                return
            if message.get("success"):
                answer.set_result(message.get("body") or {})
            else:
                answer.set_exception(DapError(command, str(message.get("message"))))
        elif kind == "event":
            async with self._arrived:
                self.events.append(message)
                self._arrived.notify_all()
        elif kind == "request":
            # A reverse request (runInTerminal, startDebugging): this client does neither.
            self._seq += 1
            self._write(
                {
                    "seq": self._seq,
                    "type": "response",
                    "request_seq": message["seq"],
                    "command": message.get("command"),
                    "success": False,
                    "message": "not supported by this client",
                }
            )

    async def wait_closed(self, seconds: float = 20.0) -> None:
        """Wait until the adapter has closed the connection."""
        await asyncio.wait_for(asyncio.shield(self._reading), seconds)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
