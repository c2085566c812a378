"""Log streams end the way they were ended: a stop is not a lost log, a failed read is."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any, cast

import msgspec

from podlink import protocol
from podlink.server.logs import LogStreams


class PipeLog:
    """A log read from a pipe, as a followed log blocks on its connection. ``close()`` shuts
    the read end down under the blocked read, which then fails, as a Kubernetes log
    response's read does when it is shut down."""

    def __init__(self, handled: threading.Event) -> None:
        self.read_end, self.write_end = os.pipe()
        self._closed = False
        self._handled = handled

    def __iter__(self) -> Iterator[bytes]:
        while chunk := os.read(self.read_end, 4096):
            if self._closed:
                raise OSError("the response was shut down")
            yield chunk

    def write(self, text: str) -> None:
        os.write(self.write_end, text.encode())

    def close(self) -> None:
        self._closed = True
        # Wakes the blocked read, which finds the log closed; returns once the stream has
        # taken the failure in (the race a real response loses now and then, made certain).
        os.write(self.write_end, b"x")
        self._handled.wait(10)

    def fail(self) -> None:
        self._closed = True
        os.write(self.write_end, b"x")


class Recorded(LogStreams):
    def __init__(self) -> None:
        super().__init__(cast(Any, None))
        self.sent: asyncio.Queue[protocol.ContainerLogParams] = asyncio.Queue()
        self.ended = threading.Event()

    def _send(self, params: protocol.ContainerLogParams) -> None:
        self.sent.put_nowait(params)
        if params.ended:
            self.ended.set()

    async def next(self) -> dict[str, Any]:
        params = await asyncio.wait_for(self.sent.get(), 10)
        return cast(dict[str, Any], msgspec.to_builtins(params))


async def test_a_stop_that_makes_the_blocked_read_fail_ends_without_an_error() -> None:
    streams = Recorded()
    log = PipeLog(streams.ended)
    stream_id = streams.open("session", log)
    log.write("first line\n")
    assert (await streams.next())["text"] == "first line\n"
    await streams.stop(protocol.StopLogsParams(stream_id=stream_id))
    last = await streams.next()
    assert last["ended"] is True
    assert "error" not in last


async def test_a_read_that_fails_on_its_own_ends_with_the_error() -> None:
    streams = Recorded()
    log = PipeLog(streams.ended)
    streams.open("session", log)
    log.write("first line\n")
    assert (await streams.next())["text"] == "first line\n"
    log.fail()
    last = await streams.next()
    assert last["ended"] is True
    assert last["error"] == "lost the log: the response was shut down"
