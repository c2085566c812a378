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

``tar_scripts`` holds the ``sh`` scripts and the reading of their output, ``tar_stream`` the
requests waiting for their batch and the tar archive that carries them.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podlink.agent.agent import Failure, check_link_target, split_relative_path
from podlink.agent.client import AgentError, AgentGone, ScanResult, SentFile, WriteManyResult
from podlink.agent.tar_scripts import (
    APPLY_SCRIPT,
    DELETE_SCRIPT,
    ENSURE_ROOT_SCRIPT,
    PROBE_SCRIPT,
    ROOT_MISSING,
    ROOT_NOT_FOLDER,
    ROOT_UNREADABLE,
    SCAN_UNAVAILABLE,
    SCAN_WITH_PRINTF,
    SCAN_WITH_STAT,
    find_problems,
    finish,
    parse_printf_listing,
    parse_stat_listing,
    read_until_ready,
    records,
    running,
)
from podlink.agent.tar_stream import (
    Change,
    ChmodRequest,
    DeleteRequest,
    MkdirRequest,
    Request,
    RequestT,
    SymlinkRequest,
    WriteRequest,
    send_archive,
    settle_changes,
)
from podlink.agent.wire import ErrorCode
from podlink.sync.core.names import TEMP_PREFIX
from podlink.sync.core.plan import folders_above
from podlink.targets.base import ExecStream, Target, TargetUnavailable

logger = logging.getLogger("podlink.agent.tar")

SHELL = "sh"
# Paths travel as arguments; Linux allows about 2 MiB of them. Batches are split below this.
ARGUMENT_BUDGET = 512 * 1024
CLOSE_TIMEOUT = 5.0


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
    output, errors, code = await finish(stream)
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


# --- The transport ----------------------------------------------------------------------------


class TarTransport:
    """A ``FileTransport`` made of short ``sh`` execs. Create it with ``start``."""

    def __init__(self, target: Target, tools: TargetTools) -> None:
        self._target = target
        self._tools = tools
        self._closed = False
        self._gone: AgentGone | None = None
        self._pending_changes: dict[str, list[Change]] = {}
        self._pending_deletes: dict[tuple[str, bool], list[DeleteRequest]] = {}
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
        output, errors, code = await finish(stream)
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
        output, errors, code = await finish(stream)
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
            entries, problems = parse_printf_listing(output)
        else:
            entries, problems = parse_stat_listing(output)
        problems.extend(find_problems(errors))
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
        request = WriteRequest(path, source, mode, expected_size)
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
        request = MkdirRequest(path, mode)
        self._add_change(root, request)
        await request.future

    async def symlink(self, root: str, path: str, target: str) -> None:
        """Make or replace the symlink ``path``; ``target`` must be relative and stay inside."""
        parts = _check_path(root, path)
        try:
            check_link_target(parts, target, path)
        except Failure as failure:
            raise _agent_error(failure, path) from None
        request = SymlinkRequest(path, target)
        self._add_change(root, request)
        await request.future

    async def chmod(self, root: str, path: str, mode: int) -> None:
        """Set the permission bits of ``path``; AgentError ``isSymlink`` for a link."""
        _check_path(root, path)
        _check_mode(mode, path)
        request = ChmodRequest(path, mode)
        self._add_change(root, request)
        await request.future

    async def delete(self, root: str, path: str, *, recursive: bool = False) -> bool:
        """Remove ``path`` (a symlink as a link); whether something was there."""
        _check_path(root, path)
        self._raise_if_unusable()
        request = DeleteRequest(path)
        key = (root, recursive)
        pending = self._pending_deletes.get(key)
        if pending is None:
            pending = self._pending_deletes[key] = []
            asyncio.get_running_loop().call_soon(self._launch_deletes, key)
        pending.append(request)
        return await request.future

    # --- Batching -----------------------------------------------------------------------------

    def _add_change(self, root: str, request: Change) -> None:
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

    def _launch(self, work: Coroutine[Any, Any, None], requests: Sequence[Request[Any]]) -> None:
        task = asyncio.get_running_loop().create_task(self._settle_all(work, requests))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    @staticmethod
    async def _settle_all(
        work: Coroutine[Any, Any, None], requests: Sequence[Request[Any]]
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

    async def _run_changes(self, root: str, changes: list[Change]) -> None:
        async with self._exec_lock:
            for part in _split_by_arguments(changes, _change_argument_size):
                remaining = list(part)
                # Requests behind a symlinked folder are refused; the rest go again.
                while remaining:
                    refused = await self._apply_changes(root, remaining)
                    remaining = _refuse_behind(remaining, refused)

    async def _run_deletes(self, root: str, recursive: bool, deletes: list[DeleteRequest]) -> None:
        async with self._exec_lock:
            for part in _split_by_arguments(deletes, _delete_argument_size):
                remaining = list(part)
                while remaining:
                    refused = await self._delete_paths(root, recursive, remaining)
                    remaining = _refuse_behind(remaining, refused)

    # --- Execs --------------------------------------------------------------------------------

    async def _apply_changes(self, root: str, changes: list[Change]) -> list[str]:
        """One exec of APPLY_SCRIPT; the folders it refused (then nothing was changed)."""
        members = [change for change in changes if not isinstance(change, ChmodRequest)]
        modes = [change for change in changes if isinstance(change, ChmodRequest)]
        folders = sorted(folders_above(change.path for change in changes))
        argv = [SHELL, "-c", APPLY_SCRIPT, "podlink-apply", root, str(len(folders)), *folders]
        argv.append("1" if members else "0")
        for change in modes:
            argv += (f"0{change.mode:04o}", change.path)
        stream = await self._exec(argv, stdin=bool(members))
        async with running(stream) as errors:
            ready, refused = await read_until_ready(stream)
            if refused:
                await stream.wait()
                return refused
            sent_all = ready
            if ready and members:
                sent_all = await send_archive(stream, members)
            notes = records(await stream.stdout.read()) if ready else []
            code = await stream.wait()
        settle_changes(changes, code, sent_all, errors.text(), notes)
        return []

    async def _delete_paths(
        self, root: str, recursive: bool, deletes: list[DeleteRequest]
    ) -> list[str]:
        """One exec of DELETE_SCRIPT; the folders it refused (then nothing was removed)."""
        folders = sorted(folders_above(request.path for request in deletes))
        argv = [SHELL, "-c", DELETE_SCRIPT, "podlink-delete", root, "1" if recursive else "0"]
        argv += (str(len(folders)), *folders, *(request.path for request in deletes))
        stream = await self._exec(argv)
        async with running(stream) as errors:
            ready, refused = await read_until_ready(stream)
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


def _refuse_behind(requests: list[RequestT], refused: list[str]) -> list[RequestT]:
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
    requests: list[RequestT], size_of: Callable[[RequestT], int]
) -> Iterator[list[RequestT]]:
    """Consecutive parts whose arguments fit in one exec's command line."""
    part: list[RequestT] = []
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


def _change_argument_size(request: Change) -> int:
    # Folders on the way, counted for every request (an overestimate), plus a chmod pair.
    length = len(request.path.encode())
    return length * request.path.count("/") + (
        length + 8 if isinstance(request, ChmodRequest) else 0
    )


def _delete_argument_size(request: DeleteRequest) -> int:
    length = len(request.path.encode())
    return length * (request.path.count("/") + 1)
