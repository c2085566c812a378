"""Connect this process's terminal (or pipes) to a command in a target, for ``podlink shell``;
and stream blocking output (a container's log) to it without blocking the event loop.

With a terminal on both ends the local terminal goes into raw mode, so every key (Ctrl-C,
arrows, Tab) reaches the remote program and the remote terminal alone decides what to echo;
its size follows the local window. Without one (a pipe, a file) bytes are relayed as they
come and stderr stays separate, so scripts can drive the command. A command for the local
target runs as a child process on the local terminal itself: there is nothing to relay.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import termios
import threading
import tty
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from podlink.targets.base import ExecStream

T = TypeVar("T")

# Prefer bash (line editing, history) and fall back to sh in images that have no bash.
DEFAULT_SHELL = ("sh", "-c", "command -v bash >/dev/null 2>&1 && exec bash; exec sh")
CHUNK_SIZE = 1 << 16
# How often to try the first resize: the Engine may refuse it while the exec is starting.
INITIAL_RESIZE_ATTEMPTS = 5
INITIAL_RESIZE_PAUSE = 0.05
# The exit code when a stop was requested by a signal: the shell convention 128 + signal.
SIGNAL_EXIT_BASE = 128


@runtime_checkable
class Resizable(Protocol):
    """An exec whose terminal can be resized (Docker's TTY execs)."""

    async def resize(self, rows: int, columns: int) -> None: ...


def stdio_is_terminal() -> bool:
    """Both stdin and stdout are a terminal: the case for raw mode and a remote TTY."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def window_size() -> tuple[int, int]:
    """The local terminal's (rows, columns)."""
    size = os.get_terminal_size(sys.stdout.fileno())
    return size.lines, size.columns


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal ``fd`` in raw mode, and restore its settings however the block ends."""
    saved = termios.tcgetattr(fd)
    # TCSADRAIN, not setraw's default TCSAFLUSH: keys typed while connecting are not lost.
    tty.setraw(fd, termios.TCSADRAIN)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def exit_status(code: int) -> int:
    """A process's exit status for ``sys.exit``: killed by signal N (``-N``) becomes 128 + N."""
    return code if code >= 0 else SIGNAL_EXIT_BASE - code


def run_local(argv: Sequence[str], cwd: str) -> int:
    """Run ``argv`` in ``cwd`` on this process's own stdin/stdout/stderr; its exit status.

    The child shares the terminal and its foreground process group, so Ctrl-C reaches it
    directly; this process ignores SIGINT and SIGQUIT meanwhile (as ``system()`` does) and
    simply reports how the child ended.
    """
    try:
        process = subprocess.Popen(list(argv), cwd=cwd)
    except OSError as error:
        sys.stderr.write(f"podlink: cannot run {argv[0]!r} in {cwd}: {error.strerror}\n")
        return 127
    # Ignoring only after the start: an ignored signal would be inherited by the child.
    previous = {
        number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGQUIT)
    }
    try:
        return exit_status(process.wait())
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


async def relay(execution: ExecStream, *, tty: bool) -> int:
    """Relay stdin to ``execution`` and its output to stdout/stderr until it ends.

    Returns its exit status. With ``tty`` the caller has put the terminal in raw mode and the
    exec has a TTY: its size is set now and on every SIGWINCH. SIGTERM and SIGHUP stop the
    command, and so does SIGINT without ``tty`` (in raw mode Ctrl-C is a byte for the command).
    """
    loop = asyncio.get_running_loop()
    stop_requested: list[int] = []
    stopping = asyncio.Event()

    def request_stop(number: int) -> None:
        stop_requested.append(number)
        stopping.set()

    stop_signals = [signal.SIGTERM, signal.SIGHUP] + ([] if tty else [signal.SIGINT])
    for number in stop_signals:
        loop.add_signal_handler(number, request_stop, number)
    resizes: set[asyncio.Task[None]] = set()
    if tty and isinstance(execution, Resizable):
        await _resize_first(execution)

        def resize_later() -> None:
            task = asyncio.create_task(_resize_quietly(execution))
            resizes.add(task)
            task.add_done_callback(resizes.discard)

        loop.add_signal_handler(signal.SIGWINCH, resize_later)
    feeding = asyncio.create_task(_feed_stdin(execution))
    outputs = [asyncio.create_task(_copy_output(execution.stdout, sys.stdout.fileno()))]
    if execution.stderr is not None:
        outputs.append(asyncio.create_task(_copy_output(execution.stderr, sys.stderr.fileno())))
    output_done = asyncio.gather(*outputs)
    stop_waiter = asyncio.create_task(stopping.wait())
    try:
        waiting: set[asyncio.Future[Any]] = {output_done, stop_waiter}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if stop_requested:
            await execution.terminate()
            return SIGNAL_EXIT_BASE + stop_requested[0]
        return exit_status(await execution.wait())
    finally:
        for number in [*stop_signals, signal.SIGWINCH]:
            loop.remove_signal_handler(number)
        for task in (feeding, stop_waiter, *outputs, *resizes):
            task.cancel()
        await asyncio.gather(feeding, stop_waiter, output_done, *resizes, return_exceptions=True)


