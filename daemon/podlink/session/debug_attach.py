"""Debugging a process that already runs in the target, by the port its debugpy listens on
or by its process id.

By port: the image (or a person) started it as ``python -m debugpy --listen
127.0.0.1:PORT ...``: podlink restarts nothing, checks that something listens on PORT in the
target, forwards the port to a free local one and answers the same attach configuration as
for the app, with ``pathMappings`` from the sync entries. The forward stays for the rest of
the session and follows the target across reconnects, so an editor attaches again after a
restart of that process the same way.

By pid: debugpy's ``--pid`` injects debugpy into the process with gdb, which needs gdb in
the target and permission to ptrace there. podlink checks both first and refuses with what
is missing and how to add it; otherwise it injects debugpy listening on a port free in the
target, then carries on as by port.
"""

from __future__ import annotations

import contextlib
from pathlib import PurePosixPath
from typing import Any

import msgspec

from podlink.session.debug import (
    PYTHON_NAME,
    READY_TIMEOUT_SECONDS,
    DebugContext,
    DebugNotPossible,
    attach_configuration,
    last_line,
    make_debugpy_importable,
    run_in_target,
)
from podlink.session.ports import LOOPBACK, Forward
from podlink.targets.base import TargetUnavailable

LISTEN_CHECK_SECONDS = 2.0
# Linux's capability bit for CAP_SYS_PTRACE.
CAP_SYS_PTRACE = 19

# Run by the target's Python with the process id: what attaching by pid needs.
PTRACE_FACTS_SOURCE = r"""
import json, os, shutil, sys
pid = int(sys.argv[1])
facts = {"exists": os.path.isdir("/proc/%d" % pid), "exe": "", "gdb": shutil.which("gdb") or "",
         "ptraceScope": None, "capabilities": None}
try:
    facts["exe"] = os.readlink("/proc/%d/exe" % pid)
except OSError:
    pass
try:
    with open("/proc/sys/kernel/yama/ptrace_scope") as scope:
        facts["ptraceScope"] = int(scope.read())
except (OSError, ValueError):
    pass
try:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                facts["capabilities"] = int(line.split()[1], 16)
except (OSError, ValueError):
    pass
sys.stdout.write(json.dumps(facts))
"""


class PtraceFacts(msgspec.Struct, frozen=True, rename="camel"):
    """What the target says about attaching to one of its processes by pid."""

    exists: bool
    exe: str
    gdb: str
    ptrace_scope: int | None
    capabilities: int | None

    @property
    def may_ptrace(self) -> bool:
        return self.capabilities is not None and bool(self.capabilities >> CAP_SYS_PTRACE & 1)


def pid_refusal(pid: int, facts: PtraceFacts) -> str | None:
    """Why debugpy cannot be injected into process ``pid``, with how to fix each part; None
    when everything it needs is there."""
    if not facts.exists:
        return (
            f"no process {pid} runs in the target: give the id of a running Python process "
            "there (`ps -ef` in the container lists them)"
        )
    if facts.exe and not PYTHON_NAME.fullmatch(PurePosixPath(facts.exe).name):
        return (
            f"process {pid} in the target runs {facts.exe}, not Python; debugpy attaches to Python"
        )
    missing = []
    if not facts.gdb:
        missing.append(
            "gdb is not installed in the target (debugpy injects itself with it): install it "
            "in the image, for example `RUN apt-get update && apt-get install -y gdb` in the "
            "Dockerfile"
        )
    if facts.ptrace_scope == 3:
        missing.append(
            "ptrace is switched off on the host (kernel.yama.ptrace_scope = 3, which only a "
            "reboot undoes): start the process under debugpy instead and attach by port "
            "(debug.attach.port)"
        )
    elif facts.ptrace_scope in (1, 2) and not facts.may_ptrace:
        missing.append(
            f"the target may not ptrace process {pid} (kernel.yama.ptrace_scope = "
            f"{facts.ptrace_scope} and no CAP_SYS_PTRACE): run the container with "
            "`--cap-add SYS_PTRACE` (Docker), or add SYS_PTRACE to its "
            "securityContext.capabilities.add (Kubernetes)"
        )
    if not missing:
        return None
    return f"cannot attach to process {pid} by pid: " + "; ".join(missing)


