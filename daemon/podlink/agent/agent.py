"""podlink's agent: does all file work inside the target, over one framed byte stream.

The daemon starts it with a short bootstrap (see ``podlink.agent.client.BOOTSTRAP``) that
reads this file's source from standard input and runs ``main()``, so no copy of the agent
is ever left in the target and a stale one can never be used. ``python agent.py`` runs it
directly as well.

It must stay one file that needs only the standard library of Python 3.8 or newer: it runs
in whatever Python the target image has. Requests arrive on standard input and replies go
to standard output, both as frames (see ``podlink.agent.wire`` for the layout); standard
error carries human-readable diagnostics only.

Every request names a sync ``root`` (an absolute path in the target, trusted as given) and
relative POSIX paths below it. Those paths are confined to the root: a path is refused if it
could climb out of it, and folders are entered one component at a time with ``O_NOFOLLOW``
so that a symlink anywhere on the way, even one created while the agent works, is refused
instead of followed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import signal
import stat
import struct
import sys
import traceback
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

# --- Protocol constants. podlink.agent.wire holds the same values; a test keeps them equal.

AGENT_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
HEADER_FORMAT = ">IBI"  # payload length, message type, request id
MAX_PAYLOAD = 4 * 1024 * 1024
TEMP_PREFIX = ".podlink-tmp-"

HELLO = 1
SCAN = 2
HASH = 3
WRITE = 4
DATA = 5
DELETE = 6
MKDIR = 7
SYMLINK = 8
CHMOD = 9
RENAME = 10
ENSURE_ROOT = 11
WRITE_MANY = 12
OK = 64
ERROR = 65
ENTRIES = 66

HEADER = struct.Struct(HEADER_FORMAT)
READ_CHUNK = 1024 * 1024
# A scan batch is sent once it holds this many entries or this many bytes of names, which
# keeps every ENTRIES frame far below MAX_PAYLOAD even for the longest legal paths.
BATCH_ENTRIES = 1000
BATCH_BYTES = 1024 * 1024
NAME_MAX = 255

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO that replaced a file must not hang the agent.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW

ERRNO_CODES = {
    errno.ENOENT: "notFound",
    errno.EEXIST: "exists",
    errno.EISDIR: "isDirectory",
    errno.ENOTDIR: "notDirectory",
    errno.ENOTEMPTY: "notEmpty",
    errno.EACCES: "permissionDenied",
    errno.EPERM: "permissionDenied",
    errno.ENOSPC: "noSpace",
    errno.EROFS: "readOnly",
    errno.ENAMETOOLONG: "nameTooLong",
    errno.EXDEV: "crossDevice",
    errno.EINVAL: "invalid",
    errno.EBUSY: "busy",
}
if hasattr(errno, "EDQUOT"):
    ERRNO_CODES[errno.EDQUOT] = "noSpace"


# --- Failures ------------------------------------------------------------------------------


class Failure(Exception):
    """A request the agent refuses or cannot carry out; answered with an ERROR frame."""

    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        super().__init__(code, message, path)
        self.code = code
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PathEscape(Failure):
    """A path that is malformed or could lead outside its sync root."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__("escape", message, path)


class ProtocolViolation(Exception):
    """The byte stream cannot be trusted any more: the agent answers once and exits."""

    def __init__(self, message: str, request_id: int = 0) -> None:
        super().__init__(message)
        self.request_id = request_id


class EndOfInput(Exception):
    """Standard input ended: the daemon is done with this agent."""


def failure_from_os_error(error: OSError, path: str | None) -> Failure:
    code = ERRNO_CODES.get(error.errno or 0, "io")
    return Failure(code, error.strerror or str(error), path)


# --- Path confinement ----------------------------------------------------------------------


def split_relative_path(path: object) -> list[str]:
    """The components of a sync-relative path, or PathEscape saying why it is refused.

    Purely lexical: the file system is consulted later, one component at a time.
    """
    if not isinstance(path, str):
        raise PathEscape("refused: a path must be a string", None)
    if not path:
        raise PathEscape("refused: the path is empty", path)
    if "\x00" in path:
        raise PathEscape("refused: the path contains a NUL byte", path)
    if path.startswith("/"):
        raise PathEscape("refused: the path is absolute, it must be relative to the root", path)
    parts = path.split("/")
    for part in parts:
        if part == "":
            raise PathEscape(
                "refused: the path has an empty component (a doubled or end '/')", path
            )
        if part == ".":
            raise PathEscape("refused: the path has a '.' component", path)
        if part == "..":
            raise PathEscape("refused: a '..' component could leave the sync root", path)
    if not is_utf8(path):
        raise PathEscape("refused: the path is not valid Unicode", path)
    return parts