async def _resize_first(execution: Resizable) -> None:
    rows, columns = window_size()
    for attempt in range(INITIAL_RESIZE_ATTEMPTS):
        try:
            await execution.resize(rows, columns)
            return
        except Exception:
            if attempt + 1 == INITIAL_RESIZE_ATTEMPTS:
                return  # the command still works, in the Engine's default 80x24
            await asyncio.sleep(INITIAL_RESIZE_PAUSE)


async def _resize_quietly(execution: Resizable) -> None:
    # A resize racing the end of the command fails harmlessly.
    with contextlib.suppress(Exception):
        await execution.resize(*window_size())


async def _feed_stdin(execution: ExecStream) -> None:
    writer = execution.stdin
    if writer is None:
        return
    try:
        async for chunk in _stdin_chunks():
            writer.write(chunk)
            await writer.drain()
        await execution.close_stdin()
    except OSError:
        pass  # the command ended and closed its input: what was left is not wanted


async def _copy_output(stream: asyncio.StreamReader, fd: int) -> None:
    broken = False
    while chunk := await stream.read(CHUNK_SIZE):
        if broken:
            continue  # keep reading so the command is not blocked on a full stream
        try:
            write_all(fd, chunk)
        except BrokenPipeError:
            broken = True


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _stdin_chunks() -> AsyncIterator[bytes]:
    """This process's stdin, chunk by chunk, until end of input.

    Terminals and pipes are watched by the event loop (without changing their blocking mode,
    which the parent shell shares). Regular files and /dev/null cannot be watched: a daemon
    thread reads those, and never keeps the process alive at exit.
    """
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    try:
        loop.add_reader(fd, lambda: None)
    except (OSError, ValueError):
        async for chunk in iterate_in_thread(_blocking_chunks(fd)):
            yield chunk
        return
    loop.remove_reader(fd)
    while True:
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _resolve_once, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, CHUNK_SIZE)
        except BlockingIOError:
            continue
        if not chunk:
            return
        yield chunk


def _blocking_chunks(fd: int) -> Iterator[bytes]:
    while True:
        try:
            chunk = os.read(fd, CHUNK_SIZE)
        except OSError:
            return  # an unreadable input ends like an empty one
        if not chunk:
            return
        yield chunk


def _resolve_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def iterate_in_thread(items: Iterable[T]) -> AsyncIterator[T]:
    """The items of a blocking iterable, taken one by one on a daemon thread.

    The thread waits while the consumer is behind, so a fast source is not read into memory,
    and it never keeps the process alive at exit (a worker thread of ``asyncio.to_thread``
    would, while it blocks on a read that may never end). An exception from the iterable is
    raised here.
    """
    loop = asyncio.get_running_loop()
    handoff: asyncio.Queue[tuple[T | None, BaseException | None, bool]] = asyncio.Queue(1)

    def hand_over(item: T | None, error: BaseException | None, finished: bool) -> bool:
        try:
            put = asyncio.run_coroutine_threadsafe(handoff.put((item, error, finished)), loop)
            put.result()
        except (RuntimeError, concurrent.futures.CancelledError):
            return False  # the loop has ended: nobody is listening any more
        return True

    def pump() -> None:
        try:
            for item in items:
                if not hand_over(item, None, False):
                    return
        except Exception as error:
            hand_over(None, error, True)
            return
        hand_over(None, None, True)

    threading.Thread(target=pump, name="podlink-reader", daemon=True).start()
    while True:
        item, error, finished = await handoff.get()
        if error is not None:
            raise error
        if finished:
            return
        yield cast(T, item)


def plural(number: int, noun: str) -> str:
    """``3 files``, ``1 file``: a count as the terminal says it."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
