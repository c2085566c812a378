"""The Docker target: a container on a Docker Engine, reached through the Engine API.

Attach to an existing container by name or id, or create a dev container from an image or a
Dockerfile (``containers``); the Engine's events for it become target events (``events``).
Blocking SDK calls run in worker threads; exec streams are asynchronous (``exec``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from podlink.config import DockerTargetConfig
from podlink.targets.base import (
    PortRefused,
    TargetDescription,
    TargetEvent,
    TargetEventKind,
    TargetUnavailable,
)
from podlink.targets.capabilities import Leftovers, LogRequest
from podlink.targets.docker.containers import (
    ContainerFinder,
    container_name_for,
    look_up_container,
)
from podlink.targets.docker.events import ContainerEvents
from podlink.targets.docker.exec import (
    DockerExec,
    EngineAddress,
    EngineUnavailable,
    engine_error_text,
    exec_environment,
    open_engine,
    start_hijacked,
    wrapped_argv,
)

log = logging.getLogger(__name__)

# Connects to a port on the container's own loopback and relays it over stdin/stdout: one
# exec per connection, as kubectl port-forward uses one stream per connection. It writes
# one byte once connected, so a refused port is an error at once, not an empty stream.
RELAY_REFUSED = 3  # the relay's exit code when the port refuses the connection
RELAY_SOURCE = r"""
import os, socket, sys, threading
try:
    conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
except OSError as error:
    sys.stderr.write("%s\n" % error)
    sys.exit(3)
conn.settimeout(None)  # the timeout was for connecting; an idle connection is fine
os.write(1, b"\x01")
def upstream():
    while True:
        data = os.read(0, 262144)
        if not data:
            break
        conn.sendall(data)
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=upstream, daemon=True).start()
while True:
    data = memoryview(conn.recv(262144))
    if not data:
        break
    while data:
        data = data[os.write(1, data):]
