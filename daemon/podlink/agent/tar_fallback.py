"""The file transport for targets without Python: tar, find and rm over ``sh``, upload only.

Each operation is a short ``sh`` exec instead of a message to a long-lived agent, so the
transport batches: the changes (files, folders, symlinks, modes) requested in one event-loop
turn travel as one tar stream into one ``tar -x`` exec, and the deletions of one turn become
one ``rm -rf`` exec. The sync engine applies a plan in phases, each phase with
``asyncio.gather``, so a phase costs one exec (the engine keeps at most 64 operations in
flight, so a large phase costs one exec per 64 operations).

What it cannot do, compared with the agent:

* No digests. ``scan`` reports none and ``hash`` answers None for every path, so the engine
  re-sends a file whose size matches but whose modification time differs instead of
  comparing contents. With GNU find the scan reads modification times to the nanosecond,
  and files are written with their source's time to the nanosecond, so files podlink wrote
  still match; elsewhere times are whole seconds and such files are sent again.
* Writes are not atomic: tar replaces a file in place, so a reader in the target can see
  it half-written for a moment.
* Confinement: every path is checked lexically exactly as the agent checks it, and before
  tar, rm or chmod run, the target is asked whether a folder on the way is a symlink (such
  paths are refused with ``escape``). A symlink swapped in between that check and the
  command that follows it is not caught, which the agent's descriptor-based walk does catch.
* Two-way sync, watching and renames are not offered.

A failed exec fails every operation of its batch with AgentError ``io`` carrying the tool's
messages, except where GNU tar names the failing members: then only those fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import stat
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

from podlink.agent.agent import Failure, check_link_target, split_relative_path
from podlink.agent.client import AgentError, AgentGone, ScanResult, SentFile, WriteManyResult
from podlink.agent.wire import ErrorCode
from podlink.sync.core.names import TEMP_PREFIX
from podlink.sync.core.snapshot import Entry, Kind
from podlink.targets.base import ExecStream, Target, TargetUnavailable

logger = logging.getLogger("podlink.agent.tar")

SHELL = "sh"
# Files up to this size are read before their tar header goes out (and, when the caller
# expects them to be this small, on the event loop, as the agent's client does).
INLINE_READ_LIMIT = 64 * 1024
CHUNK_SIZE = 1024 * 1024
# Bytes collected before they are written to the exec's input.
SEND_SIZE = 256 * 1024
# Paths travel as arguments; Linux allows about 2 MiB of them. Batches are split below this.
ARGUMENT_BUDGET = 512 * 1024
CLOSE_TIMEOUT = 5.0
TAR_BLOCK = tarfile.BLOCKSIZE
END_OF_ARCHIVE = bytes(2 * TAR_BLOCK)
NANOSECONDS = 1_000_000_000

SCAN_UNAVAILABLE = (
    "the target has neither GNU find nor find and stat: its files cannot be listed, so files "
    "deleted locally before this session started stay in the target"
)

# Which tools the target has. One line per tool found; always exits 0 when sh runs.
PROBE_SCRIPT = r"""
python=$1
if command -v "$python" >/dev/null 2>&1 \
    && "$python" -c 'import sys; sys.exit(sys.version_info < (3, 8))' >/dev/null 2>&1; then
    echo python
fi
if command -v tar >/dev/null 2>&1; then echo tar; fi
if [ "$(find / -maxdepth 0 -printf x 2>/dev/null)" = x ]; then echo find-printf; fi
if command -v find >/dev/null 2>&1 && stat -c %f / >/dev/null 2>&1; then echo find-stat; fi
if command -v readlink >/dev/null 2>&1; then echo readlink; fi
exit 0
"""

# Refuses (exit 3) when a folder on the way to a path is a symlink: the `L` records name
# them. Otherwise prints `R`, extracts the tar stream from standard input (when $1 is 1)
# and sets modes (pairs of mode and path), reporting `S` for a symlink and `F` for a failed
# chmod. Records end with NUL. Exits with tar's status.
APPLY_SCRIPT = r"""
root=$1 count=$2
shift 2
refused=
while [ "$count" -gt 0 ]; do
    if [ -L "$root/$1" ]; then printf 'L%s\0' "$1"; refused=1; fi
    shift
    count=$((count - 1))
done
if [ -n "$refused" ]; then exit 3; fi
printf 'R\0'
status=0
if [ "$1" = 1 ]; then
    tar -x -p --no-same-owner -C "$root" -f - || status=$?
