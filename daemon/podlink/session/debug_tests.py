"""Debugging tests: pytest run under debugpy in the target, held until a debugger attaches.

``podlink/debugTests`` starts an ordinary test run (``testing.runner``) whose command runs
as ``python -m debugpy --listen 127.0.0.1:PORT --wait-for-client -m pytest ...`` on a port
free in the target, forwarded to a free local one. It answers with the attach configuration
once that port listens; the run goes on once the editor has attached, and its results arrive
as those of any run. When the run ends, the debug adapter it left and the forward go.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Literal

from podlink.session.debug import (
    READY_TIMEOUT_SECONDS,
    DebugContext,
    attach_configuration,
    debug_command,
    make_debugpy_importable,
    run_in_target,
)
from podlink.session.ports import Forward
from podlink.targets.base import TargetUnavailable

# How long pytest may take from the end of its session to its exit (session-scoped
# fixtures are torn down in between) before its debug adapter is stopped anyway.
EXIT_WAIT_SECONDS = 30.0

# Run with PORT SECONDS: wait until the debuggee listening through 127.0.0.1:PORT has
# exited, then stop the debug adapter serving PORT (it daemonized out of pytest's group).
RELEASE_AFTER_EXIT_SOURCE = r"""
import os, signal, sys, time
port, deadline = sys.argv[1].encode(), time.monotonic() + float(sys.argv[2])
def processes():
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                yield int(name), open("/proc/%s/cmdline" % name, "rb").read().split(b"\0")
            except OSError:
                pass
def is_adapter(args):
    return b"--for-server" in args and b"--port" in args \
        and args[args.index(b"--port") + 1:args.index(b"--port") + 2] == [port]
def debuggee_runs():
    return any(b"127.0.0.1:" + port in args and not is_adapter(args) for _, args in processes())
while debuggee_runs() and time.monotonic() < deadline:
    time.sleep(0.02)
for pid, args in processes():
    if is_adapter(args):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


class TestDebugging:
    """One test run under debugpy: what its command becomes, when it can be attached to,
    and the clean-up after it (``testing.runner.RunsUnder``)."""

    __test__ = False

    def __init__(self, context: DebugContext) -> None:
        self._context = context
        self._remote_port: int | None = None
        self._forward: Forward | None = None
        self._launched = asyncio.get_running_loop().create_future()
        self._ready: asyncio.Task[bool] | None = None

    async def launch(
        self, argv: tuple[str, ...], env: Mapping[str, str], cwd: str
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        """pytest's command, under debugpy waiting for a client."""
        debug_command(argv, 0, setting="test.command")  # refuse a non-Python command first
        extra = await make_debugpy_importable(
            self._context.target, self._context.transport(), argv, env, cwd, self._context.log
        )
        self._remote_port = await self._context.free_port()
        self._forward = await self._context.forwards.add(
            self._remote_port, shares_loopback=self._context.shares_loopback
        )
        command = debug_command(
            argv, self._remote_port, setting="test.command", wait_for_client=True
        )
        return command, {**env, **extra}

    def started(self) -> None:
        self._ready = asyncio.create_task(self._wait_listening())
        if not self._launched.done():
            self._launched.set_result(None)

    async def configuration(self) -> dict[str, Any]:
        """The attach configuration, once pytest waits for a debugger.

        Raises TargetUnavailable when the debug server does not start."""
        await self._launched
        assert self._ready is not None and self._forward is not None
        if not await self._ready:
            raise TargetUnavailable(
                f"pytest's debug server did not listen on port {self._remote_port} in the "
                f"target within {READY_TIMEOUT_SECONDS:.0f} s; the test log says why"
            )
        self._context.log(
            f"pytest waits for a debugger: attach to 127.0.0.1:{self._forward.local_port}"
        )
        return attach_configuration(
            self._context.config, self._context.target.target_path, self._forward.local_port
        )

    async def finishing(self) -> None:
        """The debug adapter leaves pytest's process group and keeps its output open, and a
        Kubernetes exec ends only when all its output does: stop the adapter once pytest
        has exited."""
        if self._remote_port is None:
            return
        argv = (
            self._context.target.python,
            "-c",
            RELEASE_AFTER_EXIT_SOURCE,
            str(self._remote_port),
            str(EXIT_WAIT_SECONDS),
        )
        with contextlib.suppress(TargetUnavailable):
            await run_in_target(self._context.target, argv)

    async def close(self) -> None:
        """Stop the debug adapter the run left behind and remove its forward."""
        if self._ready is not None:
            self._ready.cancel()
        if self._remote_port is not None:
            with contextlib.suppress(TargetUnavailable):
                await self._port_script("release", 2.0)
        if self._forward is not None:
            await self._context.forwards.remove(self._forward.local_port)

    async def _wait_listening(self) -> bool:
        # 2: the target has no /proc to tell; the attach itself will say.
        return await self._port_script("wait", READY_TIMEOUT_SECONDS) in (0, 2)

    async def _port_script(self, mode: Literal["wait", "release"], seconds: float) -> int:
        assert self._remote_port is not None
        return await self._context.port_script(mode, self._remote_port, seconds)
