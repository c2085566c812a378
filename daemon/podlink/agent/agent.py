"""podlink's agent: does all file work inside the target, over one framed byte stream.

The daemon starts it with a short bootstrap (see ``podlink.agent.client.BOOTSTRAP``) that
reads this file's source from standard input and runs ``main()``: the source always comes
from the daemon, and only its compiled form is kept in the target, in a folder private to the
user and named by the source's hash, so a stale copy can never be used. ``python agent.py``
runs it directly as well.

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
import select
import signal
import stat
import struct
import sys
import threading
import time
import traceback
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

# --- Protocol constants. podlink.agent.wire holds the same values; a test keeps them equal.

AGENT_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
HEADER_FORMAT = ">IBI"  # payload length, message type, request id
MAX_PAYLOAD = 4 * 1024 * 1024
TEMP_PREFIX = ".podlink-tmp-"  # podlink.sync.core.names.TEMP_PREFIX; a test keeps them equal

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
READ = 13
WATCH = 14
UNWATCH = 15
OK = 64
ERROR = 65
ENTRIES = 66
CHANGES = 67

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


def open_child_folder(
    parent_fd: int, name: str, create: bool, shown: str, owner: tuple[int, int] | None = None
) -> int:
    """Open the folder ``name`` inside ``parent_fd`` without following a symlink there.

    ``shown`` is the path of that folder relative to the root, for messages. A folder made
    here is given to ``owner``.
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
    else:
        give_to(owner, parent_fd, name)
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
def folder_of(
    root: str, parts: list[str], create: bool, expected: Expected | None = None
) -> Iterator[int]:
    """An fd of the folder holding ``parts[-1]``, reached from the root without symlinks.

    With ``create``, missing folders on the way are made (mode 0o755, given to the root's
    owner), unless ``expected`` says something is there already: then a missing folder
    means that it is gone, Failure ``changed``.
    """
    fd = open_root(root)
    owner = OWNERS.get(root)
    try:
        for depth in range(len(parts) - 1):
            child = open_folder_on_the_way(fd, parts, depth, create, owner, expected)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def open_folder_on_the_way(
    parent_fd: int,
    parts: list[str],
    depth: int,
    create: bool,
    owner: tuple[int, int] | None,
    expected: Expected | None,
) -> int:
    """Open ``parts[depth]``, a folder on the way to ``parts[-1]``, as ``folder_of`` does."""
    shown = "/".join(parts[: depth + 1])
    may_create = create and may_make_parents(expected)
    try:
        return open_child_folder(parent_fd, parts[depth], may_create, shown, owner)
    except Failure as failure:
        if failure.code in ("notFound", "notDirectory") and not may_make_parents(expected):
            message = "the target changed: nothing is there now"
            raise Failure("changed", message, "/".join(parts)) from None
        raise