fi
shift
while [ $# -gt 0 ]; do
    if [ -L "$root/$2" ]; then
        printf 'S%s\0' "$2"
    elif ! chmod "$1" "$root/$2"; then
        printf 'F%s\0' "$2"
    fi
    shift 2
done
exit "$status"
"""

# The same refusal, then `R`, one `y` or `n` per path (whether it existed), and the removal:
# `rm -rf` of all of them at once, or one by one without recursion.
DELETE_SCRIPT = r"""
root=$1 recursive=$2 count=$3
shift 3
refused=
while [ "$count" -gt 0 ]; do
    if [ -L "$root/$1" ]; then printf 'L%s\0' "$1"; refused=1; fi
    shift
    count=$((count - 1))
done
if [ -n "$refused" ]; then exit 3; fi
printf 'R\0'
for path do
    if [ -e "$root/$path" ] || [ -L "$root/$path" ]; then printf y; else printf n; fi
done
if [ "$recursive" = 1 ]; then
    for path do set -- "$@" "$root/$path"; shift; done
    exec rm -rf -- "$@"
fi
for path do
    full=$root/$path
    if [ -d "$full" ] && [ ! -L "$full" ]; then
        rmdir -- "$full" || exit
    elif [ -e "$full" ] || [ -L "$full" ]; then
        rm -f -- "$full" || exit
    fi
done
"""

ROOT_NOT_FOLDER = 4
ROOT_MISSING = 5
ROOT_UNREADABLE = 6
_ROOT_CHECK = r"""
root=$1
if [ ! -d "$root" ]; then
    if [ -e "$root" ] || [ -L "$root" ]; then exit 4; fi
    exit 5
fi
cd "$root" || exit 6
"""

# Seven NUL-terminated fields per entry: type, mode, size, mtime, inode, path, link target.
SCAN_WITH_PRINTF = (
    _ROOT_CHECK
    + r"""exec find . -mindepth 1 -name "$2*" -prune -o -printf '%y\0%m\0%s\0%T@\0%i\0%P\0%l\0'
"""
)
PRINTF_FIELDS = 7

# Without GNU find: one `stat` line per entry (hex mode, size, mtime, inode, name), a NUL,
# then symlinks and their targets as NUL-terminated pairs when readlink exists.
SCAN_WITH_STAT = (
    _ROOT_CHECK
    + r"""find . -exec stat -c '%f %s %Y %i %n' {} +
status=$?
printf '\0'
if [ "$2" = 1 ]; then
    find . -type l -exec sh -c \
        'for link do printf "%s\0%s\0" "$link" "$(readlink "$link")"; done' podlink-links {} +
fi
exit "$status"
"""
)

ENSURE_ROOT_SCRIPT = r"""
if [ -d "$1" ]; then echo existed; exit 0; fi
if [ -e "$1" ] || [ -L "$1" ]; then exit 4; fi
mkdir -p -- "$1" && echo created
"""

_FIND_PROBLEM = re.compile(r"^find: [‘'`](.*)[’']: (.*)$")
_KINDS_BY_LETTER = {"f": Kind.FILE, "d": Kind.DIRECTORY, "l": Kind.SYMLINK}

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class TargetTools:
    """What a target offers to move files with (see ``probe_tools``)."""

    python: bool = False
    tar: bool = False
    find_printf: bool = False
    find_stat: bool = False
    readlink: bool = False


async def probe_tools(target: Target) -> TargetTools:
    """Ask the target's ``sh`` which tools it has; TargetUnavailable when sh cannot run."""
    stream = await target.exec([SHELL, "-c", PROBE_SCRIPT, "podlink-probe", target.python])
    output, errors, code = await _finish(stream)
    if code != 0:
        raise TargetUnavailable(f"sh could not run in the target (exit code {code}): {errors}")
    found = set(output.decode("utf-8", "replace").split())
    return TargetTools(
        python="python" in found,
        tar="tar" in found,
        find_printf="find-printf" in found,
        find_stat="find-stat" in found,
        readlink="readlink" in found,
    )


# --- Requests waiting for their batch ---------------------------------------------------------


class _Request(Generic[ResultT]):
    """One caller's operation, settled when the exec that carries it has ended."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()

    def succeed(self, result: ResultT) -> None:
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class _Write(_Request[str]):
    def __init__(
        self, path: str, source: Path, mode: int | None, expected_size: int | None
    ) -> None:
        super().__init__(path)
        self.source = source
        self.mode = mode
        self.expected_size = expected_size
        self.digest = ""
        self.error: BaseException | None = None  # found while reading the local file


class _Mkdir(_Request[None]):
    def __init__(self, path: str, mode: int) -> None:
        super().__init__(path)
        self.mode = mode


class _Symlink(_Request[None]):
    def __init__(self, path: str, link_target: str) -> None:
        super().__init__(path)
        self.link_target = link_target


class _Chmod(_Request[None]):
    def __init__(self, path: str, mode: int) -> None:
        super().__init__(path)
        self.mode = mode


class _Delete(_Request[bool]):
    pass


_Member = _Write | _Mkdir | _Symlink  # what travels as a tar member
_Change = _Member | _Chmod
_RequestT = TypeVar("_RequestT", bound=_Request[Any])


# --- The transport ----------------------------------------------------------------------------


class TarTransport:
    """A ``FileTransport`` made of short ``sh`` execs. Create it with ``start``."""

    def __init__(self, target: Target, tools: TargetTools) -> None:
        self._target = target
        self._tools = tools
        self._closed = False
        self._gone: AgentGone | None = None
        self._pending_changes: dict[str, list[_Change]] = {}
        self._pending_deletes: dict[tuple[str, bool], list[_Delete]] = {}
        # Batches run one at a time, in the order they were made: a later phase of a plan
        # must not overtake an earlier one.
        self._exec_lock = asyncio.Lock()
        self._batches: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, target: Target, tools: TargetTools | None = None) -> TarTransport:
        """A transport for ``target``; TargetUnavailable when it has no tar (or no sh)."""
        if tools is None:
            tools = await probe_tools(target)
        if not tools.tar:
            raise TargetUnavailable("the target has no tar: podlink cannot sync into it over sh")
        return cls(target, tools)

    @property
    def tools(self) -> TargetTools:
        return self._tools

    @property
    def alive(self) -> bool:
        return self._gone is None and not self._closed

    @property
    def two_way(self) -> None:
        """tar over ``sh`` checks no preconditions, reads nothing back and cannot watch."""
        return None

    async def close(self) -> None:
        """Let the batches already requested finish; each exec ends by itself."""
        self._closed = True
        await asyncio.sleep(0)  # batches requested in this turn are launched now
        running = set(self._batches)
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=CLOSE_TIMEOUT)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    # --- Requests -----------------------------------------------------------------------------

    async def ensure_root(self, root: str, *, owner: str | None = None) -> bool:
        if owner is not None:
            message = (
                f"cannot give files to {owner!r}: setting an owner needs Python 3.8+ in the "
                "target (it syncs with tar over sh)"
            )
            raise AgentError(ErrorCode.BAD_REQUEST, message)
        _check_root(root)
        stream = await self._exec([SHELL, "-c", ENSURE_ROOT_SCRIPT, "podlink-root", root])
        output, errors, code = await _finish(stream)
        if code == ROOT_NOT_FOLDER:
            raise AgentError(ErrorCode.NOT_DIRECTORY, f"the sync root {root} is not a folder")
        if code != 0:
            raise AgentError(ErrorCode.IO, errors or f"mkdir -p {root} failed (exit code {code})")
        return output.strip() == b"created"

    async def scan(self, root: str, *, hash: bool = False) -> ScanResult:
        """Everything below ``root``, not following symlinks; never with digests."""
        _check_root(root)
        if self._tools.find_printf:
            script, extra = SCAN_WITH_PRINTF, [TEMP_PREFIX]
        elif self._tools.find_stat:
            script, extra = SCAN_WITH_STAT, ["1" if self._tools.readlink else "0"]
        else:
            return ScanResult(entries={}, problems=[(".", SCAN_UNAVAILABLE)], missing=False)
        stream = await self._exec([SHELL, "-c", script, "podlink-scan", root, *extra])
        output, errors, code = await _finish(stream)
        if code == ROOT_MISSING:
            return ScanResult(entries={}, problems=[], missing=True)
        if code == ROOT_NOT_FOLDER:
            raise AgentError(ErrorCode.NOT_DIRECTORY, f"the sync root {root} is not a folder")
        if code == ROOT_UNREADABLE:
            raise AgentError(ErrorCode.PERMISSION_DENIED, f"cannot enter the sync root {root}")
        # find exits 1 when it could not read some folders; it listed the rest.
        if code not in (0, 1):
            raise AgentError(ErrorCode.IO, errors or f"listing {root} failed (exit code {code})")
        if self._tools.find_printf:
            entries, problems = _parse_printf_listing(output)
        else:
            entries, problems = _parse_stat_listing(output)
        problems.extend(_find_problems(errors))
        if code == 1 and not problems:
            problems.append((".", f"the listing is incomplete: {errors or 'find failed'}"))
        return ScanResult(entries=entries, problems=problems, missing=False)

    async def hash(self, root: str, paths: Sequence[str]) -> dict[str, str | None]:
        """Unknown for every path: there is no hashing tool to rely on in the target."""
        _check_root(root)
        return dict.fromkeys(paths)

    async def write_file(
        self,
        root: str,
        path: str,
        source: Path,
        mode: int | None = None,
        *,
        expected_size: int | None = None,
    ) -> str:
        """Send the local file ``source`` to ``path``; the sha256 of what was sent.

        ``mode`` defaults to the source's permission bits, the modification time is the
        source's. AgentError ``changed`` when the source changed while it was sent or
        vanished before; OSError when it cannot be read.
        """
        _check_path(root, path)
        request = _Write(path, source, mode, expected_size)
        self._add_change(root, request)
        return await request.future

    async def write_many(self, root: str, files: Sequence[tuple[str, Path]]) -> WriteManyResult:
        """The files as separate writes: made in one turn, they still go as one tar stream."""

        async def send(path: str, source: Path) -> SentFile | tuple[str, str, str] | None:
            try:
                found = source.stat()
                await self.write_file(root, path, source, stat.S_IMODE(found.st_mode))
            except FileNotFoundError:
                return None
            except AgentError as error:
                if error.code == ErrorCode.CHANGED:
                    return None
                return (path, error.code, error.message)
            except OSError as error:
                return (path, ErrorCode.IO, f"cannot read: {error.strerror}")
            return SentFile(path, stat.S_IMODE(found.st_mode), found.st_size, found.st_mtime_ns)

        outcomes = await asyncio.gather(*(send(path, source) for path, source in files))
        return WriteManyResult(
            written=[o for o in outcomes if isinstance(o, SentFile)],
            failed=[o for o in outcomes if isinstance(o, tuple)],
            vanished=[path for (path, _), o in zip(files, outcomes, strict=True) if o is None],
        )

    async def mkdir(self, root: str, path: str, mode: int = 0o755) -> None:
        _check_path(root, path)
        _check_mode(mode, path)
        request = _Mkdir(path, mode)
        self._add_change(root, request)
        await request.future

    async def symlink(self, root: str, path: str, target: str) -> None:
        """Make or replace the symlink ``path``; ``target`` must be relative and stay inside."""
        parts = _check_path(root, path)
        try:
            check_link_target(parts, target, path)
        except Failure as failure:
            raise _agent_error(failure, path) from None
        request = _Symlink(path, target)
        self._add_change(root, request)
        await request.future

    async def chmod(self, root: str, path: str, mode: int) -> None:
        """Set the permission bits of ``path``; AgentError ``isSymlink`` for a link."""
        _check_path(root, path)
        _check_mode(mode, path)
        request = _Chmod(path, mode)
        self._add_change(root, request)
        await request.future

    async def delete(self, root: str, path: str, *, recursive: bool = False) -> bool:
        """Remove ``path`` (a symlink as a link); whether something was there."""
        _check_path(root, path)
        self._raise_if_unusable()
        request = _Delete(path)
        key = (root, recursive)
        pending = self._pending_deletes.get(key)
        if pending is None:
            pending = self._pending_deletes[key] = []
            asyncio.get_running_loop().call_soon(self._launch_deletes, key)
        pending.append(request)
        return await request.future

    # --- Batching -----------------------------------------------------------------------------

    def _add_change(self, root: str, request: _Change) -> None:
        self._raise_if_unusable()
        pending = self._pending_changes.get(root)
        if pending is None:
            pending = self._pending_changes[root] = []
            # Runs once every task that is ready in this turn has added its request.
            asyncio.get_running_loop().call_soon(self._launch_changes, root)
        pending.append(request)

    def _launch_changes(self, root: str) -> None:
        changes = self._pending_changes.pop(root)
        self._launch(self._run_changes(root, changes), changes)

    def _launch_deletes(self, key: tuple[str, bool]) -> None:
        deletes = self._pending_deletes.pop(key)
        self._launch(self._run_deletes(key[0], key[1], deletes), deletes)

    def _launch(self, work: Coroutine[Any, Any, None], requests: Sequence[_Request[Any]]) -> None:
        task = asyncio.get_running_loop().create_task(self._settle_all(work, requests))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    @staticmethod
    async def _settle_all(
        work: Coroutine[Any, Any, None], requests: Sequence[_Request[Any]]
    ) -> None:
        """Run a batch; whatever happens, no caller is left waiting."""
        try:
            await work
        except AgentGone as error:
            for request in requests:
                request.fail(AgentGone(error.message))
        except asyncio.CancelledError:
            for request in requests:
                request.fail(AgentGone("the transport was closed"))
            raise
        except Exception as error:  # a bug here must fail the calls, not leave them hanging
            logger.exception("a tar batch failed")
            for request in requests:
                message = f"internal error: {type(error).__name__}: {error}"
                request.fail(AgentError(ErrorCode.INTERNAL, message, request.path))

    async def _run_changes(self, root: str, changes: list[_Change]) -> None:
        async with self._exec_lock:
            for part in _split_by_arguments(changes, _change_argument_size):
                remaining = list(part)
                # Requests behind a symlinked folder are refused; the rest go again.
                while remaining:
                    refused = await self._apply_changes(root, remaining)
                    remaining = _refuse_behind(remaining, refused)

    async def _run_deletes(self, root: str, recursive: bool, deletes: list[_Delete]) -> None:
        async with self._exec_lock:
            for part in _split_by_arguments(deletes, _delete_argument_size):
                remaining = list(part)
                while remaining:
                    refused = await self._delete_paths(root, recursive, remaining)
                    remaining = _refuse_behind(remaining, refused)

    # --- Execs --------------------------------------------------------------------------------

    async def _apply_changes(self, root: str, changes: list[_Change]) -> list[str]:
        """One exec of APPLY_SCRIPT; the folders it refused (then nothing was changed)."""
        members = [change for change in changes if not isinstance(change, _Chmod)]
        modes = [change for change in changes if isinstance(change, _Chmod)]
        folders = _folders_on_the_way(change.path for change in changes)
        argv = [SHELL, "-c", APPLY_SCRIPT, "podlink-apply", root, str(len(folders)), *folders]
        argv.append("1" if members else "0")
        for change in modes:
            argv += (f"0{change.mode:04o}", change.path)
        stream = await self._exec(argv, stdin=bool(members))
        async with _running(stream) as errors:
            ready, refused = await _read_until_ready(stream)
            if refused:
                await stream.wait()
                return refused
            sent_all = ready
            if ready and members:
                sent_all = await _send_archive(stream, members)
            notes = _records(await stream.stdout.read()) if ready else []
            code = await stream.wait()
        _settle_changes(changes, code, sent_all, errors.text(), notes)
        return []

    async def _delete_paths(self, root: str, recursive: bool, deletes: list[_Delete]) -> list[str]:
        """One exec of DELETE_SCRIPT; the folders it refused (then nothing was removed)."""
        folders = _folders_on_the_way(request.path for request in deletes)
        argv = [SHELL, "-c", DELETE_SCRIPT, "podlink-delete", root, "1" if recursive else "0"]
        argv += (str(len(folders)), *folders, *(request.path for request in deletes))
        stream = await self._exec(argv)
        async with _running(stream) as errors:
            ready, refused = await _read_until_ready(stream)
            if refused:
                await stream.wait()
                return refused
            existed = (await stream.stdout.read()).decode("ascii", "replace")
            code = await stream.wait()
        if code != 0 or not ready or len(existed) != len(deletes):
            message = errors.text() or f"rm failed (exit code {code})"
            for request in deletes:
                request.fail(AgentError(ErrorCode.IO, message, request.path))
            return []
        for request, flag in zip(deletes, existed, strict=True):
            request.succeed(flag == "y")
        return []

    async def _exec(self, argv: list[str], *, stdin: bool = False) -> ExecStream:
        self._raise_if_unusable()
        try:
            return await self._target.exec(argv, stdin=stdin)
        except TargetUnavailable as error:
            # The target is gone or broken: like a dead agent, this transport is done.
            self._gone = AgentGone(f"cannot run sh in the target: {error}")
            raise AgentGone(self._gone.message) from error

    def _raise_if_unusable(self) -> None:
        if self._gone is not None:
            raise AgentGone(self._gone.message)
        if self._closed:
            raise AgentGone("the transport was closed")


# --- Checks -----------------------------------------------------------------------------------


def _check_root(root: str) -> None:
    if not root.startswith("/") or "\x00" in root:
        message = f"the sync root must be an absolute path, got {root!r}"
        raise AgentError(ErrorCode.BAD_REQUEST, message)


def _check_path(root: str, path: str) -> list[str]:
    """The path's components, refused exactly as the agent refuses them."""
    _check_root(root)
    try:
        return split_relative_path(path)
    except Failure as failure:
        raise _agent_error(failure, path) from None


def _check_mode(mode: int, path: str) -> None:
    if not 0 <= mode <= 0o7777:
        message = f"mode {mode:o} is not a set of permission bits"
        raise AgentError(ErrorCode.BAD_REQUEST, message, path)


def _agent_error(failure: Failure, path: str) -> AgentError:
    return AgentError(failure.code, failure.message, failure.path or path)


def _folders_on_the_way(paths: Iterable[str]) -> list[str]:
    """Every folder above the given paths, each once: none of them may be a symlink."""
    folders: set[str] = set()
    for path in paths:
        parts = path.split("/")
        folders.update("/".join(parts[:end]) for end in range(1, len(parts)))
    return sorted(folders)


def _refuse_behind(requests: list[_RequestT], refused: list[str]) -> list[_RequestT]:
    """Fail the requests below a refused folder; the others, to be sent again."""
    if not refused:
        return []
    remaining = []
    for request in requests:
        folder = next((f for f in refused if request.path.startswith(f + "/")), None)
        if folder is None:
            remaining.append(request)
        else:
            message = f"refused: the path goes through a symlink at {folder}"
            request.fail(AgentError(ErrorCode.ESCAPE, message, request.path))
    if len(remaining) == len(requests):
        # A refusal that matches no request cannot shrink the batch: never send it again.
        message = f"refused: the path goes through a symlink at {refused[0]}"
        for request in requests:
            request.fail(AgentError(ErrorCode.ESCAPE, message, request.path))
        return []
    return remaining


def _split_by_arguments(
    requests: list[_RequestT], size_of: Callable[[_RequestT], int]
) -> Iterator[list[_RequestT]]:
    """Consecutive parts whose arguments fit in one exec's command line."""
    part: list[_RequestT] = []
    used = 0
    for request in requests:
        size = size_of(request)
        if part and used + size > ARGUMENT_BUDGET:
            yield part
            part, used = [], 0
        part.append(request)
        used += size
    if part:
        yield part


def _change_argument_size(request: _Change) -> int:
    # Folders on the way, counted for every request (an overestimate), plus a chmod pair.
    length = len(request.path.encode())
    return length * request.path.count("/") + (length + 8 if isinstance(request, _Chmod) else 0)


def _delete_argument_size(request: _Delete) -> int:
    length = len(request.path.encode())
    return length * (request.path.count("/") + 1)


# --- Running one exec -------------------------------------------------------------------------


class _Collected:
    """Standard error of an exec, read while it runs (so it can never block the command)."""

    def __init__(self, stream: ExecStream) -> None:
        self._task = asyncio.ensure_future(_read_all(stream.stderr))
        self._data = b""

    async def finish(self) -> None:
        self._data = await self._task

    def cancel(self) -> None:
        self._task.cancel()

    def text(self) -> str:
        return self._data.decode("utf-8", "replace").strip()


@contextlib.asynccontextmanager
async def _running(stream: ExecStream) -> AsyncIterator[_Collected]:
    """Collect standard error; stop the exec if the block ends before the exec does."""
    errors = _Collected(stream)
    finished = False
    try:
        yield errors
        finished = True
    finally:
        if not finished:
            errors.cancel()
            with contextlib.suppress(Exception):
                await stream.terminate(grace_seconds=1.0)
        else:
            with contextlib.suppress(Exception):
                await stream.close_stdin()
            await errors.finish()


async def _finish(stream: ExecStream) -> tuple[bytes, str, int]:
    """Run an exec to its end: its output, its standard error as text, its exit code."""
    async with _running(stream) as errors:
        output = await stream.stdout.read()
        code = await stream.wait()
    return output, errors.text(), code


async def _read_all(reader: asyncio.StreamReader | None) -> bytes:
    if reader is None:
        return b""
    try:
        return await reader.read()
    except (ConnectionError, OSError):
        return b""


async def _read_until_ready(stream: ExecStream) -> tuple[bool, list[str]]:
    """Whether the script said `R`, and the folders it refused (`L` records) instead."""
    refused: list[str] = []
    while True:
        try:
            record = await stream.stdout.readuntil(b"\0")
        except asyncio.IncompleteReadError:
            return False, refused
        text = record[:-1].decode("utf-8", "surrogateescape")
        if text == "R":
            return True, refused
        if text.startswith("L"):
            refused.append(text[1:])


def _records(output: bytes) -> list[str]:
    return [item.decode("utf-8", "surrogateescape") for item in output.split(b"\0") if item]


def _settle_changes(
    changes: list[_Change], code: int, sent_all: bool, errors: str, notes: list[str]
) -> None:
    blamed: dict[str, str] = {}
    if code != 0 or not sent_all:
        names = {change.path for change in changes if not isinstance(change, _Chmod)}
        found = _blame_members(errors, names) if sent_all else None
        if found is None:
            message = errors or f"tar failed (exit code {code})"
            if not sent_all and code == 0:
                message = "the tar stream was cut short"
            for change in changes:
                change.fail(AgentError(ErrorCode.IO, message, change.path))
            return
        blamed = found
    symlinks = {note[1:] for note in notes if note.startswith("S")}
    failed_modes = {note[1:] for note in notes if note.startswith("F")}
    for change in changes:
        if isinstance(change, _Chmod):
            if change.path in symlinks:
                message = "a symlink has no permissions of its own"
                change.fail(AgentError(ErrorCode.IS_SYMLINK, message, change.path))
            elif change.path in failed_modes:
                message = f"cannot set the permission bits: {errors or 'chmod failed'}"
                change.fail(AgentError(ErrorCode.IO, message, change.path))
            else:
                change.succeed(None)
        elif change.path in blamed:
            change.fail(AgentError(ErrorCode.IO, blamed[change.path], change.path))
        elif isinstance(change, _Write):
            if change.error is not None:
                change.fail(change.error)
            else:
                change.succeed(change.digest)
        else:
            change.succeed(None)


def _blame_members(errors: str, names: set[str]) -> dict[str, str] | None:
    """GNU tar's complaints by member name; None unless every complaint names a member.

    GNU tar goes on after a member fails, so when each message names one of ours, the
    others were extracted. Anything else (a message about a folder tar made on the way, a
    quoted name) leaves the whole batch failed.
    """
    blamed: dict[str, str] = {}
    longest_first = sorted(names, key=len, reverse=True)
    for line in errors.splitlines():
        if not line.strip() or line == "tar: Exiting with failure status due to previous errors":
            continue
        if not line.startswith("tar: "):
            return None
        said = line.removeprefix("tar: ")
        name = next((n for n in longest_first if said.startswith(n + ": ")), None)
        if name is None:
            return None
        blamed.setdefault(name, said[len(name) + 2 :])
    return blamed or None


# --- The tar stream ---------------------------------------------------------------------------


class _Sender:
    """Collects bytes for the exec's input and writes them in large pieces."""

    def __init__(self, stream: ExecStream) -> None:
        assert stream.stdin is not None
        self._stdin = stream.stdin
        self._pending: list[bytes] = []
        self._size = 0

    async def add(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= SEND_SIZE:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            self._stdin.write(b"".join(self._pending))
            self._pending, self._size = [], 0
        await self._stdin.drain()


async def _send_archive(stream: ExecStream, members: Sequence[_Member]) -> bool:
    """Stream the members as one tar archive and end the input; False if tar stopped reading."""
    sender = _Sender(stream)
    now_ns = time.time_ns()
    try:
        for member in members:
            if isinstance(member, _Write):
                await _send_file(sender, member)
            elif isinstance(member, _Mkdir):
                await sender.add(_header(member.path, tarfile.DIRTYPE, member.mode, now_ns))
            elif isinstance(member, _Symlink):
                header = _header(member.path, tarfile.SYMTYPE, 0o777, now_ns, member.link_target)
                await sender.add(header)
        await sender.add(END_OF_ARCHIVE)
        await sender.flush()
        await stream.close_stdin()
    except (ConnectionError, BrokenPipeError) as error:
        logger.debug("tar stopped reading its input: %s", error)
        return False
    return True


async def _send_file(sender: _Sender, member: _Write) -> None:
    """Add one file to the archive. Problems with the local file are kept on ``member``."""
    inline = member.expected_size is not None and member.expected_size <= INLINE_READ_LIMIT
    try:
        handle, before = (
            _open(member.source) if inline else await asyncio.to_thread(_open, member.source)
        )
    except FileNotFoundError:
        message = f"{member.source} vanished before it could be sent"
        member.error = AgentError(ErrorCode.CHANGED, message, member.path)
        return
    except OSError as error:
        member.error = error
        return
    try:
        await _send_content(sender, member, handle, before, inline)
    finally:
        handle.close()
    after = (
        _stat_or_none(member.source)
        if inline
        else await asyncio.to_thread(_stat_or_none, member.source)
    )
    if member.error is None and (after is None or _version(after) != _version(before)):
        message = f"{member.source} changed while it was being sent"
        member.error = AgentError(ErrorCode.CHANGED, message, member.path)


async def _send_content(
    sender: _Sender, member: _Write, handle: BinaryIO, before: os.stat_result, inline: bool
) -> None:
    size = before.st_size
    mode = stat.S_IMODE(before.st_mode) if member.mode is None else member.mode
    header = _header(member.path, tarfile.REGTYPE, mode, before.st_mtime_ns, size=size)
    digest = hashlib.sha256()
    # A file that grew past the limit since it was scanned is read in a worker thread after all.
    inline = inline and size <= INLINE_READ_LIMIT

    async def read(count: int) -> bytes:
        return handle.read(count) if inline else await asyncio.to_thread(handle.read, count)

    sent = 0
    if size <= INLINE_READ_LIMIT:
        # Read before the header goes out: a read error then leaves nothing half-sent.
        try:
            data = await read(size)
        except OSError as error:
            member.error = error
            return
        await sender.add(header)
        if data:
            digest.update(data)
            await sender.add(data)
            sent = len(data)
    else:
        await sender.add(header)
        while sent < size:
            try:
                chunk = await read(min(CHUNK_SIZE, size - sent))
            except OSError as error:
                member.error = error
                break
            if not chunk:
                break
            digest.update(chunk)
            await sender.add(chunk)
            sent += len(chunk)
    if sent < size:
        # The header promised `size` bytes: keep the archive whole, and say what happened.
        if member.error is None:
            message = f"{member.source} shrank while it was being sent"
            member.error = AgentError(ErrorCode.CHANGED, message, member.path)
        for offset in range(sent, size, CHUNK_SIZE):
            await sender.add(bytes(min(CHUNK_SIZE, size - offset)))
    await sender.add(bytes(-size % TAR_BLOCK))
    member.digest = digest.hexdigest()


def _header(
    path: str, kind: bytes, mode: int, mtime_ns: int, link_target: str = "", *, size: int = 0
) -> bytes:
    """A tar header (pax, UTF-8 names) for a member with a checked name and nanosecond time."""
    split_relative_path(path)  # no member is ever made from an unchecked name
    info = tarfile.TarInfo(path)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = link_target
    seconds, fraction = divmod(mtime_ns, NANOSECONDS)
    info.mtime = seconds
    if fraction and seconds >= 0:
        # GNU tar restores a pax mtime to the nanosecond; plain tar headers hold seconds.
        info.pax_headers = {"mtime": f"{seconds}.{fraction:09d}"}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _open(source: Path) -> tuple[BinaryIO, os.stat_result]:
    handle = source.open("rb")
    try:
        return handle, os.fstat(handle.fileno())
    except BaseException:
        handle.close()
        raise


def _stat_or_none(source: Path) -> os.stat_result | None:
    try:
        return source.stat()
    except FileNotFoundError:
        return None


def _version(found: os.stat_result) -> tuple[int, int, int]:
    return found.st_size, found.st_mtime_ns, found.st_ino


# --- Reading listings -------------------------------------------------------------------------

_Problems = list[tuple[str, str]]


def _parse_printf_listing(output: bytes) -> tuple[dict[str, Entry], _Problems]:
    entries: dict[str, Entry] = {}
    problems: _Problems = []
    fields = output.split(b"\0")
    for at in range(0, len(fields) - PRINTF_FIELDS + 1, PRINTF_FIELDS):
        letter, mode, size, mtime, inode, raw_path, raw_target = fields[at : at + PRINTF_FIELDS]
        path = _decoded_path(raw_path, problems)
        if path is None:
            continue
        link_target = None
        if letter == b"l":
            link_target = _decoded_link(raw_target, path, problems)
            if link_target is None:
                continue
        entry = _entry(letter.decode("ascii", "replace"), int(mode, 8), int(size), inode, mtime)
        if entry is None:
            problems.append((path, "skipped: not a regular file, folder or symlink"))
            continue
        entries[path] = _with_link(entry, link_target)
    return entries, problems


def _parse_stat_listing(output: bytes) -> tuple[dict[str, Entry], _Problems]:
    listing, _, links_part = output.partition(b"\0")
    links: dict[bytes, bytes] = {}
    link_fields = links_part.split(b"\0")
    for at in range(0, len(link_fields) - 1, 2):
        links[link_fields[at]] = link_fields[at + 1]
    entries: dict[str, Entry] = {}
    problems: _Problems = []
    for line in listing.split(b"\n"):
        if not line:
            continue
        fields = line.split(b" ", 4)
        if len(fields) == 5 and fields[4] == b".":
            continue  # the root itself
        if len(fields) != 5 or not fields[4].startswith(b"./"):
            # A name with a line break spans lines: its parts cannot be told apart.
            shown = line.decode("utf-8", "replace")
            problems.append((".", f"skipped an unreadable listing line: {shown!r}"))
            continue
        raw_mode, size, mtime, inode, raw_name = fields
        path = _decoded_path(raw_name[2:], problems)
        if path is None or any(part.startswith(TEMP_PREFIX) for part in path.split("/")):
            continue
        mode = int(raw_mode, 16)
        letter = "d" if stat.S_ISDIR(mode) else "l" if stat.S_ISLNK(mode) else "f"
        if not (stat.S_ISDIR(mode) or stat.S_ISLNK(mode) or stat.S_ISREG(mode)):
            problems.append((path, "skipped: not a regular file, folder or symlink"))
            continue
        link_target = None
        if letter == "l":
            raw_target = links.get(raw_name)
            link_target = None if raw_target is None else _decoded_link(raw_target, path, problems)
        entry = _entry(letter, stat.S_IMODE(mode), int(size), inode, mtime)
        assert entry is not None
        entries[path] = _with_link(entry, link_target)
    return entries, problems


def _entry(letter: str, mode: int, size: int, inode: bytes, mtime: bytes) -> Entry | None:
    kind = _KINDS_BY_LETTER.get(letter)
    if kind is None:
        return None
    return Entry(
        kind=kind,
        mode=mode,
        size=0 if kind is Kind.DIRECTORY else size,
        mtime_ns=_nanoseconds(mtime),
        inode=int(inode) if inode.isdigit() else 0,
    )


def _with_link(entry: Entry, link_target: str | None) -> Entry:
    if link_target is None:
        return entry
    return Entry(
        kind=entry.kind,
        mode=entry.mode,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        inode=entry.inode,
        link_target=link_target,
    )


def _nanoseconds(text: bytes) -> int:
    """`1700000000.1234567890` (GNU find) or `1700000000` (stat) as nanoseconds."""
    try:
        return int(Decimal(text.decode("ascii")) * NANOSECONDS)
    except (InvalidOperation, UnicodeDecodeError):
        return 0


def _decoded_path(raw: bytes, problems: _Problems) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append((raw.decode("utf-8", "replace"), "skipped: the name is not valid UTF-8"))
        return None


def _decoded_link(raw: bytes, path: str, problems: _Problems) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append((path, "skipped: the symlink target is not valid UTF-8"))
        return None


def _find_problems(errors: str) -> _Problems:
    """find's complaints (``find: './x': Permission denied``) as problems at their paths."""
    problems: _Problems = []
    for line in errors.splitlines():
        if not line.strip():
            continue
        matched = _FIND_PROBLEM.match(line)
        if matched is None:
            problems.append((".", line))
            continue
        path = matched.group(1).removeprefix("./").removeprefix(".") or "."
        problems.append((path, f"cannot list: {matched.group(2)}"))
    return problems
