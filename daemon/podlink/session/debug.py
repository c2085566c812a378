"""Debugging in the target: the app restarted under debugpy, reached through a forward.

``podlink/startDebug`` makes debugpy importable by the app (copying in the daemon's own
debugpy when the target has none), restarts the app as ``python -m debugpy --listen
127.0.0.1:PORT ...`` and forwards that port to a free local one. The answer is a ready VS
Code attach configuration whose ``pathMappings`` come from the sync entries.

A second ``podlink/startDebug`` while the app already runs under debugpy (an editor
attaching again after a restart) answers once the debug server is ready, without
restarting the app once more. Debugging stays on for the rest of the session: every later
start of the app (a sync, a manual restart, a reconnect) runs under debugpy again, on the
same ports, and the session logs when the debug server is ready for the editor to attach
again.

The copy leaves out compiled files: their speed-ups may not match the target's Python, and
pydevd runs in pure Python without them (``PYDEVD_USE_CYTHON=NO``). Nothing is installed
with pip and nothing is fetched from a network.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import re
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Literal

import debugpy
import msgspec

from podlink.agent.client import AgentError
from podlink.agent.transport import FileTransport
from podlink.config import Config
from podlink.errors import InvalidParams
from podlink.session.app import AppRunner
from podlink.session.ports import LOOPBACK, Forward, PortForwards
from podlink.targets.base import Target, TargetUnavailable

MINIMUM_PYTHON = (3, 8)
READY_TIMEOUT_SECONDS = 30.0
READY_POLL_SECONDS = 0.05
PROBE_TIMEOUT_SECONDS = 30.0
COPY_MARKER = ".podlink-complete"

PYTHON_NAME = re.compile(r"python(\d+(\.\d+)*)?")
# Interpreter options whose value is the next word; the others stand alone.
OPTIONS_WITH_VALUE = frozenset({"-W", "-X", "--check-hash-based-pycs"})
# Compiled speed-ups and the sources they are built from: the target's Python may not match.
NOT_COPIED = frozenset(
    {".so", ".pyd", ".dll", ".dylib", ".exe", ".pyc", ".c", ".cpp", ".h", ".hpp", ".pyx", ".pxd"}
)
# For a copied debugpy: pure-Python pydevd, no native helper library.
COPIED_DEBUGPY_ENV = {"PYDEVD_USE_CYTHON": "NO", "PYDEVD_LOAD_NATIVE_LIB": "0"}

# Run by the app's interpreter, with the app's environment and folder: can it import
# debugpy, and is a complete copy already in place?
PROBE_SOURCE = r"""
import json, os, sys
try:
    import debugpy
    found = True
except Exception:
    found = False
sys.stdout.write(json.dumps({
    "python": list(sys.version_info[:2]),
    "debugpy": found,
    "pythonpath": os.environ.get("PYTHONPATH", ""),
    "copied": os.path.isfile(sys.argv[1]),
}))
"""

# Port work in the target, done by reading /proc rather than by connecting: a connection
# that closes at once leaves debugpy's adapter unable to serve the next client.
#   wait PORT SECONDS: exit 0 once something listens on PORT, 1 on timeout, 2 without /proc.
#   release PORT SECONDS: stop the debugpy adapter serving PORT, if one is left; exit 0 once
#     the port is free. The adapter leaves the app's process group (it daemonizes), so
#     stopping the app does not stop it, and it would hold the port the next run needs.
PORT_SOURCE = r"""
import os, signal, sys, time
mode, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
suffix = ":%04X" % port
def listening():
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                lines = rows.readlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] == "0A":
                return True
    if not readable:
        sys.exit(2)
    return False
def adapters():
    for name in os.listdir("/proc"):
        try:
            args = open("/proc/%s/cmdline" % name, "rb").read().split(b"\0")
        except (OSError, ValueError):
            continue
        serving = b"--port" in args and args.index(b"--port") + 1 < len(args)
        if serving and args[args.index(b"--port") + 1] == str(port).encode() \
                and b"--for-server" in args and any(b"debugpy" in arg for arg in args):
            yield int(name)
if mode == "release":
    for pid in adapters():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
