"""Debugging a process that already runs in the target with debugpy listening.

The image (or a person) started it as ``python -m debugpy --listen 127.0.0.1:PORT ...``:
podlink restarts nothing, checks that something listens on PORT in the target, forwards the
port to a free local one and answers the same attach configuration as for the app, with
``pathMappings`` from the sync entries. The forward stays for the rest of the session and
follows the target across reconnects, so an editor attaches again after a restart of that
process the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podlink.config import Config
from podlink.session.debug import PORT_SOURCE, DebugNotPossible, attach_configuration, run_in_target
from podlink.session.ports import Forward, PortForwards
from podlink.targets.base import Target, TargetUnavailable

LISTEN_CHECK_SECONDS = 2.0


class RunningProcessDebugger:
    """Forwards to debug servers that processes in the target already run, one per port."""

    def __init__(
        self,
        *,
        config: Config,
        target: Target,
        forwards: PortForwards,
        shares_loopback: bool,
        log: Callable[[str], None],
    ) -> None:
        self._config = config
        self._target = target
        self._forwards = forwards
        self._shares_loopback = shares_loopback
        self._log = log
        self._by_port: dict[int, Forward] = {}

    async def attach(self, remote_port: int) -> dict[str, Any]:
        """The attach configuration for the debug server on ``remote_port`` in the target.

        Raises DebugNotPossible when nothing listens there, TargetUnavailable (the target).
        """
        if not 1 <= remote_port <= 65535:
            raise DebugNotPossible(f"port {remote_port} is out of range 1-65535")
        argv = (
            self._target.python,
            "-c",
            PORT_SOURCE,
            "wait",
            str(remote_port),
            str(LISTEN_CHECK_SECONDS),
        )
        code, _, errors = await run_in_target(self._target, argv)
        if code == 1:
            raise DebugNotPossible(
                f"nothing listens on port {remote_port} in the target; start the process "
                f"with `python -m debugpy --listen 127.0.0.1:{remote_port} ...` (debugpy "
                "installed in the target), or set debug.attach.port to the port it uses"
            )
        if code not in (0, 2):  # 2: no /proc to tell; the attach itself will say
            detail = errors.decode(errors="replace").strip().splitlines()
            raise TargetUnavailable(
                f"cannot check port {remote_port} in the target (exit code {code})"
                + (f": {detail[-1]}" if detail else "")
            )
        forward = self._by_port.get(remote_port)
        if forward is None or forward.closed:
            forward = await self._forwards.add(remote_port, shares_loopback=self._shares_loopback)
            self._by_port[remote_port] = forward
        self._log(
            f"attaching to the debug server on port {remote_port} in the target "
            f"through 127.0.0.1:{forward.local_port}"
        )
        return attach_configuration(self._config, self._target.target_path, forward.local_port)
