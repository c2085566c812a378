"""``$/progress`` for long work, when the client says it can show server-made progress."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from lsprotocol import types

from podlink.sync.outcome import ProgressCallback

if TYPE_CHECKING:
    from podlink.server.lsp import PodlinkServer

REPORT_INTERVAL_SECONDS = 0.1


@contextlib.asynccontextmanager
async def work_done_progress(
    server: PodlinkServer, title: str
) -> AsyncIterator[ProgressCallback | None]:
    """Yields a ``(done, total)`` callback, or None when the client cannot show progress."""
    window = server.client_capabilities.window
    if window is None or not window.work_done_progress:
        yield None
        return
    token = f"podlink-{uuid.uuid4().hex[:8]}"
    progress = server.work_done_progress
    try:
        await progress.create_async(token)
    except Exception:
        yield None  # a client that refuses the token still gets its result
        return
    progress.begin(token, types.WorkDoneProgressBegin(title=title, percentage=0))
    last_report = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report < REPORT_INTERVAL_SECONDS and done < total:
            return
        last_report = now
        percentage = int(done * 100 / total) if total else 100
        progress.report(
            token,
            types.WorkDoneProgressReport(message=f"{done}/{total}", percentage=percentage),
        )

    try:
        yield report
    finally:
        progress.end(token, types.WorkDoneProgressEnd())