while time.monotonic() < deadline:
    if listening() == (mode == "wait"):
        sys.exit(0)
    time.sleep(0.02)
sys.exit(1)
"""

# Bound and let go at once: a port the target's kernel considers free right now.
FREE_PORT_SOURCE = r"""
import socket, sys
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
sys.stdout.write(str(probe.getsockname()[1]))
"""


class DebugNotPossible(InvalidParams):
    """This configuration cannot be debugged; the message says what to change."""


class _Facts(msgspec.Struct, frozen=True):
    python: tuple[int, int]
    debugpy: bool
    pythonpath: str
    copied: bool


# -- pure parts -----------------------------------------------------------------------------


def debug_command(
    command: Sequence[str],
    port: int,
    *,
    setting: str = "run.command",
    wait_for_client: bool = False,
) -> tuple[str, ...]:
    """``command`` run under debugpy listening on 127.0.0.1:``port`` in the target.

    ``python [options] -m module args`` becomes ``python [options] -Xfrozen_modules=off -m
    debugpy --listen 127.0.0.1:PORT -m module args``; a script or ``-c`` works the same way.
    ``setting`` names where the command comes from, for the refusal; ``wait_for_client``
    holds the program until a debugger attaches (a test run must not finish before).
    """
    if not command or not PYTHON_NAME.fullmatch(PurePosixPath(command[0]).name):
        shown = command[0] if command else "(empty)"
        example = "[python3, -m, pytest]" if setting.startswith("test") else "[python3, -m, app]"
        raise DebugNotPossible(
            f"{setting} starts with {shown!r}; podlink debugs Python programs started as "
            f"`python ...` or `python3 ...` (for example {example})"
        )
    interpreter, rest = command[0], list(command[1:])
    options: list[str] = []
    while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c", "-"):
        option = rest.pop(0)
        if option[:2] in ("-m", "-c"):  # -mapp is -m app
            rest[:0] = [option[:2], option[2:]]
            break
        options.append(option)
        if option in OPTIONS_WITH_VALUE and rest:
            options.append(rest.pop(0))
    if not rest or rest[0] == "-" or (rest[0] in ("-m", "-c") and len(rest) < 2):
        raise DebugNotPossible(
            "run.command must name a script, `-m module` or `-c code` for debugpy to run"
        )
    return (
        interpreter,
        *options,
        "-Xfrozen_modules=off",
        "-m",
        "debugpy",
        "--listen",
        f"{LOOPBACK}:{port}",
        *(("--wait-for-client",) if wait_for_client else ()),
        *rest,
    )


def path_mappings(config: Config, target_path: Callable[[str], str]) -> list[dict[str, str]]:
    """One mapping per sync entry, absolute on both sides, the most specific first."""
    pairs = [(str(config.local_root(entry)), target_path(entry.remote)) for entry in config.sync]
    pairs.sort(key=lambda pair: (-len(PurePath(pair[0]).parts), -len(PurePosixPath(pair[1]).parts)))
    return [{"localRoot": local, "remoteRoot": remote} for local, remote in pairs]


def attach_configuration(
    config: Config, target_path: Callable[[str], str], local_port: int
) -> dict[str, Any]:
    """The VS Code ``debugpy`` attach configuration for a debug server on ``local_port``."""
    return {
        "type": "debugpy",
        "request": "attach",
        "name": f"podlink: {config.folder.name}",
        "connect": {"host": LOOPBACK, "port": local_port},
        "pathMappings": path_mappings(config, target_path),
        "justMyCode": config.debug.just_my_code,
        "subProcess": True,
    }


@functools.cache
def debugpy_files() -> tuple[tuple[str, Path], ...]:
    """The daemon's own debugpy as ``(path in the copy, local file)`` pairs, compiled files
    left out."""
    package = Path(debugpy.__file__).resolve().parent
    found = []
    for source in sorted(package.rglob("*")):
        if (
            source.is_file()
            and (source.suffix not in NOT_COPIED or _is_attach_helper(source))
            and "__pycache__" not in source.parts
        ):
            found.append((source.relative_to(package.parent).as_posix(), source))
    return tuple(found)


def _is_attach_helper(source: Path) -> bool:
    """The library gdb loads into a process to attach by pid: plain C, the same for every
    Python, built for this machine's architecture (a target of another one cannot attach
    by pid with the copy; debugpy says so)."""
    return source.parent.name == "pydevd_attach_to_process" and source.name.startswith(
        "attach_linux_"
    )


@functools.cache
def copy_folder() -> str:
    """Where the copy goes in the target (a target path): named by version and content, so
    a different debugpy never reuses a stale copy."""
    digest = hashlib.sha256()
    for relative, source in debugpy_files():
        digest.update(f"{relative}\0{source.stat().st_size}\0".encode())
    return f"/tmp/podlink-debugpy-{debugpy.__version__}-{digest.hexdigest()[:10]}"


# -- what the session's debuggers share ---------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class DebugContext:
    """The session's parts a debugger works with, and the port work it does in the target.

    ``transport`` is asked each time: the file channel changes when the session reconnects.
    """

    config: Config
    target: Target
    transport: Callable[[], FileTransport | None]
    forwards: PortForwards
    shares_loopback: bool
    log: Callable[[str], None]

    async def free_port(self) -> int:
        """A port free in the target right now. Raises TargetUnavailable."""
        code, output, errors = await run_in_target(
            self.target, (self.target.python, "-c", FREE_PORT_SOURCE)
        )
        if code != 0 or not output.strip().isdigit():
            said = last_line(errors)
            raise TargetUnavailable(
                f"cannot find a free port in the target (exit code {code})"
                + (f": {said}" if said else "")
            )
        return int(output)

    async def port_script(
        self, mode: Literal["wait", "release"], remote_port: int, seconds: float
    ) -> int:
        """``PORT_SOURCE``'s exit code for ``remote_port``. Raises TargetUnavailable."""
        code, _ = await self.port_script_outcome(mode, remote_port, seconds)
        return code

    async def port_script_outcome(
        self, mode: Literal["wait", "release"], remote_port: int, seconds: float
    ) -> tuple[int, str]:
        """``PORT_SOURCE``'s exit code for ``remote_port`` and the last line of its stderr
        ("" if none), which says why when the script could not run at all. Raises
        TargetUnavailable."""
        argv = (self.target.python, "-c", PORT_SOURCE, mode, str(remote_port), str(seconds))
        code, _, errors = await run_in_target(self.target, argv)
        return code, last_line(errors)


