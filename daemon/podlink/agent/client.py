"""The daemon's side of the agent: one exec stream into the target, many requests in flight.

``Agent.start(target)`` runs the target's Python with a one-line bootstrap that reads the
agent's source (``agent.py`` beside this file) from standard input and runs it, so the agent
is always exactly this version and nothing is left behind in the target. After a HELLO the
agent answers file requests; callers may issue them concurrently. ``Agent`` builds the
requests; its base ``channel.AgentChannel`` frames them onto the one stream and hands each
reply back to the call waiting for it. A saved file costs one round trip.

A READ's DATA frames and a WATCH's CHANGES frames arrive through the same reader, between
other replies (see ``two_way``).

When the stream ends, every pending and later call raises ``AgentGone``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.resources
import stat
from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec

from podlink.agent import wire
from podlink.agent.channel import (
    AgentChannel,
    AgentError,
    AgentGone,
    WatchRegistration,
    encode_request,
)
from podlink.agent.local_files import (
    CHUNK_SIZE,
    INLINE_READ_LIMIT,
    SentFile,
    WriteManyResult,
    changed_since_opened,
    load_files,
    open_source,
    slices,
    slices_of,
)
from podlink.agent.two_way import (
    NO_CHECK,
    Expected,
    Incoming,
    LocalFile,
    Precondition,
    RemoteChanges,
    add_precondition,
    encode_precondition,
    entry_from_row,
)
from podlink.agent.wire import ErrorCode, MessageType, ReadResult, WatchStarted
from podlink.sync.core.snapshot import Entry
from podlink.targets.base import ExecStream, Target, TargetUnavailable

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
HASH_BATCH = 1000
# Files up to this size are read on the event loop (see ``Agent.write_file``).


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


class Agent(AgentChannel):
    """A running agent. Create it with ``start`` or ``over``; ``close`` it when done."""

    hello: AgentHello

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
    def two_way(self) -> Agent:
        """The agent does everything two-way sync needs."""
        return self

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
        return await self._write(root, path, mode, len(data), slices(data), mtime_ns, expect)

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
                handle, before, first = open_source(source, CHUNK_SIZE)
            else:
                handle, before, first = await asyncio.to_thread(open_source, source, CHUNK_SIZE)
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
        if await changed_since_opened(source, before, inline=inline):
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
        loaded, vanished, unreadable = await asyncio.to_thread(load_files, sources)
        listing: list[list[Any]] = []
        for f in loaded:
            listed: list[Any] = [f.path, f.mode, len(f.data), f.mtime_ns]
            expect = expectations.get(f.path, NO_CHECK)
            if expect is not NO_CHECK:
                listed.append(encode_precondition(expect))
            listing.append(listed)
        request = encode_request({"root": root, "files": listing})
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
                    for piece in slices_of(loaded_file.data):
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
        payload = encode_request(request)
        call = self._open_call()
        # Registered before the request goes out: CHANGES may follow its OK at once.
        watch = self._watch = WatchRegistration(call.request_id, on_changes)
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


def _local_write_error(error: OSError, destination: Path, path: str) -> AgentError:
    code = ErrorCode.EXISTS if isinstance(error, FileExistsError) else ErrorCode.IO
    return AgentError(code, f"cannot write {destination}: {error.strerror or error}", path)


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
