"""The agent's stream, daemon side: frames out under one lock, one reader hands replies back.

``AgentChannel`` owns the exec stream an agent runs in: each call gets a fresh request id,
its frames go out in order under the send lock (a WRITE with all its DATA back to back), and
one reader task hands every reply to the call waiting for it, DATA to a READ, CHANGES to the
watch. When the stream ends, every pending and later call raises ``AgentGone``. ``Agent``
(``client``) builds the file requests on top of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import msgspec

from podlink.agent import wire
from podlink.agent.two_way import (
    Incoming,
    Precondition,
    RemoteChanges,
    add_precondition,
    decode_changes,
)
from podlink.agent.wire import ErrorCode, MessageType
from podlink.targets.base import ExecStream

logger = logging.getLogger("podlink.agent")

CLOSE_TIMEOUT = 5.0
STDERR_TAIL_LINES = 20
# How long an ended stream may take to report its exit code and last stderr lines.
END_REPORT_TIMEOUT = 1.0

_ABORT_WRITE = b""  # an empty DATA frame cancels a write (see wire)

ReplyT = TypeVar("ReplyT")


class AgentError(Exception):
    """An operation the agent refused or failed. ``code`` is one of ``wire.ErrorCode``."""

    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        super().__init__(code, message, path)
        self.code = code
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class AgentGone(AgentError):
    """The agent's stream ended or broke; the agent can no longer be used."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.GONE, message)


class _BrokenStream(Exception):
    """The agent sent something that does not fit the protocol."""


class _Call:
    __slots__ = ("batches", "future", "incoming", "request_id", "sent")

    def __init__(
        self, request_id: int, future: asyncio.Future[bytes], incoming: Incoming | None
    ) -> None:
        self.request_id = request_id
        self.future = future
        self.batches: list[bytes] = []  # ENTRIES payloads that came before the reply
        self.incoming = incoming  # where a READ's DATA goes
        self.sent = False


class WatchRegistration:
    __slots__ = ("on_changes", "request_id")

    def __init__(self, request_id: int, on_changes: Callable[[RemoteChanges], None]) -> None:
        self.request_id = request_id
        self.on_changes = on_changes


