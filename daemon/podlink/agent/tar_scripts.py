"""The ``sh`` side of the tar transport: the scripts it runs in the target, running them, and
reading what they print (listings of the sync root, ``find``'s complaints, status records).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import stat
from collections.abc import AsyncIterator
from decimal import Decimal, InvalidOperation

from podlink.sync.core.names import TEMP_PREFIX
from podlink.sync.core.snapshot import Entry, Kind
from podlink.targets.base import ExecStream

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

# The refusal both scripts start with: `L` for each of the next $count paths (folders on the
# way to what they change) that is a symlink, then exit 3; else `R`, and the script goes on.
_REFUSE_LINKS = r"""
refused=
while [ "$count" -gt 0 ]; do
    if [ -L "$root/$1" ]; then printf 'L%s\0' "$1"; refused=1; fi
    shift
    count=$((count - 1))
done
if [ -n "$refused" ]; then exit 3; fi
printf 'R\0'
"""

# Refuses (exit 3) when a folder on the way to a path is a symlink: the `L` records name
# them. Otherwise prints `R`, extracts the tar stream from standard input (when $1 is 1)
# and sets modes (pairs of mode and path), reporting `S` for a symlink and `F` for a failed
# chmod. Records end with NUL. Exits with tar's status.
APPLY_SCRIPT = (
    r"""
root=$1 count=$2
shift 2
"""
    + _REFUSE_LINKS
    + r"""
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
)

# The same refusal, then `R`, one `y` or `n` per path (whether it existed), and the removal:
# `rm -rf` of all of them at once, or one by one without recursion.
DELETE_SCRIPT = (
    r"""
root=$1 recursive=$2 count=$3
shift 3
"""
    + _REFUSE_LINKS
    + r"""
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
)

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
async def running(stream: ExecStream) -> AsyncIterator[_Collected]:
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


async def finish(stream: ExecStream) -> tuple[bytes, str, int]:
    """Run an exec to its end: its output, its standard error as text, its exit code."""
    async with running(stream) as errors:
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


async def read_until_ready(stream: ExecStream) -> tuple[bool, list[str]]:
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


def records(output: bytes) -> list[str]:
    return [item.decode("utf-8", "surrogateescape") for item in output.split(b"\0") if item]


# --- Reading listings -------------------------------------------------------------------------

_Problems = list[tuple[str, str]]


def parse_printf_listing(output: bytes) -> tuple[dict[str, Entry], _Problems]:
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


def parse_stat_listing(output: bytes) -> tuple[dict[str, Entry], _Problems]:
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


def find_problems(errors: str) -> _Problems:
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
