"""Apply upload plans through the agent: the local tree is mirrored into one target root.

The engine keeps a view of what the target holds (``remote_view``), so a saved file costs a
local stat and hash plus one agent round trip, not a scan of the target. Failures on single
paths become problems (data); the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from podlink.agent.client import AgentError, AgentGone
from podlink.agent.transport import FileTransport
from podlink.sync.core.plan import (
    Operation,
    OperationKind,
    Plan,
    is_within,
    paths_needing_digests,
    plan_mirror,
    restrict,
)
from podlink.sync.core.snapshot import Entry, Kind
from podlink.sync.ignore import IgnoreRules, is_ignore_file
from podlink.sync.scan import DigestCache, FolderFound, LocalScan, scan_paths, scan_tree

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64
# Files up to this size travel in batches of at most BATCH_FILES files / BATCH_BYTES bytes.
BATCH_FILE_LIMIT = 256 * 1024
BATCH_FILES = 1000
BATCH_BYTES = 8 * 1024 * 1024
BATCHES_IN_FLIGHT = 3
OPEN_FOLDER_MODE = 0o755
INLINE_SCAN_LIMIT = 8
INLINE_HASH_LIMIT = 1 << 20
CHANGED_WHILE_SENDING_RETRIES = 3


@dataclass
class BatchResult:
    """What one pass of the engine did."""

    files_written: int = 0
    bytes_written: int = 0
    deleted: int = 0
    other_operations: int = 0
    paths: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed_anything(self) -> bool:
        return bool(self.paths)


ProgressCallback = Callable[[int, int], None]


class UploadEngine:
    """Mirrors ``local_root`` into ``remote_root`` (a path as the target's processes see it)."""

    def __init__(
        self,
        agent: FileTransport,
        local_root: Path,
        remote_root: str,
        make_rules: Callable[[], IgnoreRules],
        rules: IgnoreRules | None = None,
    ) -> None:
        """``rules``: the rules a first local scan was already made with, if any."""
        self.agent = agent
        self.local_root = local_root
        self.remote_root = remote_root
        self._make_rules = make_rules
        self.rules = rules if rules is not None else make_rules()
        self.remote_view: dict[str, Entry] = {}
        self.problems: dict[str, str] = {}
        self._digests = DigestCache()
        self._lock = asyncio.Lock()

    def is_ignored(self, path: str) -> bool:
        return self.rules.is_ignored(path)

    async def initial_sync(
        self,
        progress: ProgressCallback | None = None,
        local_scan: Awaitable[LocalScan] | None = None,
    ) -> BatchResult:
        """Scan both sides and send only what differs; delete what the workspace lacks.

        ``local_scan``: a scan of the local tree already under way (made with ``rules``),
        so it could overlap with reaching the target.
        """
        async with self._lock:
            started = time.monotonic()
            await self.agent.ensure_root(self.remote_root)
            local, remote = await asyncio.gather(
                local_scan or asyncio.to_thread(scan_tree, self.local_root, self.rules),
                self.agent.scan(self.remote_root),
            )
            for path, message in remote.problems:
                self.problems[path] = f"in the target: {message}"
            self.remote_view = {
                path: entry
                for path, entry in remote.entries.items()
                if not self.rules.is_ignored(path, is_dir=entry.kind is Kind.DIRECTORY)
            }
            result = await self._reconcile(local, self.remote_view, progress)
            result.seconds = time.monotonic() - started
            return result

    async def sync_paths(self, paths: Iterable[str]) -> BatchResult:
        """Bring the given paths (and what lies below them) up to date in the target."""
        changed = set(paths)
        if any(is_ignore_file(path) for path in changed) or "" in changed:
            return await self.rescan(reload_rules=True)
        async with self._lock:
            started = time.monotonic()
            local = await self._scan_changed(changed)
            relevant = {path for path in changed if not self.rules.is_ignored(path)}
            result = await self._reconcile(local, restrict(self.remote_view, relevant), None)
            result.seconds = time.monotonic() - started
            return result

    async def _scan_changed(self, changed: set[str]) -> LocalScan:
        if len(changed) <= INLINE_SCAN_LIMIT:
            # A few lstat calls cost less than the hop to a worker thread, and a saved file's
            # latency is made of such hops; a folder among them is walked in a thread.
            with contextlib.suppress(FolderFound):
                return scan_paths(self.local_root, changed, self.rules, walk_folders=False)
        return await asyncio.to_thread(scan_paths, self.local_root, changed, self.rules)

    async def rescan(self, *, reload_rules: bool = False) -> BatchResult:
        """Compare the whole local tree with the target view; the barrier behind a flush."""
        async with self._lock:
            started = time.monotonic()
            if reload_rules:
                self.rules = self._make_rules()
                self.remote_view = {
                    path: entry
                    for path, entry in self.remote_view.items()
                    if not self.rules.is_ignored(path, is_dir=entry.kind is Kind.DIRECTORY)
                }
            local = await asyncio.to_thread(scan_tree, self.local_root, self.rules)
            result = await self._reconcile(local, self.remote_view, None)
            result.seconds = time.monotonic() - started
            return result

    async def _reconcile(
        self,
        local: LocalScan,
        remote: dict[str, Entry],
        progress: ProgressCallback | None,
    ) -> BatchResult:
        for path, message in local.problems:
            self.problems[path] = message
        source = await self._with_digests(local.entries, remote)
        plan = plan_mirror(source, remote)
        return await self._apply(plan, source, progress)

    async def _with_digests(
        self, source: dict[str, Entry], remote: dict[str, Entry]
    ) -> dict[str, Entry]:
        needed = paths_needing_digests(source, remote)
        if not needed:
            return source
        filled = dict(source)

        def hash_local() -> None:
            for path in needed:
                entry = self._digests.with_digest(self.local_root, path, source[path])
                if entry is None:
                    filled.pop(path, None)
                else:
                    filled[path] = entry

        unknown_remote = [path for path in needed if remote[path].digest is None]
        remote_digests: dict[str, str | None] = {}
        if unknown_remote:
            _, remote_digests = await asyncio.gather(
                asyncio.to_thread(hash_local),
                self.agent.hash(self.remote_root, unknown_remote),
            )
        elif sum(source[path].size for path in needed) <= INLINE_HASH_LIMIT:
            hash_local()  # a saved file's own digest: cheaper here than a thread hop
        else:
            await asyncio.to_thread(hash_local)
        for path, digest in remote_digests.items():
            if digest is None:
                remote.pop(path, None)
                self.remote_view.pop(path, None)
            else:
                updated = msgspec.structs.replace(remote[path], digest=digest)
                remote[path] = updated
                self.remote_view[path] = updated
        return filled

    async def _apply(
        self, plan: Plan, source: dict[str, Entry], progress: ProgressCallback | None
    ) -> BatchResult:
        result = BatchResult()
        if plan.is_empty:
            return result
        total = len(plan.operations)
        done = 0
        limit = asyncio.Semaphore(MAX_IN_FLIGHT)

        async def run(operation: Operation) -> None:
            nonlocal done
            async with limit:
                await self._run_operation(operation, source, result)
            done += 1
            if progress is not None:
                progress(done, total)

        batch_limit = asyncio.Semaphore(BATCHES_IN_FLIGHT)

        async def run_batch(batch: list[Operation]) -> None:
            nonlocal done
            async with batch_limit:
                await self._write_batch(batch, result)
            done += len(batch)
            if progress is not None:
                progress(done, total)

        for phase in _phases(plan):
            batches, singles = _batch_small_writes(phase)
            await asyncio.gather(
                *(run_batch(batch) for batch in batches),
                *(run(operation) for operation in singles),
            )
        return result

    async def _write_batch(self, batch: list[Operation], result: BatchResult) -> None:
        """Many small files in one round trip: the agent walks each folder once for them."""
        outcome = await self.agent.write_many(
            self.remote_root, [(op.path, self.local_root / op.path) for op in batch]
        )
        for sent in outcome.written:
            self.remote_view[sent.path] = Entry(
                kind=Kind.FILE, mode=sent.mode, size=sent.size, mtime_ns=sent.mtime_ns
            )
            self.problems.pop(sent.path, None)
            result.files_written += 1
            result.bytes_written += sent.size
            result.paths.append(sent.path)
        for path, _code, message in outcome.failed:
            self.problems[path] = message
            log.warning("could not sync %s: %s", path, message)

    async def _run_operation(
        self, operation: Operation, source: dict[str, Entry], result: BatchResult
    ) -> None:
        path = operation.path
        try:
            await self._send(operation, source, result)
        except AgentGone:
            raise
        except AgentError as error:
            self.problems[path] = error.message
            log.warning("could not sync %s: %s", path, error.message)
            return
        except FileNotFoundError:
            return  # deleted locally since the scan: its own event brings the deletion
        except OSError as error:
            self.problems[path] = f"cannot read: {error.strerror}"
            return
        self.problems.pop(path, None)
        result.paths.append(path)
        if operation.kind is OperationKind.DELETE:
            result.deleted += 1
            for known in restrict(self.remote_view, [path]):
                del self.remote_view[known]
            for known in [p for p in self.problems if is_within(p, path)]:
                del self.problems[known]

    async def _send(
        self, operation: Operation, source: dict[str, Entry], result: BatchResult
    ) -> None:
        path = operation.path
        root = self.remote_root
        if operation.kind is OperationKind.DELETE:
            await self.agent.delete(root, path, recursive=True)
            return
        entry = source[path]
        if operation.kind is OperationKind.WRITE:
            digest = await self._write_file(path, entry)
            result.files_written += 1
            result.bytes_written += entry.size
            self._digests.remember(path, entry, digest)
            self.remote_view[path] = Entry(
                kind=Kind.FILE,
                mode=entry.mode,
                size=entry.size,
                mtime_ns=entry.mtime_ns,
                digest=digest,
            )
            return
        if operation.kind is OperationKind.MKDIR:
            await self.agent.mkdir(root, path, operation.mode)
        elif operation.kind is OperationKind.SYMLINK:
            assert operation.link_target is not None
            await self.agent.symlink(root, path, operation.link_target)
        else:
            await self.agent.chmod(root, path, operation.mode)
        result.other_operations += 1
        self.remote_view[path] = entry

    async def _write_file(self, path: str, entry: Entry) -> str:
        attempts_left = CHANGED_WHILE_SENDING_RETRIES
        while True:
            try:
                return await self.agent.write_file(
                    self.remote_root,
                    path,
                    self.local_root / path,
                    entry.mode,
                    expected_size=entry.size,
                )
            except AgentError as error:
                # A file saved again while it was being sent: send the newer content.
                if error.code != "changed" or attempts_left == 0:
                    raise
                attempts_left -= 1


def _batch_small_writes(
    phase: list[Operation],
) -> tuple[list[list[Operation]], list[Operation]]:
    """Small file writes grouped for ``write_many``; everything else one by one."""
    batches: list[list[Operation]] = []
    singles: list[Operation] = []
    current: list[Operation] = []
    current_bytes = 0
    for operation in phase:
        if operation.kind is not OperationKind.WRITE or operation.size > BATCH_FILE_LIMIT:
            singles.append(operation)
            continue
        if current and (
            len(current) >= BATCH_FILES or current_bytes + operation.size > BATCH_BYTES
        ):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(operation)
        current_bytes += operation.size
    if len(current) == 1 and not batches:
        singles.extend(current)  # one saved file: the plain write is the quickest
    elif current:
        batches.append(current)
    return batches, singles


def _phases(plan: Plan) -> list[list[Operation]]:
    """Split a plan where one step must be finished before the next starts.

    The agent carries out requests in the order they are sent and makes missing parent
    folders itself, so folders and content go out together, in one round trip. A folder
    with another mode than the usual is made open first and gets its mode with the other
    mode changes, after its content is in (a read-only folder would refuse it).
    """
    leading_deletes: list[Operation] = []
    together: list[Operation] = []
    modes: list[Operation] = []
    trailing_deletes: list[Operation] = []
    seen_non_delete = False
    for operation in plan.operations:
        if operation.kind is OperationKind.DELETE:
            (trailing_deletes if seen_non_delete else leading_deletes).append(operation)
            continue
        seen_non_delete = True
        if operation.kind is OperationKind.MKDIR and operation.mode != OPEN_FOLDER_MODE:
            together.append(msgspec.structs.replace(operation, mode=OPEN_FOLDER_MODE))
            modes.append(Operation(OperationKind.CHMOD, operation.path, mode=operation.mode))
        elif operation.kind is OperationKind.CHMOD:
            modes.append(operation)
        else:
            together.append(operation)
    return [p for p in (leading_deletes, together, modes, trailing_deletes) if p]
