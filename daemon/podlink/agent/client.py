"""The daemon's side of the agent: one exec stream into the target, many requests in flight.

``Agent.start(target)`` runs the target's Python with a one-line bootstrap that reads the
agent's source (``agent.py`` beside this file) from standard input and runs it, so the agent
is always exactly this version and nothing is left behind in the target. After a HELLO the
agent answers file requests; callers may issue them concurrently: each gets a fresh request
id, frames go out in order under a send lock, and one reader task hands every reply to the
call waiting for it. A saved file costs one round trip.

A READ's DATA frames and a WATCH's CHANGES frames arrive through the same reader, between
other replies (see ``two_way``).

When the stream ends, every pending and later call raises ``AgentGone``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import importlib.resources
import logging
import os
import stat
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

import msgspec

from podlink.agent import wire
from podlink.agent.two_way import (
    NO_CHECK,
    Expected,
    Incoming,
    LocalFile,
    Precondition,
    RemoteChanges,
    add_precondition,
    decode_changes,
    encode_precondition,
    entry_from_row,
)
from podlink.agent.wire import ErrorCode, MessageType, ReadResult, WatchStarted
from podlink.sync.core.snapshot import Entry
from podlink.targets.base import ExecStream, Target, TargetUnavailable

logger = logging.getLogger("podlink.agent")

# The public names; some live in wire and two_way, beside the protocol they belong to.
__all__ = [
    "NO_CHECK",
    "Agent",
    "AgentError",
    "AgentGone",
    "AgentHello",
    "Expected",
    "Precondition",
    "ReadResult",
    "RemoteChanges",
    "ScanResult",
    "SentFile",
    "WatchStarted",
    "WriteManyResult",
]

# Runs in the target's Python: reads one line with a byte count, then that much agent source
# from the same buffered stdin the agent goes on reading frames from. Compiling the agent is a
# fixed cost of every start (tens of ms in a small container), so the compiled code is kept
# in a folder only this user can write ($TMPDIR/podlink-agent-UID, mode 0700, checked before
# every use) under the source's hash (argv[1]) and the interpreter's cache tag: a stale or
# foreign copy is never run, and anything unexpected there just means compiling again.
BOOTSTRAP = """\
import sys
sys.version_info<(3,8) and sys.exit('podlink needs Python 3.8 or newer in the target, not '\
+sys.version.split()[0])
import os,marshal
i=sys.stdin.buffer;s=i.read(int(i.readline()));c=None
d=os.path.join(os.environ.get('TMPDIR') or '/tmp','podlink-agent-%d'%os.getuid())
f=sys.argv[1:] and os.path.join(d,sys.argv[1]+'.'+str(sys.implementation.cache_tag))
def mine():
 t=os.lstat(d);return t.st_mode==0o40700 and t.st_uid==os.getuid()
try:
 if f and mine():
  with open(f,'rb') as h:c=marshal.loads(h.read())
  c=c if hasattr(c,'co_code') else None
except Exception:c=None
if c is None:
 c=compile(s,'podlink-agent','exec')
 try:
  if f:
   os.path.lexists(d) or os.mkdir(d,0o700)
   if mine():
    w='%s.%d'%(f,os.getpid())
    with open(w,'wb') as h:h.write(marshal.dumps(c))
    os.replace(w,f)
 except Exception:pass
