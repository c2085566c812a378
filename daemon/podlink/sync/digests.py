"""Filling in digests where size and mtime cannot tell equal content from changed content.

Local files are hashed here (through the ``DigestCache``), target files by the transport,
both at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from podlink.agent.transport import FileTransport
from podlink.sync.core.snapshot import Entry, Snapshot
from podlink.sync.scan import DigestCache

# Local files up to this many bytes in all are hashed on the event loop.
INLINE_HASH_LIMIT = 1 << 20


async def fill_digests(
    needed: list[str],
    local: dict[str, Entry],
    remote: Snapshot,
    *,
    cache: DigestCache,
    local_root: Path,
    transport: FileTransport,
    remote_root: str,
) -> tuple[dict[str, Entry], dict[str, str | None]]:
    """``local`` with digests for ``needed`` (a file gone meanwhile is left out), and the
    target's digests of the ``needed`` files ``remote`` has none for (None: gone there)."""
    if not needed:
        return local, {}
    filled = dict(local)

    def hash_local() -> None:
        for path in needed:
            if (wanted := local.get(path)) is None or wanted.digest is not None:
                continue
            entry = cache.with_digest(local_root, path, wanted)
            if entry is None:
                filled.pop(path, None)
            else:
                filled[path] = entry

    unknown_remote = [
        path for path in needed if (there := remote.get(path)) is not None and there.digest is None
    ]
    remote_digests: dict[str, str | None] = {}
    if unknown_remote:
        _, remote_digests = await asyncio.gather(
            asyncio.to_thread(hash_local), transport.hash(remote_root, unknown_remote)
        )
    elif sum(local[path].size for path in needed if path in local) <= INLINE_HASH_LIMIT:
        hash_local()  # a saved file's own digest: cheaper here than a thread hop
    else:
        await asyncio.to_thread(hash_local)
    return filled, remote_digests
