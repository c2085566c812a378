"""The Kubernetes target: a container in a pod, reached through the API server.

The pod is picked by name or label selector from a kubeconfig context or the in-cluster
service account (``cluster``, ``pods``). Commands run over the exec subresource and tunnels
over port-forward, both WebSockets opened by the official client (``streams``). A watch on
the pod turns deletion, container restarts and replacement by a new Ready pod into target
events (``follow``); the session reconnects on them, and ``connect`` picks whichever pod
matches then. Blocking client calls run in worker threads.

With ``deploy:`` the target applies the workspace's manifests first (``deploy``), and with
``build.image`` it builds the image and delivers it to the cluster before that
(``image_steps``); what it made is listed for ``podlink purge`` (``ledger``).

With ``devMode`` the target first patches the Deployment (``devmode``), then follows the
pods of the Deployment's selector that run the patched template, and restores the
Deployment on ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

from podlink.config import (
    DeployConfig,
    ImageBuildConfig,
    KubernetesTargetConfig,
)
from podlink.targets.base import (
    TargetDescription,
    TargetEvent,
    TargetEventKind,
    TargetUnavailable,
)
from podlink.targets.capabilities import Leftovers, LogRequest
from podlink.targets.kubernetes.cluster import (
    REQUEST_TIMEOUT,
    load_client_models_soon,
)
from podlink.targets.kubernetes.connection import ClusterConnection
from podlink.targets.kubernetes.devmode import DevMode, session_owner
from podlink.targets.kubernetes.follow import PodFollower, PodWatch
from podlink.targets.kubernetes.logs import (
    PodLog,
    logs_of,
)
from podlink.targets.kubernetes.pods import (
    is_ready,
    is_usable,
    last_events,
    named_pod,
    pick_container,
)
from podlink.targets.kubernetes.streams import (
    KubeExec,
    open_exec_stream,
    open_forwarded_socket,
    signal_group,
    stop_capturing,
    wrapped_argv,
)
from podlink.targets.kubernetes.trouble import why_unusable
from podlink.targets.kubernetes.workload import WorkloadSetUp

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


# Failed watches in a row before the session hears of it: one blip is retried quietly.


class KubernetesTarget:
    def __init__(
        self,
        config: KubernetesTargetConfig,
        kubeconfig: str | None = None,
        *,
        folder: Path | None = None,
        deploy: DeployConfig | None = None,
        on_log: Callable[[str], None] | None = None,
        image: ImageBuildConfig | None = None,
    ) -> None:
        """``folder``: the workspace, which with this machine names the session that holds
        a devMode Deployment (the working directory when not given), and where ``deploy``'s
        manifests are. ``on_log`` receives the deploy's progress lines. ``image`` is built
        and delivered before the deploy, which then runs it."""
        load_client_models_soon()
        self._config = config
        self._folder = folder or Path.cwd()
        self._on_log = on_log or log.info
        self._kubeconfig = kubeconfig
        self._owner = session_owner(folder or Path.cwd())
        self._dev_mode: DevMode | None = None
        # In dev mode the pods are the Deployment's, whatever pod: says.
        self._selector = config.pod.selector
        self._cluster = ClusterConnection(config, kubeconfig)
        self._workload = WorkloadSetUp(self._cluster, self._folder, deploy, image, self._on_log)
        self._pod_name = config.pod.name or ""
        self._container = config.container or ""
        self._follower = PodFollower()
        self._execs: set[KubeExec] = set()
        self._events: asyncio.Queue[TargetEvent | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pod_watch = PodWatch(
            self._cluster, self._follower, self._emit_all, lambda: self._pod_name
        )
        self._closed = False

    # -- connecting -----------------------------------------------------------------------

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._workload.put_in_place()
        if self._config.dev_mode is not None:
            await asyncio.to_thread(self._engage_dev_mode)
        pod = await asyncio.to_thread(self._find_pod)
        self._pod_name = pod.metadata.name
        self._follower.follow(pod, self._container)
        if self._selector is not None:
            self._pod_watch.start({"label_selector": self._selector})
        else:
            self._pod_watch.start({"field_selector": f"metadata.name={self._config.pod.name}"})
        self._events.put_nowait(TargetEvent(TargetEventKind.STARTED))

    def deploy(self) -> None:
        """Apply the ``deploy:`` manifests and wait for their rollouts (``Deploys``).

        Blocking. Raises ConfigError for a manifest that does not parse (before the cluster
        is contacted), TargetUnavailable for what the cluster refuses."""
        self._workload.deploy()

    def find_leftovers(self, remotes: Sequence[str]) -> Leftovers:
        """Deployments dev mode left patched in the namespace and what the workspace's ledger
        lists (``LeavesLeftovers``); the agent's temporary files in a pod are not looked for."""
        from podlink.targets.kubernetes.admin import KubernetesLeftovers

        return KubernetesLeftovers.find(self._config, self._folder, self._kubeconfig)

    def _engage_dev_mode(self) -> None:
        """Patch the Deployment (again after a reconnect) and wait for its dev pod."""
        assert self._config.dev_mode is not None
        if self._dev_mode is None:
            self._dev_mode = DevMode(
                self._cluster.api,
                self._cluster.namespace,
                self._config.dev_mode,
                container=self._config.container,
                owner=self._owner,
            )
        name = self._dev_mode.deployment
        try:
            self._dev_mode.engage()
        except ApiException as error:
            raise self._cluster.failure(
                error, f"patching deployment {name} for devMode", "patch", "deployments"
            ) from error
        except TargetUnavailable:
            raise
        except Exception as error:
            raise self._cluster.failure(error, f"patching deployment {name} for devMode") from error
        self._selector = self._dev_mode.selector
        try:
            self._dev_mode.wait_for_pod(self._cluster.core(), is_ready)
        except Exception as error:
            raise self._cluster.failure(
                error, "waiting for the devMode pod", "list", "pods"
            ) from error

    def _release_dev_mode(self) -> None:
        dev_mode = self._dev_mode
        if dev_mode is None or not dev_mode.engaged:
            return
        try:
            dev_mode.release()
        except Exception as error:  # closing must go on; the annotation lets purge finish it
            log.warning(
                "could not restore deployment %s (%s); `podlink purge` restores it",
                dev_mode.deployment,
                error,
            )

    def _find_pod(self) -> Any:
        core = self._cluster.core()
        selector = self._selector
        try:
            if selector is None:
                candidates = [
                    named_pod(
                        core, self._cluster.namespace, self._config.pod.name, self._cluster.where()
                    )
                ]
            else:
                listing = core.list_namespaced_pod(
                    self._cluster.namespace,
                    label_selector=selector,
                    _request_timeout=REQUEST_TIMEOUT,
                )
                candidates = [p for p in listing.items if not p.metadata.deletion_timestamp]
                if self._dev_mode is not None:
                    # Pods of the template from before the patch may still be around.
                    candidates = [p for p in candidates if self._dev_mode.runs_dev_spec(p)]
                if not candidates and self._dev_mode is not None:
                    namespace = self._cluster.namespace
                    raise TargetUnavailable(
                        f"no pod of deployment {self._dev_mode.deployment} runs the devMode "
                        f"command yet (selector {selector!r}, namespace {namespace!r}, "
                        f"{self._cluster.where()}); `kubectl rollout status deployment/"
                        f"{self._dev_mode.deployment} -n {namespace}` shows why"
                    )
                if not candidates:
                    raise TargetUnavailable(
                        f"no pod in namespace {self._cluster.namespace!r} matches the selector "
                        f"{selector!r} ({self._cluster.where()})"
                    )
        except ApiException as error:
            raise self._cluster.failure(
                error, "looking up the pod", "get" if selector is None else "list", "pods"
            ) from error
        except TargetUnavailable:
            raise
        except Exception as error:
            raise self._cluster.failure(error, "looking up the pod") from error
        candidates.sort(key=lambda p: p.metadata.creation_timestamp or 0, reverse=True)
        container = pick_container(candidates[0], self._config.container)
        usable = [p for p in candidates if is_usable(p, container)]
        if not usable:
            events = last_events(
                self._cluster.core(), self._cluster.namespace, candidates[0].metadata.name
            )
            raise TargetUnavailable(
                why_unusable(candidates[0], container, self._cluster.namespace, events)
            )
        ready = [p for p in usable if is_ready(p)]
        self._container = container
        return (ready or usable)[0]

    # -- logs (``ContainerLogs``) --------------------------------------------------------

    def container_logs(self, request: LogRequest) -> PodLog:
        """The container log of the session's pod, or with ``every_pod`` of every pod of its
        Deployment (or selector). Blocking; needs no ``connect`` and changes nothing, so a
        crash-looping pod's log (``previous``: the instance that crashed) can be read too."""
        return logs_of(self._cluster, self._config, request)

    # -- running ------------------------------------------------------------------------

    async def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> KubeExec:
        pod = self._pod_name
        command = wrapped_argv(argv, tty=tty, env=env, cwd=cwd)

        def open_exec() -> Any:
            with self._cluster.stream_core() as core:
                return open_exec_stream(
                    core,
                    pod,
                    self._cluster.namespace,
                    self._container,
                    command,
                    stdin=stdin,
                    tty=tty,
                )

        try:
            websocket = await asyncio.to_thread(open_exec)
        except Exception as error:
            raise self._cluster.failure(
                error, f"running {argv[0]!r} in pod {pod}", "create", "pods/exec"
            ) from error
        stop_capturing(websocket)
        execution = KubeExec(
            websocket, tty=tty, wants_stdin=stdin or tty, signal_group=self._signal_group
        )
        await execution.start()
        self._execs.add(execution)
        done = asyncio.ensure_future(execution.wait())
        done.add_done_callback(lambda _: self._execs.discard(execution))
        if not tty and await execution.wait_for_pid() is None:
            code = await execution.wait()
            raise TargetUnavailable(
                f"cannot run {argv[0]!r} in pod {pod} (container {self._container}): exit code "
                f"{code} (does the image have /bin/sh, and is the container running?)"
            )
        return execution

    def _signal_group(self, pid: int, signal_name: str) -> None:
        with contextlib.suppress(Exception), self._cluster.stream_core() as core:
            signal_group(
                core, self._pod_name, self._cluster.namespace, self._container, pid, signal_name
            )

    async def tunnel(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        pod = self._pod_name

        def open_forward() -> Any:
            with self._cluster.stream_core() as core:
                return portforward(
                    core.connect_get_namespaced_pod_portforward,
                    pod,
                    self._cluster.namespace,
                    ports=str(port),
                )

        try:
            forward = await asyncio.to_thread(open_forward)
        except Exception as error:
            raise self._cluster.failure(
                error,
                f"forwarding port {port} of pod {self._pod_name}",
                "create",
                "pods/portforward",
            ) from error
        return await open_forwarded_socket(forward, port, f"pod {self._pod_name}")

    @property
    def python(self) -> str:
        return "python3"

    def target_path(self, remote: str) -> str:
        return remote

    def describe(self) -> TargetDescription:
        pod = self._config.pod
        return TargetDescription(
            kind="kubernetes",
            name=self._pod_name or pod.name or pod.selector or "",
            detail={
                "namespace": self._cluster.namespace,
                "context": self._cluster.context,
                "container": self._container,
                "server": self._cluster.server,
                "selector": self._selector,
                "deployment": self._dev_mode.deployment if self._dev_mode is not None else None,
                "problems": self.pod_problems(),
            },
        )

    # -- following the pod ------------------------------------------------------------------

    def pod_problems(self) -> list[str]:
        """What is wrong with the pods of the workload now, one line each."""
        return self._follower.problems()

    def _emit_all(self, events: list[TargetEvent]) -> None:
        for event in events:
            self._emit(event)

    def _emit(self, event: TargetEvent) -> None:
        loop = self._loop
        if loop is not None and not self._closed:
            with contextlib.suppress(RuntimeError):  # the loop may be closing
                loop.call_soon_threadsafe(self._events.put_nowait, event)

    async def events(self) -> AsyncIterator[TargetEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self) -> None:
        self._closed = True
        running = list(self._execs)
        await asyncio.gather(
            *(each.terminate(grace_seconds=2.0) for each in running), return_exceptions=True
        )
        self._pod_watch.stop()
        if self._cluster.api is not None and self._dev_mode is not None:
            await asyncio.to_thread(self._release_dev_mode)
        if self._cluster.api is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._cluster.api.close)
        self._events.put_nowait(None)