g={'__name__':'__podlink_agent__'};exec(c,g);g['main']()
"""
# -I: the working folder is the user's project; a file there named like a stdlib module
# (json.py, hashlib.py) must not be imported by the agent. It also ignores PYTHON* settings.
PYTHON_OPTIONS = ("-I",)

STARTUP_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0
CHUNK_SIZE = 1024 * 1024
HASH_BATCH = 1000
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


class ScanResult(msgspec.Struct, frozen=True):
    entries: dict[str, Entry]
    problems: list[tuple[str, str]]
    missing: bool


class AgentHello(msgspec.Struct, frozen=True):
    version: str
    protocol: int
    python: str
    platform: str
    pid: int
    uid: int


@functools.cache
def agent_source() -> bytes:
    return importlib.resources.files("podlink.agent").joinpath("agent.py").read_bytes()


@functools.cache
def agent_source_key() -> str:
    """Names the agent's compiled code in the target's cache (see ``BOOTSTRAP``)."""
    return hashlib.sha256(agent_source()).hexdigest()[:32]


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


class _Watch:
    __slots__ = ("on_changes", "request_id")

    def __init__(self, request_id: int, on_changes: Callable[[RemoteChanges], None]) -> None:
        self.request_id = request_id
        self.on_changes = on_changes


class Agent:
    """A running agent. Create it with ``start`` or ``over``; ``close`` it when done."""

    hello: AgentHello

    def __init__(self, stream: ExecStream) -> None:
        if stream.stdin is None:
            raise ValueError("the agent's exec must be started with stdin=True")
        self._stream = stream
        self._stdin = stream.stdin
        self._calls: dict[int, _Call] = {}
        self._watch: _Watch | None = None
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

    # --- Lifecycle ----------------------------------------------------------------------------

    @classmethod
    async def start(cls, target: Target) -> Agent:
        """Start the agent in ``target``; AgentGone, saying why, when it cannot start."""
        argv = [target.python, *PYTHON_OPTIONS, "-c", BOOTSTRAP, agent_source_key()]
        try:
            stream = await target.exec(argv, stdin=True)
        except TargetUnavailable as error:
            raise AgentGone(f"cannot start the agent: {error}") from error
        try:
            return await cls.over(stream)
        except AgentGone as error:
            where = target.describe().name
            message = f"cannot start the agent with {target.python!r} in {where}: {error.message}"
            raise AgentGone(message) from error

    @classmethod
    async def over(cls, stream: ExecStream) -> Agent:
        """Send the agent's source into an exec that runs ``BOOTSTRAP``, then say HELLO."""
        agent = cls(stream)
        try:
            await asyncio.wait_for(agent._handshake(), STARTUP_TIMEOUT)
        except TimeoutError:
            await agent.close()
            message = f"the agent did not answer within {STARTUP_TIMEOUT:.0f} s"
            raise AgentGone(message + agent._stderr_summary()) from None
        except BaseException:
            await agent.close()
            raise
        return agent

    async def _handshake(self) -> None:
        source = agent_source()
        async with self._send_lock:
            self._stdin.write(b"%d\n" % len(source) + source)
            await self._drain()
        hello = self._decode(await self._call(MessageType.HELLO, {}), AgentHello)
        if hello.protocol != wire.PROTOCOL_VERSION:
            raise AgentGone(
                f"the agent speaks protocol {hello.protocol}, podlink {wire.PROTOCOL_VERSION}"
            )
        self.hello = hello

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

    # --- Requests -----------------------------------------------------------------------------

    async def scan(self, root: str, *, hash: bool = False) -> ScanResult:
        """Everything below ``root`` (not following symlinks), with digests when ``hash``."""
        request = {"root": root, "hash": hash}
        reply, batches = await self._call_with_batches(MessageType.SCAN, request)
        done = self._decode(reply, wire.ScanDone)
        entries: dict[str, Entry] = {}
        problems: list[tuple[str, str]] = []
        for payload in batches:
            batch = self._decode(payload, wire.EntriesBatch)
            entries.update(entry_from_row(row) for row in batch.entries)
            problems.extend((problem.path, problem.message) for problem in batch.problems)
        problems.extend((problem.path, problem.message) for problem in done.problems)
        return ScanResult(entries=entries, problems=problems, missing=done.missing)

    async def hash(self, root: str, paths: Sequence[str]) -> dict[str, str | None]:
        """sha256 of each path's content; None where there is no regular file."""
        batches = [list(paths[at : at + HASH_BATCH]) for at in range(0, len(paths), HASH_BATCH)]
        replies = await asyncio.gather(
            *(self._call(MessageType.HASH, {"root": root, "paths": batch}) for batch in batches)
        )
        digests: dict[str, str | None] = {}
        for reply in replies:
            digests.update(self._decode(reply, wire.HashReply).digests)
        return digests

    async def write_bytes(
        self,
        root: str,
        path: str,
        data: bytes,
        mode: int = 0o644,
        mtime_ns: int | None = None,
        *,
        expect: Precondition = NO_CHECK,
    ) -> str:
        """Atomically replace ``path`` with ``data``; the sha256 the agent computed.

        AgentError ``changed`` when ``expect`` does not hold (see ``two_way``).
        """
        return await self._write(root, path, mode, len(data), _slices(data), mtime_ns, expect)

    async def write_file(
        self,
        root: str,
        path: str,
        source: Path,
        mode: int | None = None,
        *,
        expected_size: int | None = None,
        expect: Precondition = NO_CHECK,
    ) -> str:
        """Stream the local file ``source`` to ``path``; the sha256 the agent computed.

        ``mode`` defaults to the source's permission bits. AgentError ``changed`` when the
        source changed while it was sent (the target may then hold any version of it) or
        vanished before, or when ``expect`` did not hold in the target: either way the
        caller should look again. OSError when the source cannot be read. A small
        ``expected_size`` lets the file be read on the event loop: a few kilobytes from the
        page cache cost less than two hops to a worker thread, and that hop is most of a
        saved file's latency.
        """
        inline = expected_size is not None and expected_size <= INLINE_READ_LIMIT
        try:
            if inline:
                handle, before, first = _open_source(source)
            else:
                handle, before, first = await asyncio.to_thread(_open_source, source)
        except FileNotFoundError as error:
            message = f"{source} vanished before it could be sent"
            raise AgentError(ErrorCode.CHANGED, message, path) from error
        mode = stat.S_IMODE(before.st_mode) if mode is None else mode
        try:
            chunks = _read_chunks(handle, first, before.st_size)
            digest = await self._write(
                root, path, mode, before.st_size, chunks, before.st_mtime_ns, expect
            )
        except AgentError as error:
            if error.code != ErrorCode.CANCELLED:
                raise
            message = f"{source} shrank while it was being sent"
            raise AgentError(ErrorCode.CHANGED, message, path) from error
        finally:
            handle.close()
        after = _stat_or_none(source) if inline else await asyncio.to_thread(_stat_or_none, source)
        if after is None or _version(after) != _version(before):
            message = f"{source} changed while it was being sent"
            raise AgentError(ErrorCode.CHANGED, message, path)
        return digest

    async def write_many(
        self, root: str, files: Sequence[tuple[str, Path] | tuple[str, Path, Precondition]]
    ) -> WriteManyResult:
        """Send many small local files (``(path, source)`` or ``(path, source, expect)``) in
        one round trip.

        The sources are read in a worker thread; what is sent is what was read then (mode,
        size and mtime included). Files gone by then are listed in ``vanished``; files the
        agent could not write (``changed`` where ``expect`` did not hold), or that could not
        be read here, in ``failed``.
        """
        sources = [(file[0], file[1]) for file in files]
        expectations = {file[0]: file[2] for file in files if len(file) == 3}
        loaded, vanished, unreadable = await asyncio.to_thread(_load_files, sources)
        listing: list[list[Any]] = []
        for f in loaded:
            listed: list[Any] = [f.path, f.mode, len(f.data), f.mtime_ns]
            expect = expectations.get(f.path, NO_CHECK)
            if expect is not NO_CHECK:
                listed.append(encode_precondition(expect))
            listing.append(listed)
        request = _encode({"root": root, "files": listing})
        call = self._open_call()
        try:
            async with self._send_lock:
                self._raise_if_cannot_send()
                # DATA frames cut from each file's own bytes: the contents are copied once, by
                # the transport, not joined and sliced first. (A file may have grown since it
                # was planned as small, hence the cut.)
                frames: list[bytes | memoryview] = [
                    wire.frame(MessageType.WRITE_MANY, call.request_id, request)
                ]
                for loaded_file in loaded:
                    for piece in _slices_of(loaded_file.data):
                        frames += (
                            wire.HEADER.pack(len(piece), MessageType.DATA, call.request_id),
                            piece,
                        )
                self._stdin.writelines(frames)
                call.sent = True
                await self._drain()
        except BaseException:
            self._abandon(call)
            raise
        reply = self._decode(await call.future, wire.WriteManyReply)
        refused = {path for path, _, _ in reply.failed}
        return WriteManyResult(
            written=[
                SentFile(f.path, f.mode, len(f.data), f.mtime_ns)
                for f in loaded
                if f.path not in refused
            ],
            failed=[*reply.failed, *unreadable],
            vanished=vanished,
        )

    # Each change below takes ``expect``: AgentError ``changed`` unless it holds right before
    # the change (see ``two_way.Precondition``).

    async def delete(
        self, root: str, path: str, *, recursive: bool = False, expect: Precondition = NO_CHECK
    ) -> bool:
        """Remove ``path`` (a symlink as a link); whether something was there."""
        request = {"root": root, "path": path, "recursive": recursive}
        add_precondition(request, "expect", expect)
        return self._decode(await self._call(MessageType.DELETE, request), wire.DeleteReply).existed

    async def mkdir(
        self, root: str, path: str, mode: int = 0o755, *, expect: Precondition = NO_CHECK
    ) -> None:
        """Make the folder ``path`` (and its parents), or set the mode of an existing one."""
        request = {"root": root, "path": path, "mode": mode}
        add_precondition(request, "expect", expect)
        await self._call(MessageType.MKDIR, request)

    async def symlink(
        self, root: str, path: str, target: str, *, expect: Precondition = NO_CHECK
    ) -> None:
        """Make or replace the symlink ``path``; ``target`` must be relative and stay inside."""
        request = {"root": root, "path": path, "target": target}
        add_precondition(request, "expect", expect)
        await self._call(MessageType.SYMLINK, request)

    async def chmod(
        self, root: str, path: str, mode: int, *, expect: Precondition = NO_CHECK
    ) -> None:
        """Set the permission bits of ``path``; AgentError ``isSymlink`` for a link."""
        request = {"root": root, "path": path, "mode": mode}
        add_precondition(request, "expect", expect)
        await self._call(MessageType.CHMOD, request)

    async def rename(
        self,
        root: str,
        src: str,
        dst: str,
        *,
        expect: Precondition = NO_CHECK,
        expect_dst: Precondition = NO_CHECK,
    ) -> None:
        """Move ``src`` onto ``dst`` (replacing it), making the parents of ``dst``.

        ``expect`` is checked at ``src``, ``expect_dst`` at ``dst``.
        """
        request = {"root": root, "src": src, "dst": dst}
        add_precondition(request, "expect", expect)
        add_precondition(request, "expect_dst", expect_dst)
        await self._call(MessageType.RENAME, request)

    async def ensure_root(self, root: str, *, owner: str | None = None) -> bool:
        """Make the folder ``root`` and its parents; whether it had to be made.

        With ``owner`` (``user``, ``user:group``, ``uid`` or ``uid:gid``, as the target knows
        them), everything the agent creates or replaces below ``root`` from now on is given
        to that owner. AgentError ``badRequest`` for an unknown name, ``permissionDenied``
        when the agent's user may not give files away (only root may).
        """
        request: dict[str, Any] = {"root": root}
        if owner is not None:
            request["owner"] = owner
        reply = await self._call(MessageType.ENSURE_ROOT, request)
        return self._decode(reply, wire.EnsureRootReply).created

    async def read_file(self, root: str, path: str, destination: Path) -> ReadResult:
        """Copy the target's regular file ``path`` into ``destination``, a new local file.

        ``destination`` must not exist (it is created exclusively); it is written as the
        bytes arrive, so memory stays bounded, and gets the file's permission bits (without
        setuid, setgid or sticky bits); its mtime is left as written. On any failure it is
        removed again and AgentError raised: ``changed`` when the file changed while it was
        read, ``notFound``, ``isSymlink``, ``isDirectory``, ``invalid`` (a special file),
        ``escape``; ``exists`` or ``io`` when ``destination`` cannot be written.
        """
        try:
            local = LocalFile(destination)
        except OSError as error:
            raise _local_write_error(error, destination, path) from error
        incoming = Incoming()
        try:
            call = await self._send(MessageType.READ, {"root": root, "path": path}, incoming)
            while (chunk := await incoming.take()) is not None:
                await local.write(chunk)
            result = self._decode(await call.future, ReadResult)
            if result.size != local.size:
                message = f"the agent sent {local.size} bytes of a {result.size} byte file"
                raise AgentError(ErrorCode.PROTOCOL, message, path)
            local.finish(result.mode)
        except BaseException as error:
            incoming.abandon()
            await local.discard()
            if isinstance(error, OSError):
                raise _local_write_error(error, destination, path) from error
            raise
        return result

    async def watch(
        self,
        root: str,
        on_changes: Callable[[RemoteChanges], None],
        *,
        poll_interval_ms: int | None = None,
        method: Literal["auto", "polling"] = "auto",
        max_watches: int | None = None,
    ) -> WatchStarted:
        """Report changes below ``root`` to ``on_changes`` until ``unwatch`` (or a new watch).

        ``on_changes`` runs on the event loop, in the reply reader: it must not block. It sees
        changes made after this call. inotify is used where it can be, else polling every
        ``poll_interval_ms`` (the result says which, and why in ``warning``); ``method``
        "polling" asks for polling, for file systems whose changes inotify does not see;
        ``max_watches`` caps the inotify watches (one per folder) this watch may use.
        """
        request: dict[str, Any] = {"root": root, "method": method}
        if poll_interval_ms is not None:
            request["poll_interval_ms"] = poll_interval_ms
        if max_watches is not None:
            request["max_watches"] = max_watches
        payload = _encode(request)
        call = self._open_call()
        # Registered before the request goes out: CHANGES may follow its OK at once.
        watch = self._watch = _Watch(call.request_id, on_changes)
        try:
            await self._send_call(call, MessageType.WATCH, payload)
            return self._decode(await call.future, WatchStarted)
        except BaseException:
            if self._watch is watch:
                self._watch = None
            raise

    async def unwatch(self) -> None:
        """Stop the watch; ``on_changes`` is not called again once this returns."""
        await self._call(MessageType.UNWATCH, {})
        self._watch = None

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
        payload = _encode(request)
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
        request = _encode(fields)
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