"""


async def _discard_connection(
    connecting: asyncio.Task[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
) -> None:
    """Close a connection opened for an exec that could not be started."""
    connecting.cancel()
    await asyncio.wait([connecting])
    if not connecting.cancelled() and connecting.exception() is None:
        connecting.result()[1].close()


class DockerTarget:
    def __init__(
        self,
        config: DockerTargetConfig,
        folder: Path,
        on_log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self._config = config
        self._folder = folder
        self._on_log = on_log
        self._client: docker.DockerClient | None = None
        self._address: EngineAddress | None = None
        self._container: Container | None = None
        self._created_by_us = config.container is None
        self._execs: set[DockerExec] = set()
        self._events: asyncio.Queue[TargetEvent | None] = asyncio.Queue()
        self._container_events: ContainerEvents | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- connecting -----------------------------------------------------------------------

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._client is None:
            self._address, self._client = await asyncio.to_thread(self._open_client)
        if self._config.container is not None:
            self._container = await asyncio.to_thread(self._finder().attach, self._config.container)
        else:
            self._container = await asyncio.to_thread(self._finder().create_or_reuse)
        if self._container_events is None:
            self._container_events = ContainerEvents(
                self._require_client(),
                self._events,
                name=self._name,
                current_id=lambda: self._container.id if self._container is not None else "",
            )
            self._container_events.start()
        self._events.put_nowait(TargetEvent(TargetEventKind.STARTED))

    def _finder(self) -> ContainerFinder:
        return ContainerFinder(
            self._require_client(), self._address, self._config, self._folder, self._log_from_thread
        )

    def _open_client(self) -> tuple[EngineAddress, docker.DockerClient]:
        try:
            address, client = open_engine()
        except EngineUnavailable as error:
            raise TargetUnavailable(str(error)) from error
        return address, client

    def _log_from_thread(self, line: str) -> None:
        """Hand a line to the session on its event loop: builds run in a worker thread."""
        assert self._loop is not None, "connect() sets the loop before any build"
        self._loop.call_soon_threadsafe(self._on_log, line)

    # -- running ------------------------------------------------------------------------

    async def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> DockerExec:
        container = self._require_container()
        api = self._require_client().api
        assert self._address is not None
        # The hijacked start needs a connection of its own: open it while the exec is created,
        # which saves a round trip to a far Engine.
        connecting = asyncio.create_task(self._address.connect())
        try:
            created = await asyncio.to_thread(
                api.exec_create,
                container.id,
                wrapped_argv(argv, tty=tty),
                stdin=True,
                stdout=True,
                stderr=True,
                tty=tty,
                environment=exec_environment(env),
                workdir=cwd,
            )
            reader, writer = await start_hijacked(
                self._address, api._version, created["Id"], tty=tty, connection=await connecting
            )
        except (docker.errors.APIError, EngineUnavailable) as error:
            await _discard_connection(connecting)
            raise TargetUnavailable(
                f"cannot run {argv[0]!r} in container {self._name()}: {engine_error_text(error)}"
            ) from error
        execution = DockerExec(
            created["Id"],
            reader,
            writer,
            tty=tty,
            wants_stdin=stdin or tty,
            inspect=api.exec_inspect,
            signal_group=self._signal_group,
        )
        execution.engine_resize = api.exec_resize
        self._execs.add(execution)
        execution_done = asyncio.ensure_future(execution.wait())
        execution_done.add_done_callback(lambda _: self._execs.discard(execution))
        if not tty and await execution.wait_for_pid() is None:
            code = await execution.wait()
            raise TargetUnavailable(
                f"cannot run {argv[0]!r} in container {self._name()}: exit code {code} "
                "(does the image have /bin/sh?)"
            )
        return execution

    def _signal_group(self, pid: int, signal_name: str) -> None:
        container = self._container
        if container is None:
            return
        with contextlib.suppress(docker.errors.APIError):
            # dash's kill takes no "--": a negative pid right after the signal means the group.
            container.exec_run(["sh", "-c", f"kill -{signal_name} -{pid} 2>/dev/null; true"])

    async def tunnel(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        execution = await self.exec([self.python, "-c", RELAY_SOURCE, str(port)], stdin=True)
        first = await execution.stdout.read(1)
        if first != b"\x01":
            assert execution.stderr is not None
            reason = (await execution.stderr.read()).decode(errors="replace").strip()
            if await execution.wait() == RELAY_REFUSED:
                raise PortRefused(
                    f"nothing accepts connections on 127.0.0.1:{port} in container "
                    f"{self._name()}: {reason}"
                )
            raise TargetUnavailable(
                f"cannot relay to port {port} in container {self._name()}: "
                f"{reason or 'the relay could not start (is python3 there?)'}"
            )
        assert execution.stdin is not None
        execution.limit_buffering()
        return execution.stdout, execution.stdin

    @property
    def python(self) -> str:
        return "python3"

    def target_path(self, remote: str) -> str:
        return remote

    def describe(self) -> TargetDescription:
        container = self._container
        if container is None:
            return TargetDescription(kind="docker", name=self._config.container or "")
        image = container.attrs.get("Config", {}).get("Image", "")
        return TargetDescription(
            kind="docker",
            name=container.name or container.id[:12],
            detail={
                "id": container.id[:12],
                "image": image,
                "engine": str(self._address),
                "createdByPodlink": self._created_by_us,
            },
        )

    # -- for terminal commands (shell, logs) -------------------------------------------------

    async def is_running(self) -> bool:
        """Whether this target's container exists and runs (``Releases``). Works before
        ``connect``, which may start the container."""
        container = await asyncio.to_thread(self._look_up_container)
        return container is not None and container.status == "running"

    def container_logs(self, request: LogRequest) -> Iterator[bytes]:
        """The output of the container's own main process, stdout and stderr merged
        (``ContainerLogs``). It starts nothing, so the logs of a stopped container can be
        read too. A container has no earlier instance and no siblings: ``previous`` and
        ``every_pod`` are refused."""
        if self._config.container is None:
            self._on_log(
                "podlink: this is the dev container podlink created; the app runs in it under "
                "`podlink up`, which shows its output; here is the container's own log"
            )
        if request.previous or request.every_pod:
            flag = "--previous" if request.previous else "--all"
            raise TargetUnavailable(
                f"{flag} is for pods: a Docker container keeps one log across restarts and "
                "has no sibling pods; `podlink logs` without it prints that log"
            )
        follow, tail = request.follow, request.tail
        container = self._container or self._look_up_container()
        if container is None and self._config.container is not None:
            raise TargetUnavailable(
                f"no container named {self._config.container!r} on the Docker Engine at "
                f"{self._address}; `docker ps -a` lists the containers there"
            )
        if container is None:
            raise TargetUnavailable(
                f"the dev container for {self._folder} does not exist yet; `podlink up` creates it"
            )
        try:
            chunks: Iterator[bytes] = container.logs(
                stream=True, follow=follow, tail="all" if tail is None else tail
            )
        except docker.errors.APIError as error:
            raise TargetUnavailable(
                f"cannot read the logs of container {self._name()}: {engine_error_text(error)}"
            ) from error
        return chunks

    def find_leftovers(self, remotes: Sequence[str]) -> Leftovers:
        """The agent's temporary files in the container podlink attached to
        (``LeavesLeftovers``); a dev container podlink created goes whole, with the managed
        containers, so nothing is looked for in it."""
        if self._config.container is None:
            return Leftovers()
        from podlink.targets.docker.admin import AttachedContainerFiles

        return AttachedContainerFiles.find(self._config.container, remotes)

    async def release(self) -> None:
        """Like ``close``, but leave the container running even if podlink created it: a
        session elsewhere (``podlink up``, an editor) may be using it (``Releases``)."""
        self._created_by_us = False
        await self.close()

    def _look_up_container(self) -> Container | None:
        if self._client is None:
            self._address, self._client = self._open_client()
        return look_up_container(self._client, self._name())

    # -- lifecycle events -------------------------------------------------------------------

    async def events(self) -> AsyncIterator[TargetEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    # -- helpers ------------------------------------------------------------------------

    def _require_client(self) -> docker.DockerClient:
        if self._client is None:
            raise TargetUnavailable("the Docker target is not connected")
        return self._client

    def _require_container(self) -> Container:
        if self._container is None or self._closed:
            raise TargetUnavailable("the Docker target is not connected")
        return self._container

    def _name(self) -> str:
        if self._container is not None and self._container.name:
            return str(self._container.name)
        return self._config.container or container_name_for(self._folder)

    async def close(self) -> None:
        self._closed = True
        running = list(self._execs)
        await asyncio.gather(
            *(each.terminate(grace_seconds=2.0) for each in running), return_exceptions=True
        )
        if self._container_events is not None:
            self._container_events.close()
        container = self._container
        if self._created_by_us and container is not None:
            # The dev container is podlink's: stop it with the session, keep it for a quick
            # start next time (`podlink purge` removes it).
            with contextlib.suppress(docker.errors.APIError):
                await asyncio.to_thread(container.stop, timeout=2)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._client.close)
        self._events.put_nowait(None)