class RunningProcessDebugger:
    """Forwards to debug servers that processes in the target already run, one per port."""

    def __init__(self, context: DebugContext) -> None:
        self._context = context
        self._by_port: dict[int, Forward] = {}
        self._by_pid: dict[int, int] = {}  # pid: the port debugpy was injected to listen on

    async def attach(self, remote_port: int) -> dict[str, Any]:
        """The attach configuration for the debug server on ``remote_port`` in the target.

        Raises DebugNotPossible when nothing listens there, TargetUnavailable (the target).
        """
        if not 1 <= remote_port <= 65535:
            raise DebugNotPossible(f"port {remote_port} is out of range 1-65535")
        code, said = await self._context.port_script_outcome(
            "wait", remote_port, LISTEN_CHECK_SECONDS
        )
        if code == 1:
            raise DebugNotPossible(
                f"nothing listens on port {remote_port} in the target; start the process "
                f"with `python -m debugpy --listen 127.0.0.1:{remote_port} ...` (debugpy "
                "installed in the target), or set debug.attach.port to the port it uses"
            )
        if code not in (0, 2):  # 2: no /proc to tell; the attach itself will say
            raise TargetUnavailable(
                f"cannot check port {remote_port} in the target (exit code {code})"
                + (f": {said}" if said else "")
            )
        forward = self._by_port.get(remote_port)
        if forward is None or forward.closed:
            forward = await self._context.forwards.add(
                remote_port, shares_loopback=self._context.shares_loopback
            )
            self._by_port[remote_port] = forward
        self._context.log(
            f"attaching to the debug server on port {remote_port} in the target "
            f"through 127.0.0.1:{forward.local_port}"
        )
        return attach_configuration(
            self._context.config, self._context.target.target_path, forward.local_port
        )

    async def attach_pid(self, pid: int) -> dict[str, Any]:
        """Inject debugpy into process ``pid`` in the target; the attach configuration.

        Raises DebugNotPossible with what the target lacks (gdb, ptrace permission), or
        TargetUnavailable (the target, or the injection failed).
        """
        served = self._by_pid.get(pid)
        if served is not None:  # injected before: its debug server still listens
            with contextlib.suppress(DebugNotPossible):
                return await self.attach(served)
        facts = await self._ptrace_facts(pid)
        refusal = pid_refusal(pid, facts)
        if refusal is not None:
            raise DebugNotPossible(refusal)
        interpreter = facts.exe or self._context.target.python
        env = await make_debugpy_importable(
            self._context.target,
            self._context.transport(),
            (interpreter,),
            None,
            None,
            self._context.log,
        )
        port = await self._context.free_port()
        self._context.log(f"injecting debugpy into process {pid} in the target (port {port})")
        argv = (interpreter, "-m", "debugpy", "--listen", f"{LOOPBACK}:{port}", "--pid", str(pid))
        code, output, errors = await run_in_target(self._context.target, argv, env=env)
        if code != 0:
            said = last_line(errors or output)
            raise TargetUnavailable(
                f"debugpy could not attach to process {pid} (exit code {code})"
                + (f": {said}" if said else "")
            )
        if await self._context.port_script("wait", port, READY_TIMEOUT_SECONDS) == 1:
            raise TargetUnavailable(
                f"debugpy was injected into process {pid} but did not listen on port {port} "
                f"within {READY_TIMEOUT_SECONDS:.0f} s; the process may be blocked in native "
                "code, or stopped"
            )
        self._by_pid[pid] = port
        return await self.attach(port)

    async def _ptrace_facts(self, pid: int) -> PtraceFacts:
        argv = (self._context.target.python, "-c", PTRACE_FACTS_SOURCE, str(pid))
        code, output, errors = await run_in_target(self._context.target, argv)
        if code != 0:
            said = last_line(errors)
            raise TargetUnavailable(
                f"cannot check process {pid} in the target (exit code {code})"
                + (f": {said}" if said else "")
            )
        return msgspec.json.decode(output, type=PtraceFacts)