def lstat_or_none(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def temp_name(name: str) -> str:
    """A fresh temporary name beside ``name``, still within the file system's name limit."""
    # The writer's pid in the name lets a later agent tell a dead agent's leftover apart.
    prefix = f"{TEMP_PREFIX}{WRITER}-{os.urandom(4).hex()}-"
    room = NAME_MAX - len(prefix.encode("ascii"))
    shortened = name.encode("utf-8")[:room].decode("utf-8", "ignore")
    return prefix + shortened


def process_start(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot); "gone", or "" where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return "gone"
    except (OSError, IndexError):
        return ""
    return fields[19].decode("ascii", "replace") if len(fields) > 19 else ""


# Who writes this agent's temporary files: the pid and its start time, because a container
# that restarts hands out the same pids again.
WRITER = f"{os.getpid()}.{process_start(os.getpid())}"


def writer_is_gone(temporary: str) -> bool:
    """Whether the agent that named ``temporary`` (``temp_name``) no longer runs."""
    writer = temporary[len(TEMP_PREFIX) :].split("-", 1)[0]
    pid_text, _, started = writer.partition(".")
    if not pid_text.isdigit() or writer == WRITER:
        return False
    now = process_start(int(pid_text))
    if now == "gone":
        return True
    return bool(started and now and now != started)  # the pid was handed out again


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


# --- Ownership -------------------------------------------------------------------------------

# (uid, gid) for everything made below a root, as ENSURE_ROOT set it; -1 keeps that id as the
# agent created it. The agent serves one daemon for its whole life, so this lives as long.
OWNERS: dict[str, tuple[int, int]] = {}


def give_to(owner: tuple[int, int] | None, dir_fd: int | None, name: str) -> None:
    """Hand ``name`` (a link itself, never what it points to) to ``owner``, if there is one."""
    if owner is not None:
        os.chown(name, owner[0], owner[1], dir_fd=dir_fd, follow_symlinks=False)


def resolve_owner(spec: object) -> tuple[int, int]:
    """``user``, ``user:group``, ``uid`` or ``uid:gid`` as ids, looked up in this target."""
    import grp
    import pwd

    if not isinstance(spec, str) or not spec or spec.count(":") > 1:
        raise Failure("badRequest", f"owner must be 'user' or 'user:group', got {spec!r}")
    user, _, group = spec.partition(":")
    if user.isdigit():
        uid = int(user)
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = -1  # a bare uid with no account here: the group stays as created
    else:
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            message = f"the owner {spec!r} names user {user!r}, which does not exist in the target"
            raise Failure("badRequest", message) from None
        uid, gid = account.pw_uid, account.pw_gid
    if group.isdigit():
        gid = int(group)
    elif group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            message = (
                f"the owner {spec!r} names group {group!r}, which does not exist in the target"
            )
            raise Failure("badRequest", message) from None
    return uid, gid


def check_may_give_away(uid: int, gid: int, spec: str) -> None:
    """Refuse up front an owner this process could never hand files to.

    Only root may give files away; anyone may keep their own uid and pick one of their groups.
    """
    if os.geteuid() == 0:
        return
    if uid in (-1, os.geteuid()) and gid in (-1, os.getegid(), *os.getgroups()):
        return
    raise Failure(
        "permissionDenied",
        f"cannot give files to {spec!r}: the agent runs as uid {os.geteuid()}, and only root "
        "can give files away; run the container as root or drop 'owner'",
    )


# --- Framing ---------------------------------------------------------------------------------


class Channel:
    """Frames over a pair of binary streams.

    Sending is locked: the watcher thread sends CHANGES while the main loop answers requests.
    """

    def __init__(self, reader: IO[bytes], writer: IO[bytes]) -> None:
        self.reader = reader
        self.writer = writer
        self.send_lock = threading.Lock()

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

    def send(self, kind: int, request_id: int, payload: bytes, flush: bool = False) -> None:
        with self.send_lock:
            self.writer.write(HEADER.pack(len(payload), kind, request_id))
            self.writer.write(payload)
            if flush:
                self.writer.flush()

    def send_json(
        self, kind: int, request_id: int, message: dict[str, Any], flush: bool = False
    ) -> None:
        self.send(kind, request_id, encode_json(message), flush)

    def send_error(self, request_id: int, failure: Failure) -> None:
        message = {"code": failure.code, "message": failure.message, "path": failure.path}
        self.send_json(ERROR, request_id, message)

    def flush(self) -> None:
        with self.send_lock:
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


# --- Preconditions -------------------------------------------------------------------------

KIND_NAMES = {
    "f": "a file",
    "d": "a folder",
    "l": "a symlink",
    None: "nothing",
    "?": "a special file",
}


class Expected:
    """A precondition on one path: what must be there right before a change replaces it.

    Two-way sync sends one so an edit made in the target after the daemon looked is never
    overwritten. ``kind`` None means nothing may be there; a file must also keep its size
    and mtime; for folders and links the kind is enough.
    """

    def __init__(self, kind: str | None, size: int = 0, mtime_ns: int = 0) -> None:
        self.kind = kind
        self.size = size
        self.mtime_ns = mtime_ns

    @classmethod
    def parse(cls, value: object, path: str | None) -> Expected:
        if value is None:
            return cls(None)
        valid = (
            isinstance(value, list)
            and len(value) == 3
            and value[0] in ("f", "d", "l")
            and all(isinstance(n, int) and not isinstance(n, bool) for n in value[1:])
        )
        if not valid:
            raise Failure("badRequest", "expect must be null or [kind, size, mtime_ns]", path)
        assert isinstance(value, list)
        return cls(value[0], value[1], value[2])

    def check(self, dir_fd: int, name: str, path: str) -> None:
        """Failure ``changed`` unless ``name`` in ``dir_fd`` is what was expected."""
        found = lstat_or_none(dir_fd, name)
        kind = None if found is None else kind_of(found.st_mode)
        if kind != self.kind:
            found_name, expected_name = KIND_NAMES[kind], KIND_NAMES[self.kind]
            message = f"the target changed: {found_name} is there now, where {expected_name} was"
            raise Failure("changed", message, path)
        if found is not None and kind == "f":
            now = (found.st_size, found.st_mtime_ns)
            if now != (self.size, self.mtime_ns):
                message = (
                    f"the target changed: the file now has size {now[0]} and mtime_ns {now[1]}, "
                    f"where it had {self.size} and {self.mtime_ns}"
                )
                raise Failure("changed", message, path)


def expectation(fields: dict[str, Any], key: str = "expect") -> Expected | None:
    """The request's precondition under ``key``; None when it asks for no check."""
    if key not in fields:
        return None
    return Expected.parse(fields[key], request_path(fields))


def check_expected(expected: Expected | None, dir_fd: int, name: str, path: str) -> None:
    if expected is not None:
        expected.check(dir_fd, name, path)


def may_make_parents(expected: Expected | None) -> bool:
    """Whether missing folders on the way may be made: not when something is expected there."""
    return expected is None or expected.kind is None


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    return "l" if stat.S_ISLNK(mode) else "?"


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
    """Make the root; with ``owner``, everything the agent makes below it is given to them."""
    root = required_root(fields)
    owner = None
    if fields.get("owner") is not None:
        owner = resolve_owner(fields["owner"])
        check_may_give_away(owner[0], owner[1], fields["owner"])
    existed = os.path.isdir(root)
    try:
        os.makedirs(root, 0o755, exist_ok=True)
    except FileExistsError:
        raise Failure("notDirectory", f"the sync root {root} is not a folder") from None
    except NotADirectoryError:
        above = os.path.dirname(root)
        while above != os.path.dirname(above) and not os.path.isfile(above):
            above = os.path.dirname(above)
        raise Failure(
            "notDirectory", f"the sync root {root} cannot be made: {above} is a file"
        ) from None
    if owner is None:
        OWNERS.pop(root, None)
        return {"created": not existed}
    if not existed:
        give_to(owner, None, root)  # only a root it made: an existing one belongs to the image
    OWNERS[root] = owner
    return {"created": not existed}


class TreeWalker:
    """Walks a folder without following symlinks and turns what it finds into entry rows.

    Subclasses decide what becomes of each row (``add``) and each problem (``problem``).
    """

    def __init__(self, with_digests: bool) -> None:
        self.with_digests = with_digests

    def add(self, row: list[Any]) -> None:
        raise NotImplementedError

    def problem(self, path: str, message: str) -> None:
        raise NotImplementedError

    def found_temporary(self, folder_fd: int, name: str) -> None:
        """A temporary file of an agent's write; never reported."""

    def walk(self, root_fd: int, top: str = "") -> None:
        """Everything below ``root_fd``, which is the folder ``top`` ("" for the root)."""
        # Depth first with one open fd per level, so wide trees cannot exhaust fds.
        prefix = top + "/" if top else ""
        stack = [(root_fd, prefix, iter(self.list_folder(root_fd, prefix)))]
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
            self.found_temporary(folder_fd, item.name)
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


class Scanner(TreeWalker):
    """A SCAN: streams the rows of a walk in ENTRIES frames."""

    def found_temporary(self, folder_fd: int, name: str) -> None:
        """Remove a temporary file an agent that was killed left half-written."""
        if not writer_is_gone(name):
            return
        try:
            os.unlink(name, dir_fd=folder_fd)
        except OSError:
            pass

    def __init__(self, channel: Channel, request_id: int, with_digests: bool) -> None:
        super().__init__(with_digests)
        self.channel = channel
        self.request_id = request_id
        self.count = 0
        self.batch: list[list[Any]] = []
        self.batch_bytes = 0
        self.problems: list[dict[str, str]] = []

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
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return None
        digest = DIGESTS.get(before)
        if digest is None:
            digest = hash_content(fd)
            DIGESTS.put(before, os.fstat(fd), digest)
        return digest
    finally:
        os.close(fd)


def hash_content(fd: int) -> str:
    digest = hashlib.sha256()
    chunk = os.read(fd, READ_CHUNK)
    while chunk:
        digest.update(chunk)
        chunk = os.read(fd, READ_CHUNK)
    return digest.hexdigest()


class DigestCache:
    """Digests of files hashed before, reused while the file's inode, size, mtime and ctime stay.

    A rescan then reads only files that changed. ctime on top of rsync's size and mtime:
    tools that put an old mtime back after writing (cp -p, tar, rsync -t) cannot do that to
    ctime, so such an edit is still seen. Packed, as a tree may hold hundreds of thousands
    of files: about 18 MB per 100 000. Once full it keeps what it has, since evicting the
    oldest would miss every time on a tree scanned in the same order each time.
    """

    LIMIT = 200_000
    VERSION = struct.Struct(">qqq")  # size, mtime_ns, ctime_ns

    def __init__(self) -> None:
        self.known: dict[int, bytes] = {}

    def get(self, found: os.stat_result) -> str | None:
        known = self.known.get(self.key(found))
        if known is None or known[: self.VERSION.size] != self.version(found):
            return None
        return known[self.VERSION.size :].hex()

    def put(self, before: os.stat_result, after: os.stat_result, digest: str) -> None:
        """Remember ``digest`` unless the file changed while it was being read."""
        version = self.version(before)
        key = self.key(before)
        if version != self.version(after):
            return
        if len(self.known) < self.LIMIT or key in self.known:
            self.known[key] = version + bytes.fromhex(digest)

    @staticmethod
    def key(found: os.stat_result) -> int:
        return found.st_dev << 64 | found.st_ino

    def version(self, found: os.stat_result) -> bytes:
        return self.VERSION.pack(found.st_size, found.st_mtime_ns, found.st_ctime_ns)


# Lives as long as the agent, which serves one daemon for its whole life.
DIGESTS = DigestCache()


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


def handle_read(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Send a regular file's bytes in DATA frames; Failure ``changed`` if it changed meanwhile."""
    root = required_root(fields)
    path, parts = required_path(fields)
    with folder_of(root, parts, create=False) as folder_fd:
        fd = open_regular_file(folder_fd, parts[-1], path)
        try:
            before = os.fstat(fd)
            digest = hashlib.sha256()
            remaining = before.st_size
            while remaining > 0:  # never past the size it had: a growing file must not stream on
                chunk = os.read(fd, min(READ_CHUNK, remaining))
                if not chunk:
                    break
                digest.update(chunk)
                channel.send(DATA, request_id, chunk)
                remaining -= len(chunk)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        now = lstat_or_none(folder_fd, parts[-1])  # replaced by a rename meanwhile?
    unchanged = now is not None and file_version(before) == file_version(after) == file_version(now)
    if remaining or not unchanged:
        raise Failure("changed", "the file changed while it was being read", path)
    hex_digest = digest.hexdigest()
    DIGESTS.put(before, after, hex_digest)
    mode = stat.S_IMODE(before.st_mode)
    return {
        "size": before.st_size,
        "mode": mode,
        "mtime_ns": before.st_mtime_ns,
        "digest": hex_digest,
    }


def file_version(found: os.stat_result) -> tuple[int, int, int]:
    return found.st_size, found.st_mtime_ns, found.st_ino


def open_regular_file(folder_fd: int, name: str, path: str) -> int:
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=folder_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise Failure("isSymlink", "a symlink has no content to read", path) from None
        raise
    kind = kind_of(os.fstat(fd).st_mode)
    if kind != "f":
        os.close(fd)
        if kind == "d":
            raise Failure("isDirectory", "a folder has no content to read", path)
        raise Failure("invalid", "not a regular file", path)
    return fd


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
    expected = expectation(fields)
    owner = OWNERS.get(root)
    with folder_of(root, parts, create=True, expected=expected) as folder_fd:
        name = parts[-1]
        check_expected(expected, folder_fd, name, path)  # early too: the clearer error
        refuse_folder(folder_fd, name, path)
        temp = temp_name(name)
        fd = os.open(temp, NEW_FILE_FLAGS, 0o600, dir_fd=folder_fd)
        try:
            digest = hashlib.sha256()
            size = 0
            for chunk in incoming.chunks():
                digest.update(chunk)
                write_keeping_holes(fd, chunk, size)
                size += len(chunk)
            os.ftruncate(fd, size)  # the length, should the file end in a hole
            if owner is not None:
                os.fchown(fd, *owner)  # before fchmod: a chown clears setuid and setgid bits
            os.fchmod(fd, mode)
            if mtime_ns is not None:
                # The source's own time: tools that trust size + mtime (Python's .pyc
                # check, make, a later quick rescan) must see an edit as an edit.
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            os.close(fd)
            fd = -1
            # No fsync: readers must never see a partial file, but a target that crashes
            # is synced again from scratch anyway, so durability is not worth its cost.
            check_expected(expected, folder_fd, name, path)
            remember_own_write(root, path, size, mtime_ns)
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


HOLE_BLOCK = 4096
ZERO_BLOCK = bytes(HOLE_BLOCK)


def write_keeping_holes(fd: int, chunk: bytes, offset: int) -> None:
    """Write ``chunk`` (which starts at ``offset`` in the file) at the file's position,
    seeking over its whole blocks of zeros instead: where the file system can, they stay
    holes, so a sparse file (a disk image, a database's preallocated file) takes no more
    room in the target than in the workspace. The bytes read back are the same either way.
    """
    start, end = 0, len(chunk)
    while start < end:
        found = chunk.find(ZERO_BLOCK, start)
        if found < 0:
            break
        aligned = found + (-(offset + found)) % HOLE_BLOCK
        if aligned + HOLE_BLOCK > end:
            break
        run = aligned
        while run + HOLE_BLOCK <= end and chunk[run : run + HOLE_BLOCK] == ZERO_BLOCK:
            run += HOLE_BLOCK
        if run == aligned:  # the zeros were not on a block boundary
            write_all(fd, memoryview(chunk)[start : aligned + HOLE_BLOCK])
            start = aligned + HOLE_BLOCK
            continue
        write_all(fd, memoryview(chunk)[start:aligned])
        os.lseek(fd, run - aligned, os.SEEK_CUR)
        start = run
    write_all(fd, memoryview(chunk)[start:end])


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

    def __init__(self, root: str, create: bool = True) -> None:
        self.root_fd = open_root(root)
        self.root = root
        self.create = create
        self.owner = OWNERS.get(root)
        self.fds: dict[tuple[str, ...], int] = {}

    def folder(self, parts: list[str], expected: Expected | None = None) -> int:
        """An fd of the folder holding ``parts[-1]``, as ``folder_of`` would give it."""
        if len(self.fds) + len(parts) > self.LIMIT:
            self.close_folders()
        fd = self.root_fd
        for depth in range(len(parts) - 1):
            key = tuple(parts[: depth + 1])
            if key not in self.fds:
                self.fds[key] = open_folder_on_the_way(
                    fd, parts, depth, self.create, self.owner, expected
                )
            fd = self.fds[key]
        return fd

    def close_folders(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def close(self) -> None:
        self.close_folders()
        os.close(self.root_fd)


def handle_write_many(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Many small files in one request: ``files`` is ``[[path, mode, size, mtime_ns,
    expect?], ...]`` and the DATA frames carry their contents back to back. A file that
    cannot be written is reported in ``failed``; the others are still written."""
    files = write_many_listing(fields, request_id)
    incoming = IncomingData(channel, request_id, sum(file[2] for file in files))
    contents = FileBytes(incoming)
    failed: list[list[str]] = []
    try:
        folders = FolderCache(required_root(fields))
    except Exception:
        incoming.discard_rest()
        raise
    try:
        for path, mode, size, mtime_ns, expect in files:
            pieces = contents.take(size)
            try:
                expected = Expected.parse(expect[0], path) if expect else None
                write_listed_file(folders, path, mode, mtime_ns, pieces, expected)
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


def write_many_listing(
    fields: dict[str, Any], request_id: int
) -> list[tuple[str, int, int, int, list[Any]]]:
    """Each file as ``(path, mode, size, mtime_ns, [expect] or [])``."""
    files = fields.get("files")
    listing: list[tuple[str, int, int, int, list[Any]]] = []
    if not isinstance(files, list):
        raise ProtocolViolation("a WRITE_MANY without a files list", request_id)
    for item in files:
        valid = (
            isinstance(item, list)
            and len(item) in (4, 5)
            and isinstance(item[0], str)
            and all(isinstance(n, int) and not isinstance(n, bool) for n in item[1:4])
            and item[2] >= 0
        )
        if not valid:
            # Without every size there is no telling where each file's bytes end.
            raise ProtocolViolation("a WRITE_MANY with a malformed file entry", request_id)
        listing.append((item[0], item[1], item[2], item[3], item[4:]))
    return listing


def write_listed_file(
    folders: FolderCache,
    path: str,
    mode: int,
    mtime_ns: int,
    pieces: Iterator[memoryview],
    expected: Expected | None,
) -> None:
    parts = split_relative_path(path)
    if not 0 <= mode <= 0o7777:
        raise Failure("badRequest", "mode must be permission bits", path)
    folder_fd = folders.folder(parts, expected)
    name = parts[-1]
    temp = temp_name(name)
    # umask is 0 here, so the mode given at creation is exact: no separate chmod.
    fd = os.open(temp, NEW_FILE_FLAGS, mode, dir_fd=folder_fd)
    size = 0
    try:
        for piece in pieces:
            write_all(fd, piece)
            size += len(piece)
        if folders.owner is not None:
            os.fchown(fd, *folders.owner)
            os.fchmod(fd, mode)  # the chown cleared any setuid and setgid bits
        os.utime(fd, ns=(mtime_ns, mtime_ns))
        os.close(fd)
        fd = -1
        check_expected(expected, folder_fd, name, path)
        remember_own_write(folders.root, path, size, mtime_ns)
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
    expected = expectation(fields)
    try:
        with folder_of(root, parts, create=False, expected=expected) as folder_fd:
            check_expected(expected, folder_fd, parts[-1], path)
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
    expected = expectation(fields)
    with folder_of(root, parts, create=True, expected=expected) as folder_fd:
        name = parts[-1]
        check_expected(expected, folder_fd, name, path)
        try:
            os.mkdir(name, mode, dir_fd=folder_fd)
        except FileExistsError:
            found = os.lstat(name, dir_fd=folder_fd)
            if not stat.S_ISDIR(found.st_mode):
                message = "something other than a folder is in the way"
                raise Failure("exists", message, path) from None
        else:
            give_to(OWNERS.get(root), folder_fd, name)
        # Also after a fresh mkdir: the umask and setgid inheritance may have changed the bits.
        chmod_no_follow(folder_fd, name, mode, path)
    return {}


def handle_symlink(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    path, parts = required_path(fields)
    target = check_link_target(parts, fields.get("target"), path)
    expected = expectation(fields)
    with folder_of(root, parts, create=True, expected=expected) as folder_fd:
        name = parts[-1]
        check_expected(expected, folder_fd, name, path)
        refuse_folder(folder_fd, name, path)
        temp = temp_name(name)
        os.symlink(target, temp, dir_fd=folder_fd)
        try:
            give_to(OWNERS.get(root), folder_fd, temp)
            check_expected(expected, folder_fd, name, path)
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
    expected = expectation(fields)
    with folder_of(root, parts, create=False, expected=expected) as folder_fd:
        check_expected(expected, folder_fd, parts[-1], path)
        chmod_no_follow(folder_fd, parts[-1], mode, path)
    return {}


def handle_rename(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    root = required_root(fields)
    source, source_parts = required_path(fields, "src")
    destination, destination_parts = required_path(fields, "dst")
    expected, expected_destination = expectation(fields), expectation(fields, "expect_dst")
    with folder_of(root, source_parts, create=False, expected=expected) as source_fd:
        check_expected(expected, source_fd, source_parts[-1], source)
        if lstat_or_none(source_fd, source_parts[-1]) is None:
            raise Failure("notFound", "there is nothing to rename", source)
        with folder_of(
            root, destination_parts, create=True, expected=expected_destination
        ) as destination_fd:
            check_expected(expected_destination, destination_fd, destination_parts[-1], destination)
            os.replace(
                source_parts[-1],
                destination_parts[-1],
                src_dir_fd=source_fd,
                dst_dir_fd=destination_fd,
            )
    return {}


# --- Watching --------------------------------------------------------------------------------

# inotify(7) event bits.
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
IN_DONT_FOLLOW = 0x2000000
IN_ISDIR = 0x40000000
WATCH_MASK = (
    IN_CREATE
    | IN_DELETE
    | IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_ATTRIB
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_DONT_FOLLOW
    | IN_ONLYDIR
)
INOTIFY_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows
EVENT_BUFFER = 64 * 1024
# A batch of changes goes out once no event came for QUIET seconds, or LATEST seconds after
# its first event: an editor's save (temp file, rename, chmod) then arrives as one report.
QUIET = 0.005
LATEST = 0.05
DEFAULT_POLL_INTERVAL_MS = 500


class UsePolling(Exception):
    """inotify cannot (or can no longer) watch the root; the message says why, for the user."""


class Inotify:
    """The kernel's inotify, through ctypes: the standard library has no binding for it."""

    def __init__(self) -> None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            init, self.add_watch, self.rm_watch = (
                libc.inotify_init1,
                libc.inotify_add_watch,
                libc.inotify_rm_watch,
            )
        except (ImportError, OSError, AttributeError) as error:
            raise UsePolling(f"inotify is not available in the target ({error})") from None
        self.get_errno = ctypes.get_errno
        self.add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self.rm_watch.argtypes = (ctypes.c_int, ctypes.c_int)
        self.fd = int(init(os.O_NONBLOCK | os.O_CLOEXEC))
        if self.fd < 0:
            code = self.get_errno()
            if code == errno.EMFILE:
                raise UsePolling(
                    "the target's limit of inotify instances is reached; raise the sysctl "
                    "fs.inotify.max_user_instances"
                )
            raise UsePolling(f"inotify cannot start in the target: {os.strerror(code)}")

    def add(self, path: str) -> int:
        wd = int(self.add_watch(self.fd, os.fsencode(path), WATCH_MASK))
        if wd < 0:
            code = self.get_errno()
            raise OSError(code, os.strerror(code))
        return wd

    def remove(self, wd: int) -> None:
        self.rm_watch(self.fd, wd)  # fails only for a watch the kernel dropped already

    def close(self) -> None:
        os.close(self.fd)


def parse_events(buffer: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(watch descriptor, mask, name) of each inotify event in ``buffer``."""
    offset = 0
    while offset + INOTIFY_EVENT.size <= len(buffer):
        wd, mask, _, length = INOTIFY_EVENT.unpack_from(buffer, offset)
        offset += INOTIFY_EVENT.size
        yield wd, mask, buffer[offset : offset + length].rstrip(b"\0")
        offset += length


# Files this agent just wrote below a watched root, with the size and mtime it gave them: the
# watcher leaves out their reports, which would only echo back what the daemon sent (an
# initial sync would otherwise report every file it wrote).
OWN_WRITES: dict[tuple[str, str], tuple[int, int]] = {}
OWN_WRITES_LOCK = threading.Lock()
OWN_WRITES_LIMIT = 200_000
WATCHED_ROOTS: set[str] = set()


def remember_own_write(root: str, path: str, size: int, mtime_ns: int | None) -> None:
    if mtime_ns is None or root not in WATCHED_ROOTS:
        return
    with OWN_WRITES_LOCK:
        if len(OWN_WRITES) < OWN_WRITES_LIMIT:
            OWN_WRITES[(root, path)] = (size, mtime_ns)


def is_own_write(root: str, path: str, row: list[Any]) -> bool:
    """Whether ``row`` is exactly what this agent wrote at ``path`` (forgotten either way)."""
    with OWN_WRITES_LOCK:
        written = OWN_WRITES.pop((root, path), None)
    return written is not None and row[1] == "f" and (row[3], row[4]) == written


class Watcher:
    """Reports changes below a root in CHANGES frames, from a thread of its own.

    With inotify there is a watch on every folder; without it (or once its limits are
    reached) the tree is walked every ``interval`` seconds and diffed against the last walk.
    """

    def __init__(
        self, channel: Channel, request_id: int, root: str, interval: float, max_watches: int
    ) -> None:
        self.channel = channel
        self.request_id = request_id
        self.root = root
        self.interval = interval
        self.max_watches = max_watches
        self.inotify: Inotify | None = None
        self.folders: dict[int, str] = {}  # watch descriptor -> folder path ("" is the root)
        self.changed: set[str] = set()  # paths to report, as they are when reported
        self.overflow = False
        self.warning: str | None = None
        self.polled: dict[str, list[Any]] = {}  # the last walk's rows, when polling
        self.wake_read, self.wake_write = os.pipe()
        self.thread = threading.Thread(target=self.run, name="podlink-watch", daemon=True)

    def start(self, method: str) -> dict[str, Any]:
        """Set up watching (the thread starts later, after this OK went out); the OK."""
        WATCHED_ROOTS.add(self.root)
        if method == "polling":
            self.switch_to_polling(None)
        else:
            try:
                self.inotify = Inotify()
                self.watch_tree("", report=False)
            except UsePolling as reason:
                self.switch_to_polling(str(reason))
        reply: dict[str, Any] = {"method": "polling" if self.inotify is None else "inotify"}
        if self.warning:
            reply["warning"] = self.warning
        self.overflow, self.warning = False, None  # nothing was reported yet to be lost
        return reply

    def stop(self) -> None:
        WATCHED_ROOTS.discard(self.root)
        with OWN_WRITES_LOCK:
            for key in [key for key in OWN_WRITES if key[0] == self.root]:
                del OWN_WRITES[key]
        os.write(self.wake_write, b"x")
        if self.thread.ident is not None:
            self.thread.join()
        if self.inotify is not None:
            self.inotify.close()
        os.close(self.wake_read)
        os.close(self.wake_write)

    def run(self) -> None:
        try:
            if self.inotify is not None:
                self.follow_events()
            if self.inotify is None:
                self.poll()
        except OSError:
            pass  # the daemon's end of the stream closed: nobody is listening any more
        except Exception as error:  # a bug here must be seen, and must not end the agent
            traceback.print_exc(file=sys.stderr)
            self.overflow = True
            self.warning = f"podlink stopped watching after an internal error: {error!r}"
            with contextlib.suppress(OSError):
                self.send_changes([], [])

    def switch_to_polling(self, reason: str | None) -> None:
        if self.inotify is not None:
            self.inotify.close()
            self.inotify = None
            self.overflow = True  # events may have been missed on the way
        if reason is not None:
            self.warning = (
                f"{reason}: podlink watches {self.root} by walking it every "
                f"{self.interval * 1000:.0f} ms instead, which costs more and notices later"
            )
        self.polled = self.walk_tree()

    # --- inotify ---

    def follow_events(self) -> None:
        assert self.inotify is not None
        first = last = 0.0
        while True:
            pending = bool(self.changed) or self.overflow
            deadline = min(last + QUIET, first + LATEST) if pending else None
            ready = wait_readable([self.wake_read, self.inotify.fd], deadline)
            if self.wake_read in ready:
                return
            now = time.monotonic()
            if ready:
                if not pending:
                    first = now
                last = now
                try:
                    self.take_events(read_available(self.inotify.fd))
                except UsePolling as reason:
                    self.switch_to_polling(str(reason))
                    self.report()
                    return
            if (self.changed or self.overflow) and (now >= last + QUIET or now >= first + LATEST):
                self.report()

    def take_events(self, buffer: bytes) -> None:
        for wd, mask, raw_name in parse_events(buffer):
            if mask & IN_Q_OVERFLOW:
                self.overflow = True
                self.watch_tree("", report=False)  # folders made meanwhile need watches too
                continue
            folder = self.folders.get(wd)
            if folder is None:
                continue  # a watch dropped already; its folder was reported then
            if mask & IN_IGNORED:
                del self.folders[wd]
            if folder == "" and mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                raise UsePolling(f"the sync root {self.root} was removed or moved")
            try:
                name = raw_name.decode("utf-8")
            except UnicodeDecodeError:
                continue  # scans skip such names too
            if not name or name.startswith(TEMP_PREFIX):
                continue  # the folder itself (its parent reports it), or the agent's own temp
            path = folder + "/" + name if folder else name
            self.changed.add(path)
            if mask & IN_ISDIR and mask & (IN_MOVED_FROM | IN_DELETE):
                self.unwatch_below(path)
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                self.watch_tree(path, report=True)

    def watch_tree(self, top: str, report: bool) -> None:
        """Watch ``top`` and every folder below it. With ``report``, count all of it changed:
        what was made in a new folder before its watch was added sent no events."""
        parts = top.split("/") if top else []
        try:
            if parts:
                with folder_of(self.root, parts, create=False) as parent_fd:
                    fd = open_child_folder(parent_fd, parts[-1], False, top)
            else:
                fd = open_root(self.root)
        except (Failure, OSError):
            return  # gone again, or not a folder now: its own events tell
        try:
            WatchingWalk(self, report).walk(fd, top)
        finally:
            os.close(fd)

    def add_watch(self, folder: str) -> None:
        assert self.inotify is not None
        try:
            wd = self.inotify.add(self.root.rstrip("/") + "/" + folder if folder else self.root)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise UsePolling(self.limit_reached()) from None
            return  # gone, replaced or unreadable: there is nothing to watch there
        if wd not in self.folders and len(self.folders) >= self.max_watches:
            self.inotify.remove(wd)
            raise UsePolling(self.limit_reached())
        self.folders[wd] = folder

    def limit_reached(self) -> str:
        return (
            f"the limit of inotify watches is reached after {len(self.folders)} folders; "
            "raise the sysctl fs.inotify.max_user_watches (on the node: containers share it)"
        )

    def unwatch_below(self, top: str) -> None:
        assert self.inotify is not None
        for wd, folder in list(self.folders.items()):
            if folder == top or folder.startswith(top + "/"):
                self.inotify.remove(wd)
                del self.folders[wd]

    def report(self) -> None:
        """Send every changed path as it is now: a row, or ``gone``."""
        paths, self.changed = sorted(self.changed), set()
        entries: list[list[Any]] = []
        gone: list[str] = []
        try:
            folders: FolderCache | None = FolderCache(self.root, create=False)
        except (Failure, OSError):
            folders = None  # the root itself is gone
        try:
            for path in paths:
                row = None if folders is None else row_now(folders, path)
                if row is None:
                    gone.append(path)
                elif not is_own_write(self.root, path, row):
                    entries.append(row)
        finally:
            if folders is not None:
                folders.close()
        self.send_changes(entries, gone)

    # --- polling ---

    def poll(self) -> None:
        while not wait_readable([self.wake_read], time.monotonic() + self.interval):
            rows = self.walk_tree()
            before = self.polled
            entries = [
                row for path, row in rows.items() if comparable(before.get(path)) != comparable(row)
            ]
            gone = [path for path in before if path not in rows]
            self.polled = rows
            if entries or gone or self.overflow or self.warning:
                self.send_changes(entries, gone)

    def walk_tree(self) -> dict[str, list[Any]]:
        walk = PolledWalk()
        try:
            root_fd = open_root(self.root)
        except (Failure, OSError):
            return {}
        try:
            walk.walk(root_fd)
        finally:
            os.close(root_fd)
        return walk.rows

    # --- sending ---

    def send_changes(self, entries: list[list[Any]], gone: list[str]) -> None:
        """CHANGES frames, each well below MAX_PAYLOAD; the overflow flag and warning go first."""
        batch: dict[str, Any] = {"entries": [], "gone": [], "overflow": self.overflow}
        if self.warning:
            batch["warning"] = self.warning
        self.overflow, self.warning = False, None
        batch_bytes = 0
        for key, items in (("entries", entries), ("gone", gone)):
            for item in items:
                batch[key].append(item)
                batch_bytes += len(str(item)) + 16  # near its JSON size; the limit has room
                if batch_bytes >= BATCH_BYTES:
                    self.channel.send_json(CHANGES, self.request_id, batch, flush=True)
                    batch, batch_bytes = {"entries": [], "gone": [], "overflow": False}, 0
        if batch["entries"] or batch["gone"] or batch["overflow"] or "warning" in batch:
            self.channel.send_json(CHANGES, self.request_id, batch, flush=True)


class WatchingWalk(TreeWalker):
    """Adds an inotify watch to each folder before listing it, and counts what it finds."""

    def __init__(self, watcher: Watcher, report: bool) -> None:
        super().__init__(with_digests=False)
        self.watcher = watcher
        self.report_all = report

    def list_folder(self, folder_fd: int, prefix: str) -> list[str]:
        self.watcher.add_watch(prefix.rstrip("/"))
        return super().list_folder(folder_fd, prefix)

    def report(self, folder_fd: int, prefix: str, item: os.DirEntry[str]) -> bool:
        if item.name.startswith(TEMP_PREFIX) or not is_utf8(item.name):
            return False
        if self.report_all:
            self.watcher.changed.add(prefix + item.name)
        return item.is_dir(follow_symlinks=False)  # from the listing: no stat needed


class PolledWalk(TreeWalker):
    """One walk of a polled tree: its rows by path."""

    def __init__(self) -> None:
        super().__init__(with_digests=False)
        self.rows: dict[str, list[Any]] = {}

    def add(self, row: list[Any]) -> None:
        self.rows[row[0]] = row

    def problem(self, path: str, message: str) -> None:
        pass  # a scan reports it; a watch only says what changed


def comparable(row: list[Any] | None) -> list[Any] | None:
    """A row as polling compares it: a folder's mtime changes with its contents, which are
    reported themselves."""
    if row is None or row[1] != "d":
        return row
    return [*row[:4], 0, *row[5:]]


def row_now(folders: FolderCache, path: str) -> list[Any] | None:
    """The SCAN row of ``path`` as it is now; None when nothing syncable is there."""
    parts = path.split("/")
    try:
        folder_fd = folders.folder(parts)
        found = lstat_or_none(folder_fd, parts[-1])
        if found is None:
            return None
        kind, size, link_target = kind_of(found.st_mode), found.st_size, None
        if kind == "d":
            size = 0
        elif kind == "l":
            link_target = os.readlink(parts[-1], dir_fd=folder_fd)
        elif kind != "f":
            return None  # scans skip it: to the daemon it is as good as gone
    except (Failure, OSError):
        return None
    if link_target is not None and not is_utf8(link_target):
        return None
    mode = stat.S_IMODE(found.st_mode)
    return [path, kind, mode, size, found.st_mtime_ns, found.st_ino, link_target, None]


def wait_readable(fds: list[int], deadline: float | None) -> set[int]:
    """Those of ``fds`` readable before ``deadline`` (a time.monotonic() value, None: ever)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    timeout = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000) + 1)
    return {fd for fd, _ in poller.poll(timeout)}


def read_available(fd: int) -> bytes:
    try:
        return os.read(fd, EVENT_BUFFER)
    except BlockingIOError:
        return b""


class WatchSlot:
    """The one watch an agent runs: a new WATCH replaces it; UNWATCH and the end of input end it."""

    def __init__(self) -> None:
        self.watcher: Watcher | None = None

    def replace(self, watcher: Watcher | None) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = watcher


WATCHING = WatchSlot()


def handle_watch(channel: Channel, request_id: int, fields: dict[str, Any]) -> None:
    """Start reporting changes below ``root``; answers itself, as CHANGES must follow its OK."""
    WATCHING.replace(None)
    root = required_root(fields)
    interval_ms = optional_int(fields, "poll_interval_ms", DEFAULT_POLL_INTERVAL_MS)
    max_watches = optional_int(fields, "max_watches", 2**31)
    method = fields.get("method", "auto")
    if method not in ("auto", "polling"):
        raise Failure("badRequest", f"method must be 'auto' or 'polling', not {method!r}")
    os.close(open_root(root))  # a missing root is an error now, not a silent empty watch
    watcher = Watcher(channel, request_id, root, interval_ms / 1000, max_watches)
    try:
        reply = watcher.start(method)
    except BaseException:
        watcher.stop()
        raise
    channel.send_json(OK, request_id, reply)
    WATCHING.replace(watcher)
    watcher.thread.start()


def handle_unwatch(channel: Channel, request_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    WATCHING.replace(None)
    return {}


def optional_int(fields: dict[str, Any], key: str, default: int) -> int:
    value = fields.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Failure("badRequest", f"{key} must be a positive integer")
    return value


HANDLERS: dict[int, Callable[[Channel, int, dict[str, Any]], dict[str, Any] | None]] = {
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
    READ: handle_read,
    WATCH: handle_watch,
    UNWATCH: handle_unwatch,
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
        if result is not None:  # None: the handler answered itself
            channel.send_json(OK, request_id, result)


def request_path(fields: dict[str, Any]) -> str | None:
    path = fields.get("path", fields.get("src"))
    return path if isinstance(path, str) else None


def serve(channel: Channel) -> None:
    """Answer requests strictly in order until the input ends; a watch ends with it."""
    try:
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
    finally:
        WATCHING.replace(None)


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
