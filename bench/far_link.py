"""A far link for benchmarks: a network namespace, a veth pair, a rate limit and a delay.

``FarLink`` makes a namespace ``podlink-far-ID`` joined to the host by a veth pair on a
/30 of 10.251.0.0/16 that no interface uses yet, puts a ``tbf`` rate limit on both ends, and
starts ``bench.delay_relay`` in the namespace, relaying ``ADDRESS:2375`` to the Docker
Engine's Unix socket with half the round trip added each way. Tools that use
``DOCKER_HOST=tcp://ADDRESS:2375`` (podlink, the docker CLI) then reach the engine across the
link, and nothing outside the namespaces made here is touched. ``close()`` (also on SIGTERM,
Ctrl-C and a failure) stops the relay and removes the qdiscs, the veth pair and the
namespace; ``sweep()`` removes what an earlier run killed with SIGKILL left behind.
Needs root, ``ip`` and ``tc``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from types import FrameType, TracebackType

PREFIX = "podlink-far-"
POOL = ipaddress.ip_network("10.251.0.0/16")
RELAY_PORT = 2375
REPO = Path(__file__).resolve().parent.parent


class LinkUnavailable(Exception):
    """The machine cannot make the link (not root, no ``ip``/``tc``, no veth)."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise LinkUnavailable(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done


def _free_subnet() -> ipaddress.IPv4Network:
    used = _run("ip", "-4", "-o", "addr", "show").stdout
    taken = {
        ipaddress.ip_interface(field).network
        for line in used.splitlines()
        for index, field in enumerate(line.split())
        if index > 0 and line.split()[index - 1] == "inet"
    }
    for subnet in POOL.subnets(new_prefix=30):
        if not any(subnet.overlaps(other) for other in taken):
            return subnet  # type: ignore[return-value]
    raise LinkUnavailable(f"no free /30 left in {POOL}")


def sweep() -> None:
    """Remove namespaces (and with them their veth ends) of runs that were killed."""
    listed = _run("ip", "netns", "list", check=False).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX):
            for pid in _run("ip", "netns", "pids", name, check=False).stdout.split():
                os.kill(int(pid), signal.SIGKILL)
            _run("ip", "netns", "del", name, check=False)


class FarLink:
    def __init__(self, round_trip_ms: float, rate_mbit: float) -> None:
        self.round_trip_ms = round_trip_ms
        self.rate_mbit = rate_mbit
        run_id = uuid.uuid4().hex[:6]
        self.namespace = PREFIX + run_id
        self.host_end = f"plf{run_id}a"
        self.far_end = f"plf{run_id}b"
        self.address = ""
        self._relay: subprocess.Popen[str] | None = None
        self._previous_term: object = None

    @property
    def docker_host(self) -> str:
        return f"tcp://{self.address}:{RELAY_PORT}"

    def __enter__(self) -> FarLink:
        if os.geteuid() != 0:
            raise LinkUnavailable("the far link needs root (network namespaces and qdiscs)")
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                raise LinkUnavailable(f"the far link needs {tool} (Debian: iproute2)")
        self._previous_term = signal.signal(signal.SIGTERM, self._terminated)
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _terminated(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def _make(self) -> None:
        sweep()
        subnet = _free_subnet()
        host_address, far_address = list(subnet.hosts())
        self.address = str(far_address)
        _run("ip", "netns", "add", self.namespace)
        _run("ip", "link", "add", self.host_end, "type", "veth", "peer", "name", self.far_end)
        _run("ip", "link", "set", self.far_end, "netns", self.namespace)
        _run("ip", "addr", "add", f"{host_address}/30", "dev", self.host_end)
        _run("ip", "link", "set", self.host_end, "up")
        inside = ("ip", "netns", "exec", self.namespace)
        _run(*inside, "ip", "addr", "add", f"{far_address}/30", "dev", self.far_end)
        _run(*inside, "ip", "link", "set", self.far_end, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        # The queue holds about one round trip at the rate, as a real bottleneck would.
        burst = "64kb"
        limit = f"{max(int(self.rate_mbit * 125 * self.round_trip_ms), 65536)}b"
        shape = ("tbf", "rate", f"{self.rate_mbit}mbit", "burst", burst, "limit", limit)
        _run("tc", "qdisc", "add", "dev", self.host_end, "root", *shape)
        _run(*inside, "tc", "qdisc", "add", "dev", self.far_end, "root", *shape)
        self._relay = subprocess.Popen(
            [
                *inside, sys.executable, "-m", "bench.delay_relay",
                "--listen", f"{self.address}:{RELAY_PORT}", "--unix", "/var/run/docker.sock",
                "--one-way-ms", str(self.round_trip_ms / 2),
            ],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._relay.stdout is not None
        if self._relay.stdout.readline().strip() != "listening":
            raise LinkUnavailable("the delay relay did not start")

    def close(self) -> None:
        if self._relay is not None:
            self._relay.terminate()
            try:
                self._relay.wait(5)
            except subprocess.TimeoutExpired:
                self._relay.kill()
            self._relay = None
        _run("ip", "link", "del", self.host_end, check=False)
        _run("ip", "netns", "del", self.namespace, check=False)
        if self._previous_term is not None:
            signal.signal(signal.SIGTERM, self._previous_term)  # type: ignore[arg-type]
            self._previous_term = None
