"""What one sync pass did, for the session's counters, logs and app restarts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from podlink.sync.core.plan import is_within
from podlink.sync.core.reconcile import Conflict
from podlink.sync.core.safety import Halt

# Told (operations done, operations planned) as a pass's upload goes on.
ProgressCallback = Callable[[int, int], None]


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


class ProblemLog:
    """Problems an applier found and cleared, in the order it met them; the engine folds them
    into the problems it shows (``fold_into``), so appliers never share that state."""

    def __init__(self) -> None:
        # (path, message or None to clear, whether what lies below ``path`` clears too)
        self._changes: list[tuple[str, str | None, bool]] = []

    def found(self, path: str, message: str) -> None:
        self._changes.append((path, message, False))

    def cleared(self, path: str, *, with_below: bool = False) -> None:
        self._changes.append((path, None, with_below))

    def fold_into(self, problems: dict[str, str]) -> None:
        for path, message, with_below in self._changes:
            if message is not None:
                problems[path] = message
            elif with_below:
                for known in [p for p in problems if is_within(p, path)]:
                    del problems[known]
            else:
                problems.pop(path, None)