def _encode(request: dict[str, Any]) -> bytes:
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


async def _slices(data: bytes) -> AsyncGenerator[bytes | memoryview]:
    for piece in _slices_of(data):
        yield piece


INLINE_READ_LIMIT = 64 * 1024


def _local_write_error(error: OSError, destination: Path, path: str) -> AgentError:
    code = ErrorCode.EXISTS if isinstance(error, FileExistsError) else ErrorCode.IO
    return AgentError(code, f"cannot write {destination}: {error.strerror or error}", path)


def _slices_of(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    for at in range(0, len(view), CHUNK_SIZE):
        yield view[at : at + CHUNK_SIZE]


class LoadedFile(msgspec.Struct, frozen=True):
    """A local file as read for sending: what the target will hold."""

    path: str
    mode: int
    data: bytes
    mtime_ns: int
    inode: int


class SentFile(msgspec.Struct, frozen=True):
    """A file as the target now holds it."""

    path: str
    mode: int
    size: int
    mtime_ns: int


class WriteManyResult(msgspec.Struct, frozen=True):
    written: list[SentFile]
    failed: list[tuple[str, str, str]]  # path, error code, message
    vanished: list[str]


def _load_files(
    files: Sequence[tuple[str, Path]],
) -> tuple[list[LoadedFile], list[str], list[tuple[str, str, str]]]:
    loaded: list[LoadedFile] = []
    vanished: list[str] = []
    unreadable: list[tuple[str, str, str]] = []
    for path, source in files:
        try:
            with source.open("rb") as handle:
                found = os.fstat(handle.fileno())
                if not stat.S_ISREG(found.st_mode):
                    vanished.append(path)  # replaced by something else: its event follows
                    continue
                data = handle.read()
        except FileNotFoundError:
            vanished.append(path)
            continue
        except OSError as error:
            unreadable.append((path, ErrorCode.IO, f"cannot read: {error.strerror}"))
            continue
        mode = stat.S_IMODE(found.st_mode)
        loaded.append(LoadedFile(path, mode, data, found.st_mtime_ns, found.st_ino))
    return loaded, vanished, unreadable


def _open_source(source: Path) -> tuple[BinaryIO, os.stat_result, bytes]:
    """Open the local file, its metadata, and its first chunk (all of a small file)."""
    handle = source.open("rb")
    try:
        before = os.fstat(handle.fileno())
        first = handle.read(min(CHUNK_SIZE, before.st_size))
    except BaseException:
        handle.close()
        raise
    return handle, before, first


async def _read_chunks(
    handle: BinaryIO, first: bytes, size: int
) -> AsyncGenerator[bytes | memoryview]:
    """At most ``size`` bytes of the file in CHUNK_SIZE pieces; fewer if it shrank."""
    remaining = size
    chunk = first
    while chunk:
        remaining -= len(chunk)
        yield chunk
        if remaining <= 0:
            return
        chunk = await asyncio.to_thread(handle.read, min(CHUNK_SIZE, remaining))


def _stat_or_none(source: Path) -> os.stat_result | None:
    try:
        return source.stat()
    except FileNotFoundError:
        return None


def _version(found: os.stat_result) -> tuple[int, int, int]:
    return found.st_size, found.st_mtime_ns, found.st_ino
