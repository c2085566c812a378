"""The server side of RFC 6455 WebSockets on asyncio streams, as much as the double needs.

Only what the Kubernetes streaming subresources use: the opening handshake with a
subprotocol, unfragmented or fragmented binary/text messages from the client (always
masked), unmasked binary frames to it, ping/pong and the closing handshake.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import struct

HANDSHAKE_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY = 0x0, 0x1, 0x2
OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x8, 0x9, 0xA


def accept_key(client_key: str) -> str:
    digest = hashlib.sha1((client_key + HANDSHAKE_GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def handshake_response(client_key: str, subprotocol: str | None) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(client_key)}",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class WebSocket:
    """One accepted connection. ``receive`` returns whole messages; None once closed."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, subprotocol: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.subprotocol = subprotocol
        self.closed = False
        self._send_lock = asyncio.Lock()

    async def receive(self) -> bytes | None:
        message = b""
        while True:
            try:
                opcode, fin, payload = await self._read_frame()
            except (asyncio.IncompleteReadError, ConnectionError):
                self.closed = True
                return None
            if opcode == OPCODE_CLOSE:
                await self.close()
                return None
            if opcode == OPCODE_PING:
                await self._send_frame(OPCODE_PONG, payload)
                continue
            if opcode == OPCODE_PONG:
                continue
            message += payload
            if fin:
                return message

    async def _read_frame(self) -> tuple[int, bool, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", await self.reader.readexactly(8))
        mask = await self.reader.readexactly(4) if second & 0x80 else b""
        payload = await self.reader.readexactly(length)
        if mask and length:
            # One big-integer XOR: a per-byte loop is far too slow for file transfers.
            key = (mask * (length // 4 + 1))[:length]
            unmasked = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
            payload = unmasked.to_bytes(length, "big")
        return first & 0x0F, bool(first & 0x80), payload

    async def send(self, payload: bytes) -> None:
        await self._send_frame(OPCODE_BINARY, payload)

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.writer.is_closing():
            return
        length = len(payload)
        if length < 126:
            header = struct.pack(">BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            header = struct.pack(">BBH", 0x80 | opcode, 126, length)
        else:
            header = struct.pack(">BBQ", 0x80 | opcode, 127, length)
        async with self._send_lock:
            with contextlib.suppress(ConnectionError):
                self.writer.write(header + payload)
                await self.writer.drain()

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._send_frame(OPCODE_CLOSE, struct.pack(">H", 1000))
        with contextlib.suppress(ConnectionError):
            self.writer.close()
