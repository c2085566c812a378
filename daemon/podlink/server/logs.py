"""Log streams: ``podlink/followLogs`` streams a session's container or pod log (what
``podlink logs -f`` prints) as ``podlink/containerLog`` notifications; ``podlink/stopLogs``
ends one. Each stream reads its log on a thread of its own, so a quiet container holds no
worker of the pool that reads the client's messages."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import uuid
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from podlink import protocol
from podlink.targets.base import TargetUnavailable
from podlink.targets.capabilities import ContainerLogs, LogRequest
from podlink.terminal import iterate_in_thread

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer


@dataclass
class _Stream:
    chunks: Iterable[bytes]
    task: asyncio.Task[None] | None = None
    # podlink/stopLogs asked for the end: a read that fails now failed because of it.
    stopping: bool = False


class LogStreams:
    """The log streams of one server, by id."""

    def __init__(self, server: PodlinkServer) -> None:
        self._server = server
        self._streams: dict[str, _Stream] = {}

    def _send(self, params: protocol.ContainerLogParams) -> None:
        self._server.protocol.notify(protocol.CONTAINER_LOG, msgspec.to_builtins(params))

    async def _pump(self, stream_id: str, session_id: str, stream: _Stream) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        error: str | None = None
        try:
            async for chunk in iterate_in_thread(stream.chunks):
                text = decoder.decode(chunk)
                if text:
                    self._send(
                        protocol.ContainerLogParams(
                            stream_id=stream_id, session_id=session_id, text=text
                        )
                    )
        except asyncio.CancelledError:
            pass  # podlink/stopLogs: the last message still goes out
        except Exception as failure:  # the client's and the connection's errors alike
            # Closing a response under a blocked read can make the read fail (a Kubernetes
            # log does) before the task is cancelled: that is the stop, not a lost log.
            if not stream.stopping:
                error = f"lost the log: {failure}"
        finally:
            self._streams.pop(stream_id, None)
            rest = decoder.decode(b"", final=True)
            self._send(
                protocol.ContainerLogParams(
                    stream_id=stream_id, session_id=session_id, text=rest, ended=True, error=error
                )
            )

    async def follow(self, params: protocol.FollowLogsParams) -> protocol.FollowLogsResult:
        session = self._server.registry.get(params.session_id)
        target = session.target
        if target is None or session.state == "stopped":
            raise TargetUnavailable(f"session {params.session_id} is not connected to a target")
        if not isinstance(target, ContainerLogs):
            raise TargetUnavailable(
                f"a {target.describe().kind} target has no container log: the app's output "
                "is in the session's log (podlink/log, source app)"
            )
        request = LogRequest(
            follow=not params.previous,
            tail=params.tail,
            previous=bool(params.previous),
            every_pod=bool(params.every_pod),
        )
        chunks = await asyncio.to_thread(target.container_logs, request)
        return protocol.FollowLogsResult(stream_id=self.open(session.id, chunks))

    def open(self, session_id: str, chunks: Iterable[bytes]) -> str:
        """Stream ``chunks`` (a blocking iterable; ``close()``, if it has one, ends a read
        that waits) as the session's log; the stream's id."""
        stream_id = f"logs-{uuid.uuid4().hex[:12]}"
        stream = _Stream(chunks)
        self._streams[stream_id] = stream
        # Begun on the next turn of the loop: the result, with the id, goes out first.
        loop = asyncio.get_running_loop()
        loop.call_soon(_start, stream, self._pump(stream_id, session_id, stream))
        return stream_id

    async def stop(self, params: protocol.StopLogsParams) -> None:
        stream = self._streams.get(params.stream_id)
        if stream is None:
            return  # ended already: its last message said so
        stream.stopping = True
        close = getattr(stream.chunks, "close", None)
        if close is not None:
            # Closing the response ends the blocking read of the thread that iterates it.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(close)
        if stream.task is not None:
            stream.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.task


def _start(stream: _Stream, work: Coroutine[Any, Any, None]) -> None:
    stream.task = asyncio.ensure_future(work)