def check_link_target(parts: list[str], target: object, path: str) -> str:
    """Refuse a symlink target unless it stays inside the root, resolved from the link's folder.

    The check is lexical: links elsewhere in the tree were checked when they were made.
    """
    if not isinstance(target, str) or not target:
        raise PathEscape("refused: a symlink target must be a non-empty string", path)
    if "\x00" in target or not is_utf8(target):
        raise PathEscape("refused: the symlink target is not valid text", path)
    if target.startswith("/"):
        raise PathEscape(f"refused: the symlink target {target!r} is absolute", path)
    resolved = list(parts[:-1])
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            resolved.append(part)
        elif resolved:
            resolved.pop()
        else:
            raise PathEscape(f"refused: the symlink target {target!r} leads outside the root", path)
    return target


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def open_root(root: str) -> int:
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise Failure("notFound", f"the sync root {root} does not exist") from None
    except NotADirectoryError:
        raise Failure("notDirectory", f"the sync root {root} is not a folder") from None


def open_child_folder(parent_fd: int, name: str, create: bool, shown: str) -> int:
    """Open the folder ``name`` inside ``parent_fd`` without following a symlink there.

    ``shown`` is the path of that folder relative to the root, for messages.
    """
    try:
        return os.open(name, FOLDER_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise Failure("notFound", f"the folder {shown} does not exist") from None
    except OSError as error:
        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        raise_not_a_folder(parent_fd, name, shown)
    try:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
    except FileExistsError:
        pass  # made concurrently; the open below finds out what it is
    try:
        return os.open(name, FOLDER_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        raise_not_a_folder(parent_fd, name, shown)


def raise_not_a_folder(parent_fd: int, name: str, shown: str) -> NoReturn:
    if stat.S_ISLNK(os.lstat(name, dir_fd=parent_fd).st_mode):
        raise PathEscape(f"refused: the path goes through a symlink at {shown}")
    raise Failure("notDirectory", f"{shown} is not a folder")


@contextlib.contextmanager
def folder_of(root: str, parts: list[str], create: bool) -> Iterator[int]:
    """An fd of the folder holding ``parts[-1]``, reached from the root without symlinks.

    With ``create``, missing folders on the way are made (mode 0o755).
    """
    fd = open_root(root)
    try:
        for depth in range(len(parts) - 1):
            shown = "/".join(parts[: depth + 1])
            child = open_child_folder(fd, parts[depth], create, shown)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def lstat_or_none(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def temp_name(name: str) -> str:
    """A fresh temporary name beside ``name``, still within the file system's name limit."""
    prefix = f"{TEMP_PREFIX}{os.urandom(4).hex()}-"
    room = NAME_MAX - len(prefix.encode("ascii"))
    shortened = name.encode("utf-8")[:room].decode("utf-8", "ignore")
    return prefix + shortened


def chmod_no_follow(dir_fd: int, name: str, mode: int, path: str) -> None:
    """Set the permission bits of ``name`` itself; symlinks are refused, never followed."""
    found = os.lstat(name, dir_fd=dir_fd)
    if stat.S_ISLNK(found.st_mode):
        raise Failure("isSymlink", "a symlink has no permissions of its own", path)
    try:
        os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
        return
    except (NotImplementedError, ValueError):
        pass
    except OSError as error:
        if error.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    # This C library cannot chmod without following links: pin the inode with O_PATH and
    # change it through /proc, so a symlink swapped in after the check is never followed.
    pinned = os.open(name, getattr(os, "O_PATH", 0) | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        if stat.S_ISLNK(os.fstat(pinned).st_mode):
            raise Failure("isSymlink", "a symlink has no permissions of its own", path)
        os.chmod(f"/proc/self/fd/{pinned}", mode)
    finally:
        os.close(pinned)


# --- Framing ---------------------------------------------------------------------------------


class Channel:
    """Frames over a pair of binary streams."""

    def __init__(self, reader: IO[bytes], writer: IO[bytes]) -> None:
        self.reader = reader
        self.writer = writer

    def read_frame(self) -> tuple[int, int, bytes]:
        """The next (message type, request id, payload); EndOfInput when the input ends."""
        length, kind, request_id = HEADER.unpack(self.read_exactly(HEADER.size))
        if length > MAX_PAYLOAD:
            raise ProtocolViolation(
                f"a frame of {length} bytes exceeds the {MAX_PAYLOAD} byte limit",
                request_id,
            )
        return kind, request_id, self.read_exactly(length) if length else b""

    def read_exactly(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) == size:
            return data
        chunks = [data]
        received = len(data)
        while data and received < size:
            data = self.reader.read(size - received)
            chunks.append(data)
            received += len(data)
        if received < size:
            raise EndOfInput()
        return b"".join(chunks)

    def send(self, kind: int, request_id: int, payload: bytes) -> None:
        self.writer.write(HEADER.pack(len(payload), kind, request_id))
        self.writer.write(payload)

    def send_json(self, kind: int, request_id: int, message: dict[str, Any]) -> None:
        self.send(kind, request_id, encode_json(message))

    def send_error(self, request_id: int, failure: Failure) -> None:
        message = {"code": failure.code, "message": failure.message, "path": failure.path}
        self.send_json(ERROR, request_id, message)

    def flush(self) -> None:
        self.writer.flush()


def encode_json(message: dict[str, Any]) -> bytes:
    # "replace" only ever touches text that came from the OS unchecked (error strings):
    # paths are checked for valid Unicode before they are sent.
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


# --- Request fields ------------------------------------------------------------------------


def required(fields: dict[str, Any], key: str, kind: type) -> Any:
    value = fields.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Failure("badRequest", f"the request needs {key!r} as {kind.__name__}")
    return value


def required_root(fields: dict[str, Any]) -> str:
    root = required(fields, "root", str)
    if not root.startswith("/") or "\x00" in root:
        raise Failure("badRequest", f"the sync root must be an absolute path, got {root!r}")
    return str(root)


def required_mode(fields: dict[str, Any]) -> int:
    mode = int(required(fields, "mode", int))
    if not 0 <= mode <= 0o7777:
        raise Failure("badRequest", f"mode {mode:o} is not a set of permission bits")
    return mode


def required_path(fields: dict[str, Any], key: str = "path") -> tuple[str, list[str]]:
    path = fields.get(key)
    return str(path), split_relative_path(path)


# --- Requests ------------------------------------------------------------------------------


def handle_hello(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": AGENT_VERSION,
        "protocol": PROTOCOL_VERSION,
        "python": platform.python_version(),
        "platform": sys.platform,
        "pid": os.getpid(),
        "uid": os.getuid(),
    }


def handle_ensure_root(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    existed = os.path.isdir(root)
    try:
        os.makedirs(root, 0o755, exist_ok=True)
    except FileExistsError:
        raise Failure("notDirectory", f"the sync root {root} is not a folder") from None
    return {"created": not existed}


class Scanner:
    """Walks a root without following symlinks and streams what it finds in ENTRIES frames."""

    def __init__(self, channel: Channel, request_id: int, with_digests: bool) -> None:
        self.channel = channel
        self.request_id = request_id
        self.with_digests = with_digests
        self.count = 0
        self.batch: list[list[Any]] = []
        self.batch_bytes = 0
        self.problems: list[dict[str, str]] = []

    def walk(self, root_fd: int) -> None:
        # Depth first with one open fd per level, so wide trees cannot exhaust fds.
        stack = [(root_fd, "", iter(self.list_folder(root_fd, "")))]
        try:
            while stack:
                folder_fd, prefix, subfolders = stack[-1]
                name = next(subfolders, None)
                if name is None:
                    stack.pop()
                    if folder_fd != root_fd:
                        os.close(folder_fd)
                    continue
                path = prefix + name
                try:
                    child_fd = os.open(name, FOLDER_FLAGS, dir_fd=folder_fd)
                except OSError as error:
                    self.problem(path, f"cannot open the folder: {error.strerror}")
                    continue
                stack.append((child_fd, path + "/", iter(self.list_folder(child_fd, path + "/"))))
        finally:
            for folder_fd, _, _ in stack:
                if folder_fd != root_fd:
                    os.close(folder_fd)

    def list_folder(self, folder_fd: int, prefix: str) -> list[str]:
        """Report the children of one folder; the names of its subfolders, to visit next."""
        try:
            with os.scandir(folder_fd) as listing:
                items = list(listing)
        except OSError as error:
            self.problem(prefix.rstrip("/") or ".", f"cannot list the folder: {error.strerror}")
            return []
        return [item.name for item in items if self.report(folder_fd, prefix, item)]

    def report(self, folder_fd: int, prefix: str, item: os.DirEntry[str]) -> bool:
        """Add one entry to the batch; True when it is a folder to walk into."""
        if item.name.startswith(TEMP_PREFIX):
            return False
        path = prefix + item.name
        if not is_utf8(path):
            shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            self.problem(shown, "skipped: the name is not valid UTF-8")
            return False
        try:
            found = item.stat(follow_symlinks=False)
        except OSError as error:
            self.problem(path, f"cannot read its metadata: {error.strerror}")
            return False
        kind, size, link_target, digest = "f", found.st_size, None, None
        if stat.S_ISDIR(found.st_mode):
            kind, size = "d", 0
        elif stat.S_ISLNK(found.st_mode):
            kind, link_target = "l", self.read_link(folder_fd, item.name, path)
            if link_target is None:
                return False
        elif not stat.S_ISREG(found.st_mode):
            self.problem(path, "skipped: not a regular file, folder or symlink")
            return False
        elif self.with_digests:
            digest = self.digest(folder_fd, item.name, path)
        mode = stat.S_IMODE(found.st_mode)
        self.add([path, kind, mode, size, found.st_mtime_ns, found.st_ino, link_target, digest])
        return kind == "d"

    def read_link(self, folder_fd: int, name: str, path: str) -> str | None:
        try:
            target = os.readlink(name, dir_fd=folder_fd)
        except OSError as error:
            self.problem(path, f"cannot read the symlink: {error.strerror}")
            return None
        if not is_utf8(target):
            self.problem(path, "skipped: the symlink target is not valid UTF-8")
            return None
        return target

    def digest(self, folder_fd: int, name: str, path: str) -> str | None:
        try:
            return digest_file(folder_fd, name)
        except OSError as error:
            self.problem(path, f"cannot read the file: {error.strerror}")
            return None

    def add(self, row: list[Any]) -> None:
        self.batch.append(row)
        self.count += 1
        self.batch_bytes += len(row[0]) + len(row[6] or "") + 128
        if len(self.batch) >= BATCH_ENTRIES or self.batch_bytes >= BATCH_BYTES:
            self.send_batch()

    def problem(self, path: str, message: str) -> None:
        self.problems.append({"path": path, "message": message})
        self.batch_bytes += len(path) + len(message) + 32
        if len(self.problems) >= BATCH_ENTRIES or self.batch_bytes >= BATCH_BYTES:
            self.send_batch()

    def send_batch(self) -> None:
        # Problems travel with the entries so a tree full of them never outgrows a frame.
        batch = {"entries": self.batch, "problems": self.problems}
        self.channel.send_json(ENTRIES, self.request_id, batch)
        self.batch, self.problems, self.batch_bytes = [], [], 0


def handle_scan(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        if not os.path.lexists(root):
            return {"count": 0, "missing": True, "problems": []}
        if not os.path.isdir(root):
            raise Failure("notDirectory", f"the sync root {root} is not a folder") from None
        raise
    scanner = Scanner(channel, request_id, bool(fields.get("hash")))
    try:
        scanner.walk(root_fd)
    finally:
        os.close(root_fd)
    if scanner.batch:
        # The last entries go in a frame of their own; the last problems ride on the OK.
        last_problems, scanner.problems = scanner.problems, []
        scanner.send_batch()
        scanner.problems = last_problems
    return {"count": scanner.count, "missing": False, "problems": scanner.problems}


def digest_file(dir_fd: int, name: str) -> str | None:
    """sha256 of a regular file's content; None when ``name`` is not a regular file."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        digest = hashlib.sha256()
        chunk = os.read(fd, READ_CHUNK)
        while chunk:
            digest.update(chunk)
            chunk = os.read(fd, READ_CHUNK)
        return digest.hexdigest()
    finally:
        os.close(fd)


def handle_hash(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    paths = fields.get("paths")
    if not isinstance(paths, list):
        raise Failure("badRequest", "the request needs 'paths' as a list")
    wanted = [(path, split_relative_path(path)) for path in paths]
    return {"digests": {path: digest_at(root, parts) for path, parts in wanted}}


def digest_at(root: str, parts: list[str]) -> str | None:
    try:
        with folder_of(root, parts, create=False) as folder_fd:
            return digest_file(folder_fd, parts[-1])
    except Failure as failure:
        if failure.code == "escape":
            raise
        return None
    except OSError:
        # Missing or unreadable: either way there is no content here to compare with.
        return None


class IncomingData:
    """The DATA frames that follow a WRITE, read as they are needed.

    An empty DATA frame before all ``size`` bytes arrived means the sender gave up.
    """

    def __init__(self, channel: Channel, request_id: int, size: int) -> None:
        self.channel = channel
        self.request_id = request_id
        self.remaining = size

    def chunks(self) -> Iterator[bytes]:
        while self.remaining > 0:
            chunk = self.next_chunk()
            if not chunk:
                raise Failure("cancelled", "the sender cancelled the write")
            yield chunk

    def next_chunk(self) -> bytes:
        kind, request_id, payload = self.channel.read_frame()
        if kind != DATA or request_id != self.request_id:
            raise ProtocolViolation(
                f"expected DATA for request {self.request_id}, "
                f"got message type {kind} for request {request_id}",
                self.request_id,
            )
        if len(payload) > self.remaining:
            raise ProtocolViolation("more DATA than the WRITE announced", self.request_id)
        self.remaining = self.remaining - len(payload) if payload else 0
        return payload

    def discard_rest(self) -> None:
        """Keep the stream in step after a failed write: read what was still coming."""
        while self.remaining > 0:
            self.next_chunk()


def handle_write(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    size = fields.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        # Without the size there is no telling where the DATA frames end.
        raise ProtocolViolation("a WRITE without a valid size", request_id)
    incoming = IncomingData(channel, request_id, size)
    try:
        return write_file(fields, incoming)
    except (ProtocolViolation, EndOfInput):
        raise
    except Exception:
        incoming.discard_rest()  # the frames still coming belong to this request
        raise


def write_file(fields: dict[str, Any], incoming: IncomingData) -> dict[str, Any]:
    root = required_root(fields)
    path, parts = required_path(fields)
    mode = required_mode(fields)
    mtime_ns = fields.get("mtime_ns")
    if mtime_ns is not None and (not isinstance(mtime_ns, int) or isinstance(mtime_ns, bool)):
        raise Failure("badRequest", "mtime_ns must be an integer", path)
    with folder_of(root, parts, create=True) as folder_fd:
        name = parts[-1]
        refuse_folder(folder_fd, name, path)
        temp = temp_name(name)
        fd = os.open(temp, NEW_FILE_FLAGS, 0o600, dir_fd=folder_fd)
        try:
            digest = hashlib.sha256()
            for chunk in incoming.chunks():
                digest.update(chunk)
                write_all(fd, chunk)
            os.fchmod(fd, mode)
            if mtime_ns is not None:
                # The source's own time: tools that trust size + mtime (Python's .pyc
                # check, make, a later quick rescan) must see an edit as an edit.
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            os.close(fd)
            fd = -1
            # No fsync: readers must never see a partial file, but a target that crashes
            # is synced again from scratch anyway, so durability is not worth its cost.
            os.replace(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder_fd)
            raise
    return {"digest": digest.hexdigest()}


def refuse_folder(folder_fd: int, name: str, path: str) -> None:
    found = lstat_or_none(folder_fd, name)
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise Failure("isDirectory", "a folder is in the way", path)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FileBytes:
    """Reads the concatenated contents of a WRITE_MANY one file at a time."""

    def __init__(self, incoming: IncomingData) -> None:
        self.incoming = incoming
        self.chunk = memoryview(b"")
        self.offset = 0

    def take(self, size: int) -> Iterator[memoryview]:
        """Exactly ``size`` bytes, in pieces as they arrived (views: no copying)."""
        while size > 0:
            if self.offset == len(self.chunk):
                self.chunk = memoryview(self.incoming.next_chunk())
                self.offset = 0
                if not self.chunk:
                    raise Failure("cancelled", "the sender cancelled the write")
            piece = self.chunk[self.offset : self.offset + size]
            self.offset += len(piece)
            size -= len(piece)
            yield piece


class FolderCache:
    """Folder fds of one WRITE_MANY, each reached from the root without symlinks once.

    A batch of hundreds of files in a few folders then costs one walk per folder instead
    of one per file.
    """

    LIMIT = 256

    def __init__(self, root: str) -> None:
        self.root_fd = open_root(root)
        self.fds: dict[tuple[str, ...], int] = {}

    def folder(self, parts: list[str]) -> int:
        key = tuple(parts)
        if not key:
            return self.root_fd
        found = self.fds.get(key)
        if found is None:
            if len(self.fds) >= self.LIMIT:
                self.close_folders()
            parent = self.folder(parts[:-1])
            found = open_child_folder(parent, parts[-1], True, "/".join(parts))
            self.fds[key] = found
        return found

    def close_folders(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def close(self) -> None:
        self.close_folders()
        os.close(self.root_fd)


def handle_write_many(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Many small files in one request: ``files`` is ``[[path, mode, size, mtime_ns], ...]``
    and the DATA frames carry their contents back to back. A file that cannot be written
    is reported in ``failed``; the others are still written."""
    files = write_many_listing(fields, request_id)
    incoming = IncomingData(channel, request_id, sum(size for _, _, size, _ in files))
    contents = FileBytes(incoming)
    failed: list[list[str]] = []
    try:
        folders = FolderCache(required_root(fields))
    except Exception:
        incoming.discard_rest()
        raise
    try:
        for path, mode, size, mtime_ns in files:
            pieces = contents.take(size)
            try:
                write_listed_file(folders, path, mode, mtime_ns, pieces)
            except (Failure, OSError) as error:
                for _ in pieces:  # the rest of this file's bytes, to stay in step
                    pass
                failure = (
                    error if isinstance(error, Failure) else failure_from_os_error(error, path)
                )
                if failure.code == "cancelled":
                    raise
                failed.append([path, failure.code, failure.message])
    finally:
        folders.close()
    return {"failed": failed}


def write_many_listing(fields: dict[str, Any], request_id: int) -> list[tuple[str, int, int, int]]:
    files = fields.get("files")
    listing: list[tuple[str, int, int, int]] = []
    if not isinstance(files, list):
        raise ProtocolViolation("a WRITE_MANY without a files list", request_id)
    for item in files:
        valid = (
            isinstance(item, list)
            and len(item) == 4
            and isinstance(item[0], str)
            and all(isinstance(n, int) and not isinstance(n, bool) for n in item[1:])
            and item[2] >= 0
        )
        if not valid:
            # Without every size there is no telling where each file's bytes end.
            raise ProtocolViolation("a WRITE_MANY with a malformed file entry", request_id)
        listing.append((item[0], item[1], item[2], item[3]))
    return listing


def write_listed_file(
    folders: FolderCache, path: str, mode: int, mtime_ns: int, pieces: Iterator[memoryview]
) -> None:
    parts = split_relative_path(path)
    if not 0 <= mode <= 0o7777:
        raise Failure("badRequest", "mode must be permission bits", path)
    folder_fd = folders.folder(parts[:-1])
    name = parts[-1]
    temp = temp_name(name)
    # umask is 0 here, so the mode given at creation is exact: no separate chmod.
    fd = os.open(temp, NEW_FILE_FLAGS, mode, dir_fd=folder_fd)
    try:
        for piece in pieces:
            write_all(fd, piece)
        os.utime(fd, ns=(mtime_ns, mtime_ns))
        os.close(fd)
        fd = -1
        try:
            os.replace(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except IsADirectoryError:
            raise Failure("isDirectory", "a folder is in the way", path) from None
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=folder_fd)
        raise


def handle_delete(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    path, parts = required_path(fields)
    recursive = bool(fields.get("recursive"))
    try:
        with folder_of(root, parts, create=False) as folder_fd:
            return {"existed": delete_entry(folder_fd, parts[-1], recursive, path)}
    except Failure as failure:
        if failure.code in ("notFound", "notDirectory"):
            return {"existed": False}
        raise


def delete_entry(folder_fd: int, name: str, recursive: bool, path: str) -> bool:
    found = lstat_or_none(folder_fd, name)
    if found is None:
        return False
    if not stat.S_ISDIR(found.st_mode):
        os.unlink(name, dir_fd=folder_fd)  # a symlink goes as a link
    elif recursive:
        remove_tree(folder_fd, name)
    else:
        try:
            os.rmdir(name, dir_fd=folder_fd)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise Failure("notEmpty", "the folder is not empty", path) from None
            raise
    return True


def remove_tree(parent_fd: int, name: str) -> None:
    """Remove a folder and everything below it, never following a symlink.

    Iterative, with one open fd per level, so deep trees need neither recursion nor
    one fd per folder.
    """
    top_fd = os.open(name, FOLDER_FLAGS, dir_fd=parent_fd)
    # (fd of the folder that holds it, its name, its own fd, subfolders still to remove)
    stack = [(parent_fd, name, top_fd, iter(unlink_all_but_folders(top_fd)))]
    try:
        while stack:
            holder_fd, folder_name, folder_fd, subfolders = stack[-1]
            child = next(subfolders, None)
            if child is None:
                stack.pop()
                os.close(folder_fd)
                os.rmdir(folder_name, dir_fd=holder_fd)
                continue
            child_fd = os.open(child, FOLDER_FLAGS, dir_fd=folder_fd)
            stack.append((folder_fd, child, child_fd, iter(unlink_all_but_folders(child_fd))))
    finally:
        for _, _, folder_fd, _ in stack:
            os.close(folder_fd)


def unlink_all_but_folders(folder_fd: int) -> list[str]:
    """Remove every non-folder in a folder; the names of its subfolders."""
    with os.scandir(folder_fd) as listing:
        items = list(listing)
    subfolders = []
    for item in items:
        if item.is_dir(follow_symlinks=False):
            subfolders.append(item.name)
        else:
            os.unlink(item.name, dir_fd=folder_fd)
    return subfolders


def handle_mkdir(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    path, parts = required_path(fields)
    mode = required_mode(fields)
    with folder_of(root, parts, create=True) as folder_fd:
        name = parts[-1]
        try:
            os.mkdir(name, mode, dir_fd=folder_fd)
        except FileExistsError:
            found = os.lstat(name, dir_fd=folder_fd)
            if not stat.S_ISDIR(found.st_mode):
                message = "something other than a folder is in the way"
                raise Failure("exists", message, path) from None
        # Also after a fresh mkdir: the umask and setgid inheritance may have changed the bits.
        chmod_no_follow(folder_fd, name, mode, path)
    return {}


def handle_symlink(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    path, parts = required_path(fields)
    target = check_link_target(parts, fields.get("target"), path)
    with folder_of(root, parts, create=True) as folder_fd:
        name = parts[-1]
        refuse_folder(folder_fd, name, path)
        temp = temp_name(name)
        os.symlink(target, temp, dir_fd=folder_fd)
        try:
            os.replace(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder_fd)
            raise
    return {}


def handle_chmod(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    path, parts = required_path(fields)
    mode = required_mode(fields)
    with folder_of(root, parts, create=False) as folder_fd:
        chmod_no_follow(folder_fd, parts[-1], mode, path)
    return {}


def handle_rename(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    source, source_parts = required_path(fields, "src")
    _, destination_parts = required_path(fields, "dst")
    with folder_of(root, source_parts, create=False) as source_fd:
        if lstat_or_none(source_fd, source_parts[-1]) is None:
            raise Failure("notFound", "there is nothing to rename", source)
        with folder_of(root, destination_parts, create=True) as destination_fd:
            os.replace(
                source_parts[-1],
                destination_parts[-1],
                src_dir_fd=source_fd,
                dst_dir_fd=destination_fd,
            )
    return {}


HANDLERS = {
    HELLO: handle_hello,
    SCAN: handle_scan,
    HASH: handle_hash,
    WRITE: handle_write,
    DELETE: handle_delete,
    MKDIR: handle_mkdir,
    SYMLINK: handle_symlink,
    CHMOD: handle_chmod,
    RENAME: handle_rename,
    ENSURE_ROOT: handle_ensure_root,
    WRITE_MANY: handle_write_many,
}


# --- Serving -------------------------------------------------------------------------------


def decode_request(payload: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(payload.decode("utf-8")) if payload else {}
    except ValueError:
        raise Failure("badRequest", "the request is not UTF-8 JSON") from None
    if not isinstance(fields, dict):
        raise Failure("badRequest", "the request is not a JSON object")
    return fields


def decode_fields(kind: int, request_id: int, payload: bytes) -> dict[str, Any]:
    try:
        return decode_request(payload)
    except Failure:
        if kind in (WRITE, WRITE_MANY):
            # Its DATA frames follow, and without the size there is no skipping them.
            raise ProtocolViolation("a WRITE request that cannot be read", request_id) from None
        raise


def answer(channel: Channel, kind: int, request_id: int, payload: bytes) -> None:
    """Carry out one request and send its one OK or ERROR reply."""
    handler = HANDLERS.get(kind)
    if handler is None:
        message = f"unknown request type {kind}"
        channel.send_error(request_id, Failure("unknownRequest", message))
        return
    fields: dict[str, Any] = {}
    try:
        fields = decode_fields(kind, request_id, payload)
        result = handler(channel, request_id, fields)
    except Failure as failure:
        if failure.path is None:
            failure.path = request_path(fields)
        channel.send_error(request_id, failure)
    except OSError as error:
        channel.send_error(request_id, failure_from_os_error(error, request_path(fields)))
    except (ProtocolViolation, EndOfInput):
        raise
    except Exception as error:  # a bug here must not take the whole sync down with it
        traceback.print_exc(file=sys.stderr)
        message = f"internal error: {type(error).__name__}: {error}"
        channel.send_error(request_id, Failure("internal", message, request_path(fields)))
    else:
        channel.send_json(OK, request_id, result)


def request_path(fields: dict[str, Any]) -> str | None:
    path = fields.get("path", fields.get("src"))
    return path if isinstance(path, str) else None


def serve(channel: Channel) -> None:
    """Answer requests strictly in order until the input ends."""
    while True:
        try:
            kind, request_id, payload = channel.read_frame()
        except EndOfInput:
            return
        try:
            answer(channel, kind, request_id, payload)
        except EndOfInput:
            return
        channel.flush()


def stop_on_signal(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the handlers, so temporary files are removed on the way.
    raise SystemExit(0)


F_SETPIPE_SZ = 1031  # Linux; not named in the fcntl module of older Pythons
INPUT_PIPE_SIZE = 1024 * 1024


def widen_input_pipe() -> None:
    """Ask for a 1 MiB input pipe: bulk file data then arrives in far fewer reads.

    Only a pipe can be widened (a container runtime usually gives one); anything else, or a
    system that refuses, keeps what it has.
    """
    try:
        import fcntl

        if stat.S_ISFIFO(os.fstat(0).st_mode):
            fcntl.fcntl(0, F_SETPIPE_SZ, INPUT_PIPE_SIZE)
    except (ImportError, OSError):
        pass


def main() -> None:
    signal.signal(signal.SIGTERM, stop_on_signal)
    # Modes come from the daemon and are applied exactly, not filtered by a umask.
    os.umask(0)
    widen_input_pipe()
    channel = Channel(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout = sys.stderr  # a stray print must never corrupt the frame stream
    try:
        serve(channel)
    except ProtocolViolation as violation:
        sys.stderr.write(f"podlink agent: protocol error, exiting: {violation}\n")
        with contextlib.suppress(OSError):
            channel.send_error(violation.request_id, Failure("protocol", str(violation)))
            channel.flush()
        raise SystemExit(2) from None
    except BrokenPipeError:
        # The daemon went away. Point stdout at /dev/null so the final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, channel.writer.fileno())


if __name__ == "__main__":
    main()
