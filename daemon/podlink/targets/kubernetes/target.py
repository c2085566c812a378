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
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

from podlink.config import (
    DeployConfig,
    DeployImageConfig,
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
from podlink.targets.kubernetes.build import BuiltImage
from podlink.targets.kubernetes.cluster import (
    REQUEST_TIMEOUT,
    cluster_settings,
    explain_failure,
    load_client_models_soon,
    status_of,
)
from podlink.targets.kubernetes.devmode import DevMode, session_owner
from podlink.targets.kubernetes.follow import PodFollower, watch_pods
from podlink.targets.kubernetes.image_steps import ImageSteps
from podlink.targets.kubernetes.logs import (
    PodLog,
    explain_log_failure,
    open_pod_logs,
    pods_for_logs,
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

if TYPE_CHECKING:
    from podlink.targets.kubernetes.deploy import Deployer, Manifest

log = logging.getLogger(__name__)


# Failed watches in a row before the session hears of it: one blip is retried quietly.
WATCH_FAILURES_SHOWN = 3


@dataclass(frozen=True)
class _PreparedDeploy:
    """The objects to apply (the built image not yet in place) and who applies them."""

    manifests: list[Manifest]
    deployer: Deployer


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
        self._deploy = deploy
        self._deployed = False
        self._on_log = on_log or log.info
        self._image: ImageSteps | None = None
        if image is not None:
            self._image = ImageSteps(self._folder, image, self._on_log)
        self._kubeconfig = kubeconfig
        self._owner = session_owner(folder or Path.cwd())
        self._dev_mode: DevMode | None = None
        # In dev mode the pods are the Deployment's, whatever pod: says.
        self._selector = config.pod.selector
        self._api: Any = None
        self._configuration: Any = None
        self._context = config.context or ""
        self._namespace = config.namespace or "default"
        self._server = ""
        self._pod_name = config.pod.name or ""
        self._container = config.container or ""
        self._follower = PodFollower()
        self._execs: set[KubeExec] = set()
        self._events: asyncio.Queue[TargetEvent | None] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_watching = threading.Event()
        self._watch: Any = None
        self._watch_thread: threading.Thread | None = None
        self._closed = False

    # -- connecting -----------------------------------------------------------------------

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        building: asyncio.Future[BuiltImage] | None = None
        prepared: _PreparedDeploy | None = None
        if self._image is not None and self._deploy is not None and not self._deployed:
            # The build needs nothing from the cluster: it runs while the client connects.
            building = asyncio.ensure_future(asyncio.to_thread(self._image.build))
        try:
            if self._api is None:
                self._api = await asyncio.to_thread(self._open_client)
                if self._deploy is None or self._deployed:
                    # A deploy checks it without the typed client (``deploy``).
                    await asyncio.to_thread(self._check_namespace)
            if building is not None:
                # Reading the manifests and the cluster's resource list overlaps it too.
                prepared = await asyncio.to_thread(self._prepare_deploy)
        except BaseException:
            if building is not None:
                building.cancel()
            raise
        if building is not None:
            await building
        if self._deploy is not None and not self._deployed:
            # Once per session: a reconnect finds what was applied already in place.
            await asyncio.to_thread(self._apply_deploy, prepared or self._prepare_deploy())
        if self._config.dev_mode is not None:
            await asyncio.to_thread(self._engage_dev_mode)
        pod = await asyncio.to_thread(self._find_pod)
        self._pod_name = pod.metadata.name
        self._follower.follow(pod, self._container)
        if self._watch_thread is None:
            self._watch_thread = threading.Thread(
                target=self._watch_pods, name="podlink-kube-watch", daemon=True
            )
            self._watch_thread.start()
        self._events.put_nowait(TargetEvent(TargetEventKind.STARTED))

    def deploy(self) -> None:
        """Apply the ``deploy:`` manifests and wait for their rollouts (``Deploys``).

        Blocking. Raises ConfigError for a manifest that does not parse (before the cluster
        is contacted), TargetUnavailable for what the cluster refuses."""
        if self._deploy is None:
            return
        self._apply_deploy(self._prepare_deploy())

    def _prepare_deploy(self) -> _PreparedDeploy:
        """What a deploy does before it needs the image: read (and render) the manifests,
        check the namespace, look up the API resource of each object. Blocking."""
        from podlink.targets.kubernetes import ledger
        from podlink.targets.kubernetes.deploy import Deployer, load_manifests

        assert self._deploy is not None
        if self._api is None:
            # Reads the kubeconfig only: helm needs the namespace before anything is sent.
            self._api = self._open_client()
        manifests = load_manifests(self._folder, self._deploy, self._namespace)
        self._check_namespace(untyped=True)
        deployer = Deployer(
            self._api,
            self._namespace,
            self._on_log,
            where=self._where(),
            on_created=functools.partial(ledger.record, self._folder),
        )
        deployer.look_up_kinds(manifests)
        return _PreparedDeploy(manifests, deployer)

    def _apply_deploy(self, prepared: _PreparedDeploy) -> None:
        """Put the built image in place, apply, wait for the rollouts. Blocking."""
        from podlink.targets.kubernetes.deploy import replace_image

        manifests = prepared.manifests
        if self._image is not None:
            reference = self._image.reference_in_cluster(self._context)
            substitution = DeployImageConfig(name=self._image.image.name, replace=reference)
            for manifest in manifests:
                replace_image(manifest.body, substitution)
        self._on_log(f"deploying {len(manifests)} objects to namespace {self._namespace}")
        prepared.deployer.deploy(manifests)
        self._deployed = True

    def find_leftovers(self, remotes: Sequence[str]) -> Leftovers:
        """Deployments dev mode left patched in the namespace and what the workspace's ledger
        lists (``LeavesLeftovers``); the agent's temporary files in a pod are not looked for."""
        from podlink.targets.kubernetes.admin import KubernetesLeftovers

        return KubernetesLeftovers.find(self._config, self._folder)

    def open_api(self) -> tuple[Any, str]:
        """A client for the configured cluster and the namespace the configuration resolves
        to, without looking for a pod (``podlink purge``). Blocks; the caller closes it."""
        return self._open_client(), self._namespace

    def where(self) -> str:
        """The context and API server, for messages."""
        return self._where()

    def _open_client(self) -> Any:
        cluster = cluster_settings(self._config, self._kubeconfig)
        self._context, self._namespace = cluster.context, cluster.namespace
        self._server, self._configuration = cluster.server, cluster.configuration
        return client.ApiClient(cluster.configuration)

    def _engage_dev_mode(self) -> None:
        """Patch the Deployment (again after a reconnect) and wait for its dev pod."""
        assert self._config.dev_mode is not None
        if self._dev_mode is None:
            self._dev_mode = DevMode(
                self._api,
                self._namespace,
                self._config.dev_mode,
                container=self._config.container,
                owner=self._owner,
            )
        name = self._dev_mode.deployment
        try:
            self._dev_mode.engage()
        except ApiException as error:
            raise self._failure(
                error, f"patching deployment {name} for devMode", "patch", "deployments"
            ) from error
        except TargetUnavailable:
            raise
        except Exception as error:
            raise self._failure(error, f"patching deployment {name} for devMode") from error
        self._selector = self._dev_mode.selector
        try:
            self._dev_mode.wait_for_pod(self._core(), is_ready)
        except Exception as error:
            raise self._failure(error, "waiting for the devMode pod", "list", "pods") from error

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

    def _core(self) -> Any:
        if self._api is None:
            raise TargetUnavailable("the Kubernetes target is not connected")
        return client.CoreV1Api(self._api)

    @contextlib.contextmanager
    def _stream_core(self) -> Iterator[Any]:
        """A CoreV1Api on an ApiClient of its own, for one exec or port-forward.

        The client's ``stream()`` and ``portforward()`` swap the ``request`` function of the
        ApiClient they are given while they open their WebSocket: a call made meanwhile on
        the same ApiClient from another thread (the pod watch's) would go to the WebSocket
        function and fail. The opened WebSocket does not need its ApiClient afterwards.
        """
        if self._api is None or self._configuration is None:
            raise TargetUnavailable("the Kubernetes target is not connected")
        api: Any = client.ApiClient(self._configuration)
        try:
            yield client.CoreV1Api(api)
        finally:
            api.close()

    def _check_namespace(self, *, untyped: bool = False) -> None:
        """``untyped``: through the dynamic client, which needs none of the typed client's
        models (seconds to load): a deploy goes first and the models load meanwhile."""
        try:
            if untyped:
                from kubernetes import dynamic

                untyped_module: Any = dynamic
                namespaces = untyped_module.DynamicClient(self._api)
                kind = namespaces.resources.get(api_version="v1", kind="Namespace")
                namespaces.get(kind, name=self._namespace, _request_timeout=REQUEST_TIMEOUT)
            else:
                self._core().read_namespace(self._namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 403:
                return  # many developers may not read namespaces; the pod lookup tells more
            if error.status == 404:
                raise TargetUnavailable(
                    f"namespace {self._namespace!r} does not exist in {self._where()}; "
                    "set target.kubernetes.namespace (`kubectl get namespaces` lists them)"
                ) from error
            raise self._failure(
                error, f"looking up namespace {self._namespace!r}", "get", "namespaces"
            ) from error
        except Exception as error:
            raise self._failure(error, f"looking up namespace {self._namespace!r}") from error

    def _find_pod(self) -> Any:
        core = self._core()
        selector = self._selector
        try:
            if selector is None:
                candidates = [
                    named_pod(core, self._namespace, self._config.pod.name, self._where())
                ]
            else:
                listing = core.list_namespaced_pod(
                    self._namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
                )
                candidates = [p for p in listing.items if not p.metadata.deletion_timestamp]
                if self._dev_mode is not None:
                    # Pods of the template from before the patch may still be around.
                    candidates = [p for p in candidates if self._dev_mode.runs_dev_spec(p)]
                if not candidates and self._dev_mode is not None:
                    raise TargetUnavailable(
                        f"no pod of deployment {self._dev_mode.deployment} runs the devMode "
                        f"command yet (selector {selector!r}, namespace {self._namespace!r}, "
                        f"{self._where()}); `kubectl rollout status deployment/"
                        f"{self._dev_mode.deployment} -n {self._namespace}` shows why"
                    )
                if not candidates:
                    raise TargetUnavailable(
                        f"no pod in namespace {self._namespace!r} matches the selector "
                        f"{selector!r} ({self._where()})"
                    )
        except ApiException as error:
            raise self._failure(
                error, "looking up the pod", "get" if selector is None else "list", "pods"
            ) from error
        except TargetUnavailable:
            raise
        except Exception as error:
            raise self._failure(error, "looking up the pod") from error
        candidates.sort(key=lambda p: p.metadata.creation_timestamp or 0, reverse=True)
        container = pick_container(candidates[0], self._config.container)
        usable = [p for p in candidates if is_usable(p, container)]
        if not usable:
            events = last_events(self._core(), self._namespace, candidates[0].metadata.name)
            raise TargetUnavailable(why_unusable(candidates[0], container, self._namespace, events))
        ready = [p for p in usable if is_ready(p)]
        self._container = container
        return (ready or usable)[0]

    def _where(self) -> str:
        return f"context {self._context or '(current)'}, API server {self._server or '?'}"

    def _failure(
        self, error: BaseException, attempted: str, verb: str = "", resource: str = ""
    ) -> TargetUnavailable:
        return TargetUnavailable(
            explain_failure(
                error,
                attempted=attempted,
                where=self._where(),
                namespace=self._namespace,
                verb=verb,
                resource=resource,
            )
        )

    # -- logs (``ContainerLogs``) --------------------------------------------------------

    def container_logs(self, request: LogRequest) -> PodLog:
        """The container log of the session's pod, or with ``every_pod`` of every pod of its
        Deployment (or selector). Blocking; needs no ``connect`` and changes nothing, so a
        crash-looping pod's log (``previous``: the instance that crashed) can be read too."""
        if self._api is None:
            self._api = self._open_client()
        core = self._core()
        try:
            pods = pods_for_logs(
                self._api,
                core,
                self._config,
                self._namespace,
                self._where(),
                every_pod=request.every_pod,
            )
        except ApiException as error:
            raise self._failure(
                error, "looking up the pods for their logs", "list", "pods"
            ) from error
        except TargetUnavailable:
            raise
        except Exception as error:
            raise self._failure(error, "looking up the pods for their logs") from error
        container = pick_container(pods[0], self._config.container)
        return open_pod_logs(
            core,
            self._namespace,
            [(pod.metadata.name, container) for pod in pods],
            request,
            lambda error, pod: explain_log_failure(
                error, core, self._namespace, self._where(), pod, container
            ),
        )

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
            with self._stream_core() as core:
                return open_exec_stream(
                    core, pod, self._namespace, self._container, command, stdin=stdin, tty=tty
                )

        try:
            websocket = await asyncio.to_thread(open_exec)
        except Exception as error:
            raise self._failure(
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
        with contextlib.suppress(Exception), self._stream_core() as core:
            signal_group(core, self._pod_name, self._namespace, self._container, pid, signal_name)

    async def tunnel(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        pod = self._pod_name

        def open_forward() -> Any:
            with self._stream_core() as core:
                return portforward(
                    core.connect_get_namespaced_pod_portforward,
                    pod,
                    self._namespace,
                    ports=str(port),
                )

        try:
            forward = await asyncio.to_thread(open_forward)
        except Exception as error:
            raise self._failure(
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
                "namespace": self._namespace,
                "context": self._context,
                "container": self._container,
                "server": self._server,
                "selector": self._selector,
                "deployment": self._dev_mode.deployment if self._dev_mode is not None else None,
                "problems": self.pod_problems(),
            },
        )

    # -- following the pod ------------------------------------------------------------------

    def _watch_pods(self) -> None:
        if self._selector is not None:
            scope = {"label_selector": self._selector}
        else:
            scope = {"field_selector": f"metadata.name={self._config.pod.name}"}
        watch_pods(
            self._core(),
            self._namespace,
            scope,
            self._stop_watching,
            on_watch=self._keep_watch,
            on_listing=lambda pods: self._emit_all(self._follower.observe_listing(pods)),
            on_change=lambda kind, pod: self._emit_all(self._follower.observe(kind, pod)),
            on_failure=self._watch_failed,
        )

    def _keep_watch(self, pod_watch: Any) -> None:
        self._watch = pod_watch

    def _watch_failed(self, failures: int, error: BaseException) -> None:
        """A watch that keeps failing leaves the session blind to its pod being replaced:
        say so (the session goes degraded and reconnects) rather than retry in silence."""
        if isinstance(error, ApiException):
            _, reason = status_of(error)
            message = f"{error.status} {reason}".strip()
        else:
            message = str(error) or type(error).__name__
        log.warning("pod watch failed (%d in a row): %s", failures, message)
        if failures % WATCH_FAILURES_SHOWN == 0:
            self._emit(
                TargetEvent(
                    TargetEventKind.GONE,
                    f"cannot follow pod {self._pod_name} in {self._where()}: the pod watch "
                    f"failed {failures} times in a row ({message})",
                )
            )

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
        self._stop_watching.set()
        running = list(self._execs)
        await asyncio.gather(
            *(each.terminate(grace_seconds=2.0) for each in running), return_exceptions=True
        )
        if self._watch is not None:
            self._watch.stop()
        if self._api is not None and self._dev_mode is not None:
            await asyncio.to_thread(self._release_dev_mode)
        if self._api is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._api.close)
        self._events.put_nowait(None)
