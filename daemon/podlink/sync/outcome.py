"""What one sync pass did, for the session's counters, logs and app restarts."""

from __future__ import annotations

from dataclasses import dataclass, field

from podlink.sync.core.reconcile import Conflict, Halt


@dataclass
class BatchResult:
    files_written: int = 0
    bytes_written: int = 0
    deleted: int = 0
    renamed: int = 0
    other_operations: int = 0
    # Paths changed in the target; an app restarts for these, never for its own writes.
    paths: list[str] = field(default_factory=list)
    # Paths changed in the workspace because the target changed them (two-way mode).
    downloaded: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    # Paths whose operation failed or was skipped: their agreed state stays as it was.
    failed: set[str] = field(default_factory=set)
    conflicts: list[Conflict] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    halted: Halt | None = None
    seconds: float = 0.0

    @property
    def changed_anything(self) -> bool:
        return bool(self.paths or self.downloaded)
