"""Local change watching: watchdog events become debounced batches of relative paths.

Editors save in bursts (temp file, rename, chmod); a short quiet period merges a burst into
one batch, and a cap keeps a continuous stream of changes from starving the sync. A batch
holding a deletion waits longer, so that an ``rm -rf`` reaches the safety halt whole rather
than a first slice of it being applied before the rest shows the share it deletes.

Changes are never missed silently: when the kernel's event queue overflows the watcher
asks for a whole-tree rescan (the path ""), and when inotify runs out of watches it says
which sysctl to raise and polls instead.

Folders podlink never syncs (``.git/``, ``.podlink/``, a local target's root inside the
workspace) get no inotify watch at all: the agent's writes into a target root there would
otherwise come back as events, and its tree would cost as many watches as the workspace's.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import logging
import os
import secrets
import warnings
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyEvent
from watchdog.observers.inotify_move_event_grouper import PathedInotifyEvent
from watchdog.observers.polling import PollingObserver

from podlink.sync.core.plan import folders_above
from podlink.sync.ignore import is_ignore_file

log = logging.getLogger(__name__)

IGNORED_EVENT_TYPES = frozenset({"opened", "closed_no_write"})

# Asked of the kernel, so the opens and reads of podlink's own sync (thousands in an initial
# sync) never reach Python. A folder's own "modified" only says its listing changed.
WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirAttribEvent,
    DirDeletedEvent,
    DirMovedEvent,
]

# Called with the changed paths and the loop time at which the first of them was noticed.
BatchHandler = Callable[[set[str], float], Awaitable[None]]

POLL_INTERVAL_SECONDS = 1.0
# The newest changes, up to this many, may go while another batch runs: a save must not wait
# behind a checkout's thousands of files. The engine lets no more than this pass a bulk pass.
PRIORITY_MAX_PATHS = 8

# Whether these changes may go before the running batch is done (the sync engine's lane).
GoesFirst = Callable[[set[str]], bool]
# Never synced (the agent's temporary-file prefix is always excluded) and gone at once.
BARRIER_PREFIX = ".podlink-tmp-barrier-"
WATCH_LIMIT_FILE = Path("/proc/sys/fs/inotify/max_user_watches")
# watchdog rebuilds its watches after an overflow but tells its handlers nothing; the one
# sign is this warning, so every running watcher listens for it.
OVERFLOW_LOGGER = "watchdog.observers.inotify_c"
OVERFLOW_MESSAGE = "Inotify queue overflowed"
_running_watchers: weakref.WeakSet[TreeWatcher] = weakref.WeakSet()

# watchdog's recursive inotify watch races with a fast `mkdir -p`: it watches a new folder's
# subfolders while walking it, then meets their own "created" events and watches them again
# (or finds a watch already gone when it removes one), and says so with a RuntimeWarning on
# stderr each time (170 of them for 200 nested folders). The watch ends up right either way,
# so these words are for watchdog's developers, never for podlink's users.
warnings.filterwarnings(
    "ignore",
    message=r"Callback with id '\S+' (already exists|does not exist) for watch",
    category=RuntimeWarning,
)


class _OverflowListener(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(OVERFLOW_MESSAGE):
            for watcher in list(_running_watchers):
                watcher.rescan_from_thread()


_overflow_listener = _OverflowListener(logging.WARNING)


def watch_limit_message(error: OSError, root: Path) -> str:
    """What to tell the user when inotify cannot watch ``root``."""
    try:
        limit = WATCH_LIMIT_FILE.read_text().strip()
    except OSError:
        limit = "unknown"
    if error.errno == errno.EMFILE:
        what = "the limit of inotify instances (fs.inotify.max_user_instances) is reached"
        fix = "sudo sysctl fs.inotify.max_user_instances=1024"
    else:
        what = f"the inotify watch limit (fs.inotify.max_user_watches = {limit}) is reached"
        fix = "sudo sysctl fs.inotify.max_user_watches=524288"
    return (
        f"cannot watch {root} for changes: {what}. Raise it with `{fix}` (add it to "
        "/etc/sysctl.conf to keep it); podlink polls for changes meanwhile, which is slower"
    )


FolderFilter = Callable[[str], bool]


@dataclass
class _PrunedWatchGroup(InotifyWatchGroup):
    """watchdog's recursive watch, without the folders ``unwatched`` names (relative)."""

    unwatched: FolderFilter = field(default=lambda folder: False)

    def _is_unwatched(self, path: bytes) -> bool:
        if path == self.path or not path.startswith(self.path + b"/"):
            return False
        return self.unwatched(os.fsdecode(path[len(self.path) + 1 :]))

    def _add_all_callbacks(self, path: bytes) -> None:
        if self._is_unwatched(path):
            return
        self._add_callback(path)
        if not (self.is_recursive and os.path.isdir(path)):
            return
        for root, dirnames, _ in os.walk(path, followlinks=self.follow_symlink):
            kept = []
            for name in dirnames:
                full_path = os.path.join(root, name)
                if self._is_unwatched(full_path):
                    continue
                kept.append(name)
                if self.follow_symlink or not os.path.islink(full_path):
                    self._add_callback(full_path)
            dirnames[:] = kept

    def on_event(self, event: InotifyEvent) -> None:
        # watchdog walks a created folder's subtree twice (to watch it, then to report what
        # is in it already) for every folder's own "created" event, even when the walk of a
        # folder above already watched and reported this one: `mkdir -p` of 200 levels cost
        # 200 walks of up to 200 levels, seconds under load before a change made after it
        # was seen. A folder still watched as the same inode was walked when its watch was
        # added, and what appeared in it since has its own event: report it alone.
        with self._lock:
            src_path = self._build_event_source_path(event) if self.is_active else None
            if (
                src_path is not None
                and event.is_create
                and event.is_directory
                and self.is_recursive
                and self._still_watched(src_path)
            ):
                self._move_event_grouper.put_event(PathedInotifyEvent(event, src_path))
                return
        super().on_event(event)

    def _still_watched(self, path: bytes) -> bool:
        """Whether ``path`` has a watch on the inode it names now (not on one moved away)."""
        known = self._active_callbacks_by_path.get(path)
        if known is None:
            return False
        # inotify hands back the existing watch for an inode it watches already.
        self._add_callback(path)
        return self._active_callbacks_by_path.get(path) == known