def last_line(output: bytes) -> str:
    """The last line a command wrote, "" when it wrote none: a failure's reason."""
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


# -- the session's debugger ---------------------------------------------------------------


class Debugger:
    """Debugging for one session: debugpy in place, the app under it, a forward to it."""

    def __init__(self, context: DebugContext, app: AppRunner) -> None:
        self._context = context
        self._app = app
        self._remote_port: int | None = None
        self.forward: Forward | None = None
        self._prepared_for: FileTransport | None = None
        self._extra_env: dict[str, str] = {}
        self._ready: asyncio.Task[bool] | None = None
        self._released = False

    async def start(self) -> dict[str, Any]:
        """Restart the app under debugpy; the attach configuration once it is ready.

        Raises DebugNotPossible (configuration) or TargetUnavailable (the target).
        """
        serving = await self._already_serving()
        if serving is not None:
            return serving
        remote_port = self._remote_port or self._pick_remote_port()
        debug_command(self._app.command, remote_port)  # refuse a non-Python app before anything
        await self._prepare()
        if self.forward is None or self.forward.closed:
            self.forward = await self._context.forwards.add(
                remote_port, shares_loopback=self._context.shares_loopback
            )
        self._remote_port = remote_port
        self._app.wrapper = self
        self._ready = None
        await self._app.restart()
        ready = self._started_watch()
        if ready is None or not await ready:
            tail = "\n".join(self._app.tail)
            raise TargetUnavailable(
                "the app did not start a debug server"
                + (f"; its last output:\n{tail}" if tail else "")
            )
        return attach_configuration(
            self._context.config, self._context.target.target_path, self.forward.local_port
        )

    async def _already_serving(self) -> dict[str, Any] | None:
        """The attach configuration when the app already runs under debugpy: an editor that
        attaches again (after a restart, say) must not restart the app once more."""
        ready = self._ready
        if (
            self._app.wrapper is not self
            or self._app.state != "running"
            or ready is None
            or ready.cancelled()
            or self.forward is None
            or self.forward.closed
        ):
            return None
        try:
            served = await asyncio.shield(ready)
        except asyncio.CancelledError:
            if ready.cancelled():  # the app restarted meanwhile: start it under debugpy anew
                return None
            raise
        if not served or self._app.state != "running":
            return None
        return attach_configuration(
            self._context.config, self._context.target.target_path, self.forward.local_port
        )

    async def close(self) -> None:
        """Stop watching, and stop a debug adapter the app left behind (the app is stopped)."""
        if self._ready is not None:
            self._ready.cancel()
        if self._app.wrapper is self:
            self._app.wrapper = None
        if self._remote_port is not None:
            with contextlib.suppress(TargetUnavailable):
                await self._port_script("release", 2.0)

    # -- the app's wrapper while debugging -----------------------------------------------

    async def launch(
        self, command: tuple[str, ...], env: Mapping[str, str]
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        """The same app, under debugpy."""
        assert self._remote_port is not None
        try:
            await self._prepare()
        except (DebugNotPossible, AgentError) as error:
            raise TargetUnavailable(f"cannot start the app under debugpy: {error}") from error
        released, self._released = self._released, False
        if not released and await self._port_script("release", 5.0) == 1:
            self._context.log(
                f"port {self._remote_port} in the target is still taken; starting anyway"
            )
        return debug_command(command, self._remote_port), {**env, **self._extra_env}

    async def stopping(self) -> None:
        """Stop the app's debug adapter with it: the adapter leaves the app's process group
        and keeps the app's output open, so stopping the group alone would not end it."""
        try:
            self._released = await self._port_script("release", 5.0) == 0
        except TargetUnavailable as error:
            self._context.log(f"cannot stop the debug adapter: {error}")

    async def _prepare(self) -> None:
        """Make debugpy importable by the app; once per connection to the target."""
        transport = self._context.transport()
        if transport is not None and transport is self._prepared_for:
            return
        self._extra_env = await make_debugpy_importable(
            self._context.target,
            transport,
            self._app.command,
            self._app.env,
            self._app.cwd,
            self._context.log,
        )
        self._prepared_for = transport

    def _pick_remote_port(self) -> int:
        """debug.port; on the local target, whose loopback is this machine's, the first free
        port from there."""
        wanted = self._context.config.debug.port
        if not self._context.shares_loopback:
            return wanted
        for port in range(wanted, min(wanted + 100, 65536)):
            with socket.socket() as probe:
                # As debugpy binds: a port with connections in TIME_WAIT is still free.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
        raise TargetUnavailable(f"no free port on 127.0.0.1 from {wanted} for the debug server")

    # -- readiness ----------------------------------------------------------------------

    def _started_watch(self) -> asyncio.Task[bool] | None:
        """The readiness watch of the app's latest start, if it started."""
        return self._ready

    def started(self) -> None:
        """The app started (again): tell the user when its debug server accepts an editor."""
        if self._ready is not None:
            self._ready.cancel()
        self._ready = asyncio.create_task(self._wait_ready())

    async def _wait_ready(self) -> bool:
        waiting = asyncio.ensure_future(self._port_script("wait", READY_TIMEOUT_SECONDS))
        try:
            while not waiting.done():
                if self._app.state not in ("running", "restarting"):
                    self._context.log("the debug server did not start: the app's output says why")
                    return False
                await asyncio.wait({waiting}, timeout=READY_POLL_SECONDS)
            code = waiting.result()
        except TargetUnavailable as error:
            self._context.log(f"cannot tell whether the debug server is ready: {error}")
            return False
        finally:
            waiting.cancel()
        local = self.forward.local_port if self.forward is not None else None
        if code == 0:
            self._context.log(
                f"debug server ready: attach to 127.0.0.1:{local} "
                f"(debugpy listens on 127.0.0.1:{self._remote_port} in the target)"
            )
            return True
        if code == 2:
            self._context.log(
                "cannot tell when the debug server is ready (the target has no /proc); "
                f"attach to 127.0.0.1:{local} once the app runs"
            )
            return True
        self._context.log(f"the debug server did not start within {READY_TIMEOUT_SECONDS:.0f} s")
        return False

    async def _port_script(self, mode: Literal["wait", "release"], seconds: float) -> int:
        assert self._remote_port is not None
        return await self._context.port_script(mode, self._remote_port, seconds)


async def make_debugpy_importable(
    target: Target,
    transport: FileTransport | None,
    command: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    log: Callable[[str], None],
) -> dict[str, str]:
    """What to add to ``command``'s environment for its Python to import debugpy in the
    target: nothing when it already can, else the daemon's own copy (copied in once).

    Raises DebugNotPossible (too old a Python) or TargetUnavailable (the target).
    """
    folder = target.target_path(copy_folder())
    facts = await _probe(target, command[0], f"{folder}/{COPY_MARKER}", env, cwd)
    if facts.python < MINIMUM_PYTHON:
        raise DebugNotPossible(
            f"the Python of {command[0]!r} in the target is {'.'.join(map(str, facts.python))}; "
            f"debugpy needs {'.'.join(map(str, MINIMUM_PYTHON))} or newer"
        )
    if facts.debugpy:
        return {}
    if not facts.copied:
        if transport is None:
            raise TargetUnavailable("the target is not connected")
        await _copy_debugpy(transport, folder, log)
    paths = [folder, *filter(None, facts.pythonpath.split(":"))]
    return {"PYTHONPATH": ":".join(paths), **COPIED_DEBUGPY_ENV}


async def _probe(
    target: Target,
    interpreter: str,
    marker: str,
    env: Mapping[str, str] | None,
    cwd: str | None,
) -> _Facts:
    argv = (interpreter, "-c", PROBE_SOURCE, marker)
    code, output, errors = await run_in_target(target, argv, env=env, cwd=cwd)
    if code != 0:
        said = last_line(errors)
        raise TargetUnavailable(
            f"cannot run {interpreter!r} in the target (exit code {code})"
            + (f": {said}" if said else "")
        )
    return msgspec.json.decode(output, type=_Facts)


async def _copy_debugpy(transport: FileTransport, folder: str, log: Callable[[str], None]) -> None:
    log(f"copying debugpy {debugpy.__version__} into the target ({folder})")
    files = debugpy_files()
    await transport.ensure_root(folder)
    result = await transport.write_many(folder, files)
    problems = [*result.failed, *((path, "vanished", "") for path in result.vanished)]
    if problems:
        path, _, message = problems[0]
        raise TargetUnavailable(f"cannot copy debugpy into the target: {path}: {message}")
    # The marker goes last: a copy cut short is never taken for a complete one.
    with tempfile.TemporaryDirectory() as scratch:
        marker = Path(scratch) / COPY_MARKER
        marker.write_text(json.dumps({"debugpy": debugpy.__version__}))
        await transport.write_many(folder, [(COPY_MARKER, marker)])


async def run_in_target(
    target: Target,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> tuple[int, bytes, bytes]:
    """Run a short command in the target: exit code, stdout, stderr. Stopped if cancelled."""
    execution = await target.exec(argv, env=env, cwd=cwd)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS + READY_TIMEOUT_SECONDS):
            output, errors = await asyncio.gather(
                execution.stdout.read(), _read_all(execution.stderr)
            )
            return await execution.wait(), output, errors
    except TimeoutError:
        with contextlib.suppress(TargetUnavailable, OSError):
            await execution.terminate(1.0)
        raise TargetUnavailable(f"{argv[0]!r} did not finish in the target") from None
    except BaseException:
        with contextlib.suppress(TargetUnavailable, OSError):
            await asyncio.shield(execution.terminate(1.0))
        raise


async def _read_all(stream: asyncio.StreamReader | None) -> bytes:
    return b"" if stream is None else await stream.read()