class AgentChannel:
    """The stream of one running agent; ``close`` it when done."""

    def __init__(self, stream: ExecStream) -> None:
        if stream.stdin is None:
            raise ValueError("the agent's exec must be started with stdin=True")
        self._stream = stream
        self._stdin = stream.stdin
        self._calls: dict[int, _Call] = {}
        self._watch: WatchRegistration | None = None
        self._last_request_id = 0
        self._send_lock = asyncio.Lock()
        self._gone: AgentGone | None = None
        self._closing = False
        self._input_closed = False
        self._close_task: asyncio.Task[None] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        # The reply reader waits while a READ's caller writes slower than the agent sends; an
        # exec stream that can hold output back then must, or that output piles up here.
        # (Local pipes always do; a Docker exec does once asked to.)
        limit_buffering = getattr(stream, "limit_buffering", None)
        if limit_buffering is not None:
            limit_buffering()
        self._stderr_task = asyncio.create_task(self._forward_stderr())
        self._reader_task = asyncio.create_task(self._read_replies())

    @property
    def alive(self) -> bool:
        return self._gone is None and not self._closing

    async def close(self) -> None:
        """Let the agent finish what it was sent and exit; stop it after CLOSE_TIMEOUT."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._shut_down())
        await asyncio.shield(self._close_task)

    async def _shut_down(self) -> None:
        self._closing = True
        # A write holding the lock finishes its frames first: the agent must see whole requests.
        try:
            await asyncio.wait_for(self._send_lock.acquire(), CLOSE_TIMEOUT)
            locked = True
        except TimeoutError:
            locked = False
        try:
            self._input_closed = True
            with contextlib.suppress(Exception):
                await self._stream.close_stdin()
            try:
                await asyncio.wait_for(self._stream.wait(), CLOSE_TIMEOUT)
            except TimeoutError:
                await self._stream.terminate()
        finally:
            if locked:
                self._send_lock.release()
        # Replies the agent sent before exiting still reach their callers.
        await asyncio.wait({self._reader_task, self._stderr_task}, timeout=CLOSE_TIMEOUT)
        for task in (self._reader_task, self._stderr_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_pending("the agent was closed")

    # --- Sending ------------------------------------------------------------------------------

    async def _call(self, kind: MessageType, request: dict[str, Any]) -> bytes:
        reply, _ = await self._call_with_batches(kind, request)
        return reply

    async def _call_with_batches(
        self, kind: MessageType, request: dict[str, Any]
    ) -> tuple[bytes, list[bytes]]:
        call = await self._send(kind, request)
        return await call.future, call.batches

    async def _send(
        self, kind: MessageType, request: dict[str, Any], incoming: Incoming | None = None
    ) -> _Call:
        payload = encode_request(request)
        call = self._open_call(incoming)
        await self._send_call(call, kind, payload)
        return call

    async def _send_call(self, call: _Call, kind: MessageType, payload: bytes) -> None:
        try:
            async with self._send_lock:
                self._raise_if_cannot_send()
                self._stdin.write(wire.frame(kind, call.request_id, payload))
                call.sent = True
                await self._drain()
        except BaseException:
            self._abandon(call)
            raise

    async def _write(
        self,
        root: str,
        path: str,
        mode: int,
        size: int,
        chunks: AsyncGenerator[bytes | memoryview],
        mtime_ns: int | None,
        expect: Precondition,
    ) -> str:
        fields: dict[str, Any] = {"root": root, "path": path, "mode": mode, "size": size}
        if mtime_ns is not None:
            fields["mtime_ns"] = mtime_ns
        add_precondition(fields, "expect", expect)
        request = encode_request(fields)
        call = self._open_call()
        try:
            # The WRITE and all its DATA must reach the agent back to back.
            async with self._send_lock, contextlib.aclosing(chunks):
                self._raise_if_cannot_send()
                await self._send_write(call, request, size, chunks)
        except BaseException:
            self._abandon(call)
            raise
        return self._decode(await call.future, wire.WriteReply).digest

    async def _send_write(
        self,
        call: _Call,
        request: bytes,
        size: int,
        chunks: AsyncGenerator[bytes | memoryview],
    ) -> None:
        request_id = call.request_id
        # The WRITE frame travels with the first DATA frame: one pipe write for a small file.
        unsent: list[bytes | memoryview] = [wire.frame(MessageType.WRITE, request_id, request)]
        sent = 0
        try:
            async for chunk in chunks:
                unsent += (wire.HEADER.pack(len(chunk), MessageType.DATA, request_id), chunk)
                self._stdin.write(b"".join(unsent))
                unsent = []
                call.sent = True
                sent += len(chunk)
                await self._drain()
            if sent < size:  # the source came up short
                unsent.append(wire.frame(MessageType.DATA, request_id, _ABORT_WRITE))
            if unsent:
                self._stdin.write(b"".join(unsent))
                call.sent = True
                await self._drain()
        except BaseException:
            if call.sent and sent < size and not self._stdin.is_closing():
                # Failed or cancelled midway: tell the agent, so the stream stays in step.
                self._stdin.write(wire.frame(MessageType.DATA, request_id, _ABORT_WRITE))
            raise

    def _open_call(self, incoming: Incoming | None = None) -> _Call:
        self._raise_if_unusable()
        request_id = self._last_request_id
        while True:
            request_id = request_id % 0xFFFFFFFF + 1
            if request_id not in self._calls:
                break
        self._last_request_id = request_id
        call = _Call(request_id, asyncio.get_running_loop().create_future(), incoming)
        self._calls[request_id] = call
        return call

    def _abandon(self, call: _Call) -> None:
        """Forget a call whose sending failed; a request that went out still gets its reply."""
        if not call.sent:
            self._calls.pop(call.request_id, None)
        call.future.cancel()

    def _raise_if_unusable(self) -> None:
        if self._gone is not None:
            raise AgentGone(self._gone.message)
        if self._closing:
            raise AgentGone("the agent was closed")

    def _raise_if_cannot_send(self) -> None:
        # Calls made before close() still go out: close() waits its turn for the send lock.
        if self._gone is not None:
            raise AgentGone(self._gone.message)
        if self._input_closed:
            raise AgentGone("the agent was closed")

    async def _drain(self) -> None:
        try:
            await self._stdin.drain()
        except (ConnectionError, OSError) as error:
            # The reader is about to find out why the agent ended: its account says more.
            await asyncio.wait({self._reader_task}, timeout=3 * END_REPORT_TIMEOUT)
            if self._gone is not None:
                raise AgentGone(self._gone.message) from error
            raise AgentGone(f"the agent's input closed: {error}") from error

    # --- Receiving ----------------------------------------------------------------------------

    async def _read_replies(self) -> None:
        try:
            reason = await self._read_until_end()
        except asyncio.CancelledError:
            self._fail_pending("the agent was closed")
            raise
        if self._closing:
            self._fail_pending("the agent was closed")
            return
        # New calls fail at once; pending ones wait a moment for a better explanation.
        self._gone = AgentGone(f"the agent stopped: {reason}")
        # A sender may be waiting for room to write to an agent that will never read again
        # (a Docker exec keeps its input open after its command died): end the input too.
        with contextlib.suppress(Exception):
            self._stdin.transport.abort()
        self._fail_pending(await self._describe_end(reason))

    async def _read_until_end(self) -> str:
        """Hand replies to their calls until the stream ends; why it ended."""
        stdout = self._stream.stdout
        try:
            while True:
                header = await stdout.readexactly(wire.HEADER_SIZE)
                length, kind, request_id = wire.HEADER.unpack(header)
                if length > wire.MAX_PAYLOAD:
                    raise _BrokenStream(f"it sent a frame of {length} bytes")
                payload = await stdout.readexactly(length) if length else b""
                if kind == MessageType.DATA:
                    await self._take_data(request_id, payload)
                else:
                    self._dispatch(kind, request_id, payload)
        except asyncio.IncompleteReadError as error:
            return "its output ended in the middle of a frame" if error.partial else "it exited"
        except _BrokenStream as error:
            # A stream out of step cannot be trusted again; ending its input stops the agent.
            self._stdin.close()
            return f"protocol error: {error}"
        except (ConnectionError, OSError) as error:
            return f"reading its output failed: {error}"
        except Exception as error:  # a bug here must fail the calls, not leave them hanging
            logger.exception("reading the agent's replies failed")
            self._stdin.close()
            return f"podlink could not read its replies: {error!r}"

    async def _take_data(self, request_id: int, payload: bytes) -> None:
        call = self._calls.get(request_id)
        if call is None or call.incoming is None:
            raise _BrokenStream(f"it sent DATA for request {request_id}, which reads nothing")
        await call.incoming.put(payload)

    def _dispatch(self, kind: int, request_id: int, payload: bytes) -> None:
        if kind == MessageType.CHANGES:
            self._report_changes(request_id, payload)
            return
        if kind not in (MessageType.OK, MessageType.ERROR, MessageType.ENTRIES):
            raise _BrokenStream(f"it sent message type {kind}")
        call = self._calls.get(request_id)
        if call is None:
            raise _BrokenStream(f"it answered request {request_id}, which is not pending")
        if kind == MessageType.ENTRIES:
            call.batches.append(payload)
            return
        del self._calls[request_id]
        if call.incoming is not None:
            call.incoming.end()
        if call.future.done():  # the caller gave up waiting
            return
        if kind == MessageType.OK:
            call.future.set_result(payload)
        else:
            call.future.set_exception(_error_from(payload))

    def _report_changes(self, request_id: int, payload: bytes) -> None:
        watch = self._watch
        if watch is None or watch.request_id != request_id:
            return  # from a watch replaced or stopped meanwhile
        try:
            watch.on_changes(decode_changes(payload))
        except Exception:  # the caller's bug must not stop the replies of everyone else
            logger.exception("handling changes in the target failed")

    def _fail_pending(self, message: str) -> None:
        if self._gone is None or self._gone.message != message:
            self._gone = AgentGone(message)
        calls, self._calls = list(self._calls.values()), {}
        for call in calls:
            if call.incoming is not None:
                call.incoming.end()
            if not call.future.done():
                call.future.set_exception(AgentGone(message))

    async def _describe_end(self, reason: str) -> str:
        await asyncio.wait({self._stderr_task}, timeout=END_REPORT_TIMEOUT)
        message = f"the agent stopped: {reason}"
        try:
            exit_code = await asyncio.wait_for(self._stream.wait(), END_REPORT_TIMEOUT)
        except TimeoutError:
            pass
        else:
            message += f" (exit code {exit_code})"
        return message + self._stderr_summary()

    async def _forward_stderr(self) -> None:
        stderr = self._stream.stderr
        if stderr is None:
            return
        while True:
            try:
                line = await stderr.readline()
            except ValueError:  # a line beyond the reader's limit: its rest comes next
                continue
            except (ConnectionError, OSError):
                return
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._stderr_tail.append(text)
                logger.warning("agent: %s", text)

    def _stderr_summary(self) -> str:
        if not self._stderr_tail:
            return ""
        return "; it said: " + " | ".join(self._stderr_tail)

    @staticmethod
    def _decode(payload: bytes, reply_type: type[ReplyT]) -> ReplyT:
        try:
            return wire.decode_reply(payload, reply_type)
        except msgspec.DecodeError as error:
            message = f"the agent sent a reply that does not fit the protocol: {error}"
            raise AgentError(ErrorCode.PROTOCOL, message) from error


def encode_request(request: dict[str, Any]) -> bytes:
    try:
        payload = wire.encode_json(request)
    except msgspec.EncodeError as error:  # e.g. a path with undecodable bytes
        raise AgentError(ErrorCode.BAD_REQUEST, f"cannot encode the request: {error}") from error
    if len(payload) > wire.MAX_PAYLOAD:
        raise AgentError(ErrorCode.BAD_REQUEST, "the request is too large for one frame")
    return payload


def _error_from(payload: bytes) -> AgentError:
    try:
        reply = wire.decode_reply(payload, wire.ErrorReply)
    except msgspec.DecodeError as error:
        raise _BrokenStream(f"it sent an unreadable ERROR: {error}") from error
    return AgentError(reply.code, reply.message, reply.path)