class _PrunedInotifyEmitter(InotifyEmitter):
    unwatched: FolderFilter = staticmethod(lambda folder: False)

    def on_thread_start(self) -> None:
        self._inotify = _PrunedWatchGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
            unwatched=self.unwatched,
        )


def pruned_inotify_observer(unwatched: FolderFilter) -> BaseObserver:
    """An inotify observer that never watches the folders ``unwatched`` names."""
    emitter = type("Emitter", (_PrunedInotifyEmitter,), {"unwatched": staticmethod(unwatched)})
    return BaseObserver(emitter, timeout=DEFAULT_OBSERVER_TIMEOUT)


class _Forwarder(FileSystemEventHandler):
    def __init__(self, watcher: TreeWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED_EVENT_TYPES:
            return
        # A folder's own "modified" only means its listing changed; the child has its event.
        if event.is_directory and event.event_type == "modified":
            return
        paths = [os.fsdecode(event.src_path)]
        if event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        self._watcher.notice_from_thread(
            paths,
            finished=event.event_type == "closed",
            removed=event.event_type == "deleted",
        )


class TreeWatcher:
    """Watches one local root and hands batches of changed relative paths to ``on_batch``.

    ``on_batch`` runs on the event loop. Changes that arrive while a batch is being applied
    are collected into the next one, except that the newest few (``PRIORITY_MAX_PATHS``) go
    at once as a priority batch beside the running one when ``may_go_first`` allows it and
    they share no path or folder with the changes still waiting: going first then cannot
    change what either of them does.
    """

    def __init__(
        self,
        root: Path,
        is_ignored: Callable[[str], bool],
        on_batch: BatchHandler,
        *,
        quiet_seconds: float = 0.004,
        after_close_seconds: float = 0.001,
        max_delay_seconds: float = 0.05,
        removal_quiet_seconds: float = 0.05,
        removal_max_delay_seconds: float = 1.0,
        on_warning: Callable[[str], None] | None = None,
        is_unwatched: FolderFilter = lambda folder: False,
        observer_factory: Callable[[], BaseObserver] | None = None,
        may_go_first: GoesFirst = lambda paths: False,
    ) -> None:
        """``is_unwatched``: folders (relative) never synced, so never watched, whatever
        happens inside them; it must not change while the watcher runs.
        ``observer_factory``: the watchdog observer to try first (polling is the fallback).
        ``may_go_first``: whether a few changes may be handed over while a batch runs.
        ``removal_quiet_seconds``, ``removal_max_delay_seconds``: the quiet period and the cap
        while a deletion waits: a burst of deletions is judged whole by the safety halt, and
        a user deleting files waits for nothing the way a save is waited for."""
        self.root = root
        self._on_warning = on_warning or (lambda text: log.warning("%s", text))
        self._observer_factory = observer_factory or functools.partial(
            pruned_inotify_observer, is_unwatched
        )
        self.polling = False
        self._events_lost = False
        self._barriers: dict[str, asyncio.Future[None]] = {}
        self._root_text = str(root)
        self._is_ignored = is_ignored
        self._on_batch = on_batch
        self._may_go_first = may_go_first
        self._quiet = quiet_seconds
        self._after_close = after_close_seconds
        self._max_delay = max_delay_seconds
        self._removal_quiet = removal_quiet_seconds
        self._removal_max_delay = removal_max_delay_seconds
        self._removal_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: BaseObserver | None = None
        # Each waiting path with the loop time it was first noticed, oldest notice first.
        self._pending: dict[str, float] = {}
        self._first_change_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._running_batch: asyncio.Task[None] | None = None
        self._priority_batch: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Watch from now on. Setting the watches up walks the tree (one inotify watch per
        folder: tens of milliseconds for a big one) on a worker thread, so the event loop
        can reach the target meanwhile; changes noticed already are kept."""
        self._loop = asyncio.get_running_loop()
        observer, warning = await asyncio.to_thread(self._open_observer)
        if warning is not None:
            self._on_warning(warning)
        self._observer = observer
        overflow_logger = logging.getLogger(OVERFLOW_LOGGER)
        if _overflow_listener not in overflow_logger.handlers:
            overflow_logger.addHandler(_overflow_listener)
        _running_watchers.add(self)

    def _open_observer(self) -> tuple[BaseObserver, str | None]:
        """The started observer, and a warning when it had to be a polling one."""
        try:
            return self._start_observer(self._observer_factory()), None
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            self.polling = True
            polling = self._start_observer(PollingObserver(timeout=POLL_INTERVAL_SECONDS))
            return polling, watch_limit_message(error, self.root)

    def _start_observer(self, observer: BaseObserver) -> BaseObserver:
        observer.schedule(
            _Forwarder(self), self._root_text, recursive=True, event_filter=WATCHED_EVENTS
        )
        observer.daemon = True
        observer.start()
        return observer

    async def barrier(self, timeout_seconds: float = 2.0) -> bool:
        """Return once every change made before the call has been noticed.

        inotify reports the events of one watch in order, so a marker file created now is
        seen only after every earlier change: a flush of a big tree costs one file, not a
        rescan. False when that cannot be told (polling, events lost since the last
        barrier, a root that cannot be written): the caller must rescan instead.
        """
        if self.polling or self._observer is None or self._events_lost:
            self._events_lost = False
            return False
        name = f"{BARRIER_PREFIX}{secrets.token_hex(6)}"
        seen = asyncio.get_running_loop().create_future()
        self._barriers[name] = seen
        marker = self.root / name
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            os.unlink(marker)
            await asyncio.wait_for(seen, timeout_seconds)
        except (OSError, TimeoutError):
            return False
        finally:
            self._barriers.pop(name, None)
        return True

    def rescan_from_thread(self) -> None:
        """Events were lost: have the whole tree looked at again."""
        self._events_lost = True
        self.notice_from_thread([self._root_text])

    async def stop(self) -> None:
        _running_watchers.discard(self)
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            await asyncio.to_thread(observer.join, 5.0)
        if self._timer is not None:
            self._timer.cancel()
        running = [task for task in (self._running_batch, self._priority_batch) if task]
        await asyncio.gather(*running, return_exceptions=True)

    async def drain(self) -> None:
        """Apply whatever is pending now, and wait until no batch is running."""
        self._fire()
        while not self._idle.is_set() or self._pending:
            await self._idle.wait()
            self._fire()

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def notice_from_thread(
        self, absolute_paths: list[str], *, finished: bool = False, removed: bool = False
    ) -> None:
        """Called from watchdog's thread. ``finished``: a writer closed the file.
        ``removed``: the path was deleted."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notice, absolute_paths, finished, removed)

    def _notice(self, absolute_paths: list[str], finished: bool, removed: bool) -> None:
        if self._barriers:
            for path in absolute_paths:
                seen = self._barriers.get(os.path.basename(path))
                if seen is not None and not seen.done():
                    seen.set_result(None)
        changed = {rel for path in absolute_paths if (rel := self._relative(path)) is not None}
        if not changed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for path in changed:
            # Noticed again: it moves to the newest end, and keeps its first notice's time.
            self._pending[path] = self._pending.pop(path, now)
        self._idle.clear()
        if self._first_change_at is None:
            self._first_change_at = now
        self._removal_pending = self._removal_pending or removed
        if self._removal_pending:
            # A deletion may be the first of many (rm -rf, a branch switch): the safety halt
            # must see them together, and nobody waits on a deletion as on a save.
            fire_at = min(
                now + self._removal_quiet, self._first_change_at + self._removal_max_delay
            )
        else:
            # A closed file is a finished save: wait only long enough to merge a rename that
            # follows it. Anything else may be the middle of a burst.
            quiet = self._after_close if finished else self._quiet
            fire_at = min(now + quiet, self._first_change_at + self._max_delay)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(fire_at, self._on_quiet)

    def _relative(self, absolute: str) -> str | None:
        if absolute == self._root_text:
            return ""
        if not absolute.startswith(self._root_text + os.sep):
            return None
        relative = absolute[len(self._root_text) + 1 :].replace(os.sep, "/")
        # Ignore files themselves must reach the engine: they change what is synced.
        if self._is_ignored(relative) and not is_ignore_file(relative):
            return None
        return relative

    def _on_quiet(self) -> None:
        self._timer = None
        self._fire()

    def offer_priority(self) -> None:
        """What may go first now could go: the engine began applying a bulk pass."""
        if self._running_batch is not None:
            self._fire()

    def _fire(self) -> None:
        if not self._pending:
            return
        if self._running_batch is None:
            self._hand_over(set(self._pending), priority=False)
        elif self._priority_batch is None and (newest := self._newest_going_first()):
            self._hand_over(newest, priority=True)
        # Anything else goes when the running batch is done.

    def _hand_over(self, batch: set[str], *, priority: bool) -> None:
        first_seen = min(self._pending.pop(path) for path in batch)
        if not self._pending:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._first_change_at = None
            self._removal_pending = False
        task = asyncio.ensure_future(self._run(batch, first_seen, priority=priority))
        if priority:
            self._priority_batch = task
        else:
            self._running_batch = task

    def _newest_going_first(self) -> set[str]:
        """The newest waiting changes (a few, else the newest one) that may pass the running
        batch and share no path or folder with the older ones; empty when there are none.
        The engine is asked first: without a bulk pass it says no at once, where the walk
        over everything waiting costs a look at each path."""
        newest = list(itertools.islice(reversed(self._pending), PRIORITY_MAX_PATHS))
        for chosen in (set(newest), set(newest[:1])):
            if chosen and self._may_go_first(chosen) and self._apart(chosen):
                return chosen
        return set()

    def _apart(self, chosen: set[str]) -> bool:
        held = self._pending.keys() - chosen
        return (
            "" not in chosen
            and "" not in held
            and held.isdisjoint(folders_above(chosen))
            and chosen.isdisjoint(folders_above(held))
        )

    async def _run(self, batch: set[str], first_seen: float, *, priority: bool) -> None:
        try:
            await self._on_batch(batch, first_seen)
        except Exception:
            log.exception("applying a batch of %d changes failed", len(batch))
        finally:
            if priority:
                self._priority_batch = None
            else:
                self._running_batch = None
            if self._pending:
                self._fire()
            elif self._running_batch is None and self._priority_batch is None:
                self._idle.set()
