"""Carrying out upload plans through the transport: batches of small files, ordered phases.

The engine decides what to send; ``RemoteApplier`` sends it, keeps the engine's view of the
target true to what happened, and returns the problems it met (a ``ProblemLog``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec

from podlink.agent.client import NO_CHECK, AgentError, AgentGone
from podlink.agent.transport import FileTransport, TwoWayTransport
from podlink.agent.two_way import Expected, Precondition
from podlink.sync.core.plan import Operation, OperationKind, Plan, restrict
from podlink.sync.core.snapshot import Entry, Kind
from podlink.sync.outcome import BatchResult, ProblemLog, ProgressCallback
from podlink.sync.scan import DigestCache

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64
# Files up to this size travel in batches of at most BATCH_FILES files / BATCH_BYTES bytes.
BATCH_FILE_LIMIT = 256 * 1024
BATCH_FILES = 1000
BATCH_BYTES = 8 * 1024 * 1024
BATCHES_IN_FLIGHT = 3
OPEN_FOLDER_MODE = 0o755
CHANGED_WHILE_SENDING_RETRIES = 3


class RemoteApplier:
    """Sends a plan's operations to the target; one plan at a time.

    ``remote_view``: the engine's record of what the target holds, updated as operations
    succeed. ``digests``: the local digests, told what was sent.
    """

    agent: FileTransport  # the transport of the plan being applied

    def __init__(
        self,
        local_root: Path,
        remote_root: str,
        remote_view: dict[str, Entry],
        digests: DigestCache,
    ) -> None:
        self.local_root = local_root
        self.remote_root = remote_root
        self.remote_view = remote_view
        self._digests = digests
        # Two-way mode: what the target held when the pass looked; every change checks it.
        self._guard: dict[str, Entry] | None = None
        self._replaced: frozenset[str] = frozenset()
        self.problems = ProblemLog()

    def _check(self, path: str, *, removing: bool = False) -> dict[str, Precondition]:
        """The agent's precondition for changing ``path``, as keyword arguments.

        In two-way mode an edit made in the target after the pass looked must never be
        overwritten: the agent refuses with ``changed``, and the edit's own report brings
        it back to the next pass. Upload mode overwrites by design (the transport may be
        the tar fallback, which takes no preconditions).
        """
        if self._guard is None:
            return {}
        if path in self._replaced and not removing:
            return {"expect": None}  # its old entry of another kind is removed first
        known = self._guard.get(path)
        return {"expect": None if known is None else Expected.entry(known)}

    async def apply(
        self,
        agent: FileTransport,
        plan: Plan,
        source: dict[str, Entry],
        progress: ProgressCallback | None,
        result: BatchResult,
        guard: dict[str, Entry] | None = None,
    ) -> ProblemLog:
        """Send ``plan`` through ``agent``; ``guard``: the target entries it was made from
        (two-way mode)."""
        self.agent = agent
        self.problems = ProblemLog()
        if plan.is_empty:
            return self.problems
        if guard is not None and self.agent.two_way is None:
            raise AgentError("unsupported", "two-way sync needs python3 in the target")
        self._guard = guard
        self._replaced = frozenset(
            op.path
            for op in plan.operations
            if op.kind is OperationKind.DELETE and op.path in source
        )
        try:
            await self._apply_phases(plan, source, progress, result)
        finally:
            self._guard, self._replaced = None, frozenset()
        return self.problems

    async def _apply_phases(
        self,
        plan: Plan,
        source: dict[str, Entry],
        progress: ProgressCallback | None,
        result: BatchResult,
    ) -> None:
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

    async def _write_batch(self, batch: list[Operation], result: BatchResult) -> None:
        """Many small files in one round trip: the agent walks each folder once for them."""
        checked = self._checked()
        if checked is None:
            outcome = await self.agent.write_many(
                self.remote_root, [(op.path, self.local_root / op.path) for op in batch]
            )
        else:
            outcome = await checked.write_many(
                self.remote_root,
                [
                    (op.path, self.local_root / op.path, self._check(op.path)["expect"])
                    for op in batch
                ],
            )
        for sent in outcome.written:
            self.remote_view[sent.path] = Entry(
                kind=Kind.FILE, mode=sent.mode, size=sent.size, mtime_ns=sent.mtime_ns
            )
            self.problems.cleared(sent.path)
            result.files_written += 1
            result.bytes_written += sent.size
            result.paths.append(sent.path)
        for path, _code, message in outcome.failed:
            result.failed.add(path)
            self.problems.found(path, message)
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
            result.failed.add(path)
            log.debug("%s %s failed: %s", operation.kind.value, path, error)
            if error.code == "changed":
                return  # changed in the target since it was looked at: its own event follows
            self.problems.found(path, error.message)
            log.warning("could not sync %s: %s", path, error.message)
            return
        except FileNotFoundError:
            result.failed.add(path)
            return  # deleted locally since the scan: its own event brings the deletion
        except OSError as error:
            result.failed.add(path)
            self.problems.found(path, f"cannot read: {error.strerror}")
            return
        result.paths.append(path)
        if operation.kind is OperationKind.DELETE:
            self.problems.cleared(path, with_below=True)
            result.deleted += 1
            for known in restrict(self.remote_view, [path]):
                del self.remote_view[known]
        else:
            self.problems.cleared(path)

    async def _send(
        self, operation: Operation, source: dict[str, Entry], result: BatchResult
    ) -> None:
        path = operation.path
        root = self.remote_root
        if operation.kind is OperationKind.DELETE:
            await self.agent.delete(root, path, recursive=True, **self._check(path, removing=True))
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
        if operation.kind is OperationKind.RENAME:
            assert operation.source is not None
            mover = self.agent.two_way
            if mover is None:
                raise AgentError("unsupported", "this target's transport cannot move files")
            moving = self._check(operation.source, removing=True).get("expect", NO_CHECK)
            await mover.rename(
                root, operation.source, path, expect=moving, **_as_destination(self._check(path))
            )
            moved = self.remote_view.pop(operation.source, None)
            self.remote_view[path] = msgspec.structs.replace(
                entry, digest=moved.digest if moved is not None else None
            )
            result.renamed += 1
            return
        if operation.kind is OperationKind.MKDIR:
            await self.agent.mkdir(root, path, operation.mode)  # an existing folder is fine
        elif operation.kind is OperationKind.SYMLINK:
            assert operation.link_target is not None
            await self.agent.symlink(root, path, operation.link_target, **self._check(path))
        else:
            await self.agent.chmod(root, path, operation.mode, **self._check(path))
        result.other_operations += 1
        self.remote_view[path] = entry

    def _checked(self) -> TwoWayTransport | None:
        """The transport that checks preconditions, while a pass asks for them."""
        return None if self._guard is None else self.agent.two_way

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
                    **self._check(path),
                )
            except AgentError as error:
                # A file saved again while it was being sent: send the newer content.
                if error.code != "changed" or attempts_left == 0:
                    raise
                attempts_left -= 1


def _as_destination(check: dict[str, Precondition]) -> dict[str, Precondition]:
    return {"expect_dst": check["expect"]} if "expect" in check else {}


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
