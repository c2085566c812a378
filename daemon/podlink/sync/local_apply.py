"""Carrying out download plans in the workspace (two-way mode), and saving conflict copies.

``LocalApplier`` returns the problems it met (a ``ProblemLog``) for the engine. Every change
to a workspace file is made the way the agent makes them in the target: content goes to a
temporary file beside the destination and is renamed over it, and only when the destination
still is what the scan saw, so an edit made in the editor since is never overwritten (the
pass that edit starts decides about it). Deletions remove only what the scan listed: files
podlink does not sync (ignored ones) are never removed with their folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import posixpath
import secrets
import stat
from pathlib import Path

from podlink.agent.client import AgentError, AgentGone
from podlink.agent.transport import TwoWayTransport
from podlink.sync.core.names import TEMP_PREFIX
from podlink.sync.core.plan import Operation, OperationKind, Plan, depth, restrict
from podlink.sync.core.reconcile import ConflictCopy
from podlink.sync.core.snapshot import Entry, Kind, Snapshot
from podlink.sync.outcome import BatchResult, ProblemLog

log = logging.getLogger(__name__)

DOWNLOADS_IN_FLIGHT = 16
NAME_ROOM = 200  # leaves room in a 255-byte name for the temporary prefix and suffix


class LocalChanged(Exception):
    """The workspace path is no longer what the scan saw."""


class LocalApplier:
    """Writes the target's changes into the workspace; one plan at a time."""

    def __init__(self, reader: TwoWayTransport, local_root: Path, remote_root: str) -> None:
        self._reader = reader
        self.local_root = local_root
        self.remote_root = remote_root
        self.problems = ProblemLog()

    async def apply(
        self,
        plan: Plan,
        merged: dict[str, Entry],
        local: Snapshot,
        result: BatchResult,
        written: dict[str, Entry],
    ) -> ProblemLog:
        """Apply ``plan`` to the workspace; ``written`` gets the entries as they now are."""
        self.problems = ProblemLog()
        if plan.is_empty:
            return self.problems
        limit = asyncio.Semaphore(DOWNLOADS_IN_FLIGHT)
        current = dict(local)  # what the workspace holds as the plan goes on

        async def run(operation: Operation) -> None:
            async with limit:
                await self._run_local(operation, merged, current, result, written)

        deletes = [op for op in plan.operations if op.kind is OperationKind.DELETE]
        type_changes = [op for op in deletes if op.path in merged]
        gone = [op for op in deletes if op.path not in merged]
        folders = [op for op in plan.operations if op.kind is OperationKind.MKDIR]
        content = [
            op
            for op in plan.operations
            if op.kind in (OperationKind.WRITE, OperationKind.SYMLINK, OperationKind.CHMOD)
        ]
        for op in type_changes:
            await run(op)
        for op in folders:
            await run(op)  # shallowest first, as planned
        await asyncio.gather(*(run(op) for op in content))
        for op in folders:
            if op.path not in result.failed:
                await self._set_local_mode(op.path, op.mode, result)
        for op in gone:
            await run(op)
        return self.problems

    async def _run_local(
        self,
        operation: Operation,
        merged: dict[str, Entry],
        local: dict[str, Entry],
        result: BatchResult,
        written: dict[str, Entry],
    ) -> None:
        path = operation.path
        try:
            if operation.kind is OperationKind.DELETE:
                await asyncio.to_thread(self._delete_local, path, local)
                for removed in restrict(local, [path]):
                    del local[removed]
                result.deleted += 1
            elif operation.kind is OperationKind.MKDIR:
                (self.local_root / path).mkdir(mode=0o755, parents=True, exist_ok=True)
            elif operation.kind is OperationKind.SYMLINK:
                assert operation.link_target is not None
                self._replace_local(path, local.get(path), operation.link_target)
            elif operation.kind is OperationKind.CHMOD:
                _check_unchanged(self.local_root / path, local.get(path))
                os.chmod(self.local_root / path, operation.mode, follow_symlinks=False)
            else:
                entry = await self._download(path, self.local_root / path, local.get(path))
                written[path] = entry
                result.bytes_downloaded += entry.size
        except AgentGone:
            raise
        except LocalChanged:
            result.failed.add(path)  # edited meanwhile: its own event brings it back
            return
        except AgentError as error:
            result.failed.add(path)
            if error.code not in ("changed", "notFound"):
                self.problems.found(path, f"cannot copy from the target: {error.message}")
            return
        except OSError as error:
            result.failed.add(path)
            self.problems.found(path, f"cannot write in the workspace: {error.strerror}")
            log.warning("could not write %s: %s", path, error)
            return
        self.problems.cleared(path)
        result.downloaded.append(path)

    async def _set_local_mode(self, path: str, mode: int, result: BatchResult) -> None:
        try:
            os.chmod(self.local_root / path, mode)
        except OSError as error:
            result.failed.add(path)
            self.problems.found(path, f"cannot set its mode: {error.strerror}")

    async def _download(self, path: str, destination: Path, expected: Entry | None) -> Entry:
        """Copy the target's ``path`` to ``destination`` if it still holds ``expected``."""
        temporary = _temporary_beside(destination)
        info = await self._reader.read_file(self.remote_root, path, temporary)
        try:
            os.chmod(temporary, info.mode)
            os.utime(temporary, ns=(info.mtime_ns, info.mtime_ns))
            _check_unchanged(destination, expected)
            os.replace(temporary, destination)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        return Entry(
            kind=Kind.FILE,
            mode=info.mode,
            size=info.size,
            mtime_ns=info.mtime_ns,
            digest=info.digest,
            inode=os.lstat(destination).st_ino,
        )

    def _replace_local(self, path: str, expected: Entry | None, link_target: str) -> None:
        destination = self.local_root / path
        temporary = _temporary_beside(destination)
        os.symlink(link_target, temporary)
        try:
            _check_unchanged(destination, expected)
            os.replace(temporary, destination)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise

    def _delete_local(self, path: str, local: Snapshot) -> None:
        """Remove what the scan listed at and below ``path``, deepest first."""
        for below, entry in sorted(
            restrict(local, [path]).items(), key=lambda item: -depth(item[0])
        ):
            where = self.local_root / below
            if entry.kind is Kind.DIRECTORY:
                try:
                    where.rmdir()
                except FileNotFoundError:
                    continue
                except OSError as error:
                    if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise OSError(
                            error.errno, "kept: it holds files that are not synced"
                        ) from error
                    raise
                continue
            _check_unchanged(where, entry)
            with contextlib.suppress(FileNotFoundError):
                where.unlink()

    async def copy_conflict(self, copy: ConflictCopy, remote: Snapshot) -> None:
        """Save the target's version of a conflicting path (a whole subtree, as ``remote``
        lists it) in the workspace."""
        for below, entry in sorted(
            restrict(remote, [copy.remote_path]).items(),
            key=lambda item: (depth(item[0]), item[0]),
        ):
            relative = copy.local_path + below[len(copy.remote_path) :]
            destination = self.local_root / relative
            if entry.kind is Kind.DIRECTORY:
                destination.mkdir(parents=True, exist_ok=True)
            elif entry.kind is Kind.SYMLINK:
                assert entry.link_target is not None
                self._replace_local(relative, None, entry.link_target)
            else:
                await self._download(below, destination, None)
        log.info("saved the target's version of %s as %s", copy.remote_path, copy.local_path)


def _temporary_beside(destination: Path) -> Path:
    """A fresh name in the destination's folder (made if missing) that scans never report."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    return destination.with_name(
        f"{TEMP_PREFIX}{destination.name[:NAME_ROOM]}-{secrets.token_hex(4)}"
    )


def _check_unchanged(where: Path, expected: Entry | None) -> None:
    try:
        found = os.lstat(where)
    except FileNotFoundError:
        if expected is None:
            return
        raise LocalChanged(str(where)) from None
    if expected is None:
        raise LocalChanged(str(where))
    kind = (
        Kind.DIRECTORY
        if stat.S_ISDIR(found.st_mode)
        else Kind.SYMLINK
        if stat.S_ISLNK(found.st_mode)
        else Kind.FILE
    )
    if kind is not expected.kind:
        raise LocalChanged(str(where))
    if kind is Kind.FILE and (
        found.st_size != expected.size or found.st_mtime_ns != expected.mtime_ns
    ):
        raise LocalChanged(str(where))


def conflict_copy_exists(root: Path, copy_path: str) -> bool:
    return os.path.lexists(root / posixpath.normpath(copy_path))
