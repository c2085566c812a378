"""The Kubernetes target: a container in a pod, reached through the API server.

The pod is picked by name or label selector from a kubeconfig context (or the in-cluster
service account). Commands run over the exec subresource and tunnels over port-forward, both
WebSockets opened by the official client (``kubernetes_streams``). A watch on the pod turns
deletion, container restarts and replacement by a new Ready pod into target events; the
session reconnects on them, and ``connect`` picks whichever pod matches then. Blocking client
calls run in worker threads.

With ``deploy:`` the target applies the workspace's manifests first (``kubernetes_deploy``),
and with ``build.image`` it builds the image and delivers it to the cluster before that
(``kubernetes_build``, ``kubernetes_delivery``); what it made is listed for ``podlink purge``
(``kubernetes_ledger``).

With ``devMode`` the target first patches the Deployment (``kubernetes_devmode``), then
follows the pods of the Deployment's selector that run the patched template, and restores
the Deployment on ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import portforward, stream

from podlink.config import (
    DeployConfig,
    DeployImageConfig,
    ImageBuildConfig,
    KubernetesTargetConfig,
)
from podlink.targets.base import (
    LogRequest,
    TargetDescription,
    TargetEvent,
    TargetEventKind,
    TargetUnavailable,
)
from podlink.targets.kubernetes_build import BuiltImage
from podlink.targets.kubernetes_devmode import DevMode, session_owner
from podlink.targets.kubernetes_logs import PodLog, open_pod_logs, selector_of, workload_selector
from podlink.targets.kubernetes_streams import KubeExec, open_forwarded_socket, wrapped_argv
from podlink.targets.kubernetes_trouble import pod_trouble

log = logging.getLogger(__name__)

# The client's config loaders and Watch are untyped functions in an otherwise typed package.
_loaders: Any = kube_config
_watch_module: Any = watch

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WATCH_SECONDS = 240
REQUEST_TIMEOUT = (10, 30)
WATCH_RETRY_FIRST, WATCH_RETRY_MAX = 0.5, 15.0
# Failed watches in a row before the session hears of it: one blip is retried quietly.
WATCH_FAILURES_SHOWN = 3
SHOWN_EVENTS = 3


_models_loading = threading.Lock()
_models_loader: threading.Thread | None = None


def load_client_models_soon() -> None:
    """Start importing the client's API classes on a thread, once per process.

    Client 37 builds its pydantic models when an API class is first used: seconds of CPU
    that would otherwise sit on the path to the first request. Begun here, they overlap
    the local scan and an image build (which runs in the Docker Engine's process).
    """
    global _models_loader
    with _models_loading:
        if _models_loader is None:
            _models_loader = threading.Thread(
                target=lambda: (client.CoreV1Api, client.AppsV1Api),
                name="podlink-kube-models",
                daemon=True,
            )
            _models_loader.start()


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
        self._image = image
        self._built: BuiltImage | None = None
        self._delivered = False
        self._folder = folder or Path.cwd()
        self._deploy = deploy
        self._deployed = False
        self._on_log = on_log or log.info
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
        self._state_lock = threading.Lock()
        self._pod_uid = ""
        self._restart_count = 0
        self._pod_gone = False
        self._awaiting_restart = False
        self._announced: set[str] = set()
        # What is wrong with each pod of the workload now, by pod uid (``pod_trouble``).
        self._troubles: dict[str, str] = {}
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
        if self._image is not None and self._deploy is not None and not self._deployed:
            # The build needs nothing from the cluster: it runs while the client connects.
            building = asyncio.ensure_future(asyncio.to_thread(self._build_image))
        try:
            if self._api is None:
                self._api = await asyncio.to_thread(self._open_client)
                if self._deploy is None or self._deployed:
                    # A deploy checks it without the typed client (``deploy``).
                    await asyncio.to_thread(self._check_namespace)
        except BaseException:
            if building is not None:
                building.cancel()
            raise
        if building is not None:
            await building
        if self._deploy is not None and not self._deployed:
            # Once per session: a reconnect finds what was applied already in place.
            await asyncio.to_thread(self.deploy)
        if self._config.dev_mode is not None:
            await asyncio.to_thread(self._engage_dev_mode)
        pod = await asyncio.to_thread(self._find_pod)
        with self._state_lock:
            self._pod_name = pod.metadata.name
            self._pod_uid = pod.metadata.uid
            self._restart_count = _restart_count(pod, self._container)
            self._pod_gone = self._awaiting_restart = False
            self._announced = {pod.metadata.uid}
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
        from podlink.targets import kubernetes_ledger
        from podlink.targets.kubernetes_delivery import deliver_built
        from podlink.targets.kubernetes_deploy import Deployer, load_manifests, replace_image

        if self._deploy is None:
            return
        manifests = load_manifests(self._folder, self._deploy)
        if self._api is None:
            self._api = self._open_client()
        self._check_namespace(untyped=True)
        if self._image is not None:
            built = self._built or self._build_image()
            reference = built.reference
            if not self._delivered:
                deliver_built(
                    self._folder, built, self._image, context=self._context, on_log=self._on_log
                )
            substitution = DeployImageConfig(name=self._image.name, replace=reference)
            for manifest in manifests:
                replace_image(manifest.body, substitution)
        self._on_log(f"deploying {len(manifests)} objects to namespace {self._namespace}")
        deployer = Deployer(
            self._api,
            self._namespace,
            self._on_log,
            where=self._where(),
            on_created=functools.partial(kubernetes_ledger.record, self._folder),
        )
        deployer.deploy(manifests)
        self._deployed = True

    def _build_image(self) -> BuiltImage:
        """Build the image; deliver it too when the way does not depend on the context
        (a registry push, a containerd import), which the client may still be reading."""
        from podlink.targets.kubernetes_delivery import build, deliver_built, needs_context

        assert self._image is not None
        built = build(self._folder, self._image, self._on_log)
        if not needs_context(self._image):
            deliver_built(self._folder, built, self._image, context="", on_log=self._on_log)
            self._delivered = True
        self._built = built
        return built

    def open_api(self) -> tuple[Any, str]:
        """A client for the configured cluster and the namespace the configuration resolves
        to, without looking for a pod (``podlink purge``). Blocks; the caller closes it."""
        return self._open_client(), self._namespace

    def where(self) -> str:
        """The context and API server, for messages."""
        return self._where()

    def _open_client(self) -> Any:
        configuration = client.Configuration()
        path = self._kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
        files = [Path(p).expanduser() for p in path.split(os.pathsep) if p]
        if any(each.exists() for each in files):
            self._load_kubeconfig(path, configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                _loaders.load_incluster_config(client_configuration=configuration)
            except ConfigException as error:
                raise TargetUnavailable(f"cannot use the pod's service account: {error}") from error
            self._context = "in-cluster"
            if not self._config.namespace and SERVICE_ACCOUNT_NAMESPACE.exists():
                self._namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        else:
            raise TargetUnavailable(
                f"no kubeconfig at {path} and not running in a pod: set KUBECONFIG or "
                "create ~/.kube/config (your cluster's CLI writes it)"
            )
        self._server = str(configuration.host)
        # A dead API server must fail the attempt quickly: the session retries with backoff.
        configuration.retries = 0
        self._configuration = configuration
        return client.ApiClient(configuration)

    def _load_kubeconfig(self, path: str, configuration: Any) -> None:
        try:
            contexts, active = _loaders.list_kube_config_contexts(config_file=path)
        except ConfigException as error:
            raise TargetUnavailable(f"cannot read the kubeconfig {path}: {error}") from error
        wanted = self._config.context or (active or {}).get("name", "")
        chosen = next((c for c in contexts or [] if c.get("name") == wanted), None)
        if chosen is None:
            names = ", ".join(c.get("name", "?") for c in contexts or []) or "none"
            raise TargetUnavailable(
                f"the kubeconfig {path} has no context {wanted!r} (it has: {names}); "
                "set target.kubernetes.context to one of them"
            )
        try:
            _loaders.load_kube_config(
                config_file=path, context=wanted, client_configuration=configuration
            )
        except (ConfigException, OSError) as error:
            raise TargetUnavailable(
                f"cannot use context {wanted!r} of the kubeconfig {path}: {error}"
            ) from error
        self._context = wanted
        if not self._config.namespace:
            self._namespace = (chosen.get("context") or {}).get("namespace") or "default"

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
            self._dev_mode.wait_for_pod(self._core(), _is_ready)
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

    def _named_pod(self, core: Any) -> Any:
        """The pod ``pod: {name: ...}`` names; TargetUnavailable saying how to list them."""
        name = self._config.pod.name or ""
        try:
            return core.read_namespaced_pod(name, self._namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status != 404:
                raise
            raise TargetUnavailable(
                f"no pod named {name!r} in namespace {self._namespace!r} "
                f"({self._where()}); `kubectl get pods -n {self._namespace}` lists them"
            ) from error

    def _find_pod(self) -> Any:
        core = self._core()
        selector = self._selector
        try:
            if selector is None:
                candidates = [self._named_pod(core)]
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
        container = self._pick_container(candidates[0])
        usable = [p for p in candidates if _is_usable(p, container)]
        if not usable:
            raise TargetUnavailable(self._why_unusable(candidates[0], container))
        ready = [p for p in usable if _is_ready(p)]
        self._container = container
        return (ready or usable)[0]

    def _pick_container(self, pod: Any) -> str:
        names = [c.name for c in pod.spec.containers or []]
        wanted = self._config.container
        if wanted is not None and wanted not in names:
            raise TargetUnavailable(
                f"pod {pod.metadata.name} has no container {wanted!r}; its containers are: "
                f"{', '.join(names)}"
            )
        if wanted is None and len(names) > 1:
            raise TargetUnavailable(
                f"pod {pod.metadata.name} has several containers ({', '.join(names)}); "
                "set target.kubernetes.container to the one podlink should use"
            )
        return wanted or names[0]

    def _why_unusable(self, pod: Any, container: str) -> str:
        name = pod.metadata.name
        status = pod.status
        reason = f"is {status.phase or 'in an unknown phase'}"
        for condition in status.conditions or []:
            if condition.status == "False" and condition.reason:
                reason += f" ({condition.reason}: {condition.message or ''})".replace(": )", ")")
        for each in status.container_statuses or []:
            waiting = each.state.waiting if each.state is not None else None
            if each.name == container and waiting is not None:
                reason = f"has container {container} waiting in {waiting.reason}"
                if waiting.message:
                    reason += f" ({waiting.message})"
                if each.restart_count:
                    reason += f" after {each.restart_count} restarts"
        events = self._last_events(name)
        shown = "; last events: " + "; ".join(events) if events else ""
        return (
            f"pod {name} in namespace {self._namespace!r} {reason}{shown}. "
            f"`kubectl describe pod {name} -n {self._namespace}` shows more"
        )

    def _last_events(self, pod_name: str) -> list[str]:
        try:
            listing = self._core().list_namespaced_event(
                self._namespace,
                field_selector=f"involvedObject.name={pod_name}",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as error:  # events are a courtesy: a denied list must not hide the cause
            log.debug("cannot list events of %s: %s", pod_name, error)
            return []
        items = sorted(listing.items, key=lambda e: str(e.last_timestamp or ""))
        return [f"{e.reason}: {e.message}" for e in items[-SHOWN_EVENTS:]]

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
            pods = self._log_pods(core, every_pod=request.every_pod)
        except ApiException as error:
            raise self._failure(
                error, "looking up the pods for their logs", "list", "pods"
            ) from error
        except TargetUnavailable:
            raise
        except Exception as error:
            raise self._failure(error, "looking up the pods for their logs") from error
        container = self._pick_container(pods[0])
        return open_pod_logs(
            core,
            self._namespace,
            [(pod.metadata.name, container) for pod in pods],
            request,
            lambda error, pod: self._explain_log_failure(error, pod, container),
        )

    def _log_pods(self, core: Any, *, every_pod: bool) -> list[Any]:
        """The session's pod first (Ready and newest wins), or every pod of its workload."""
        selector = self._config.pod.selector
        if self._config.dev_mode is not None:
            deployment = self._config.dev_mode.deployment
            apps = client.AppsV1Api(self._api)
            try:
                body = apps.read_namespaced_deployment(
                    deployment, self._namespace, _request_timeout=REQUEST_TIMEOUT
                )
            except ApiException as error:
                if error.status != 404:
                    raise
                raise TargetUnavailable(
                    f"no deployment {deployment!r} in namespace {self._namespace!r} "
                    f"({self._where()}): devMode names it; nothing has logs yet"
                ) from error
            selector = selector_of(body.spec.selector)
        if selector is None:
            pod = self._named_pod(core)
            if not every_pod:
                return [pod]
            selector = workload_selector(self._api, self._namespace, pod)
            if selector is None:
                return [pod]  # a pod of its own: it is the whole workload
        listing = core.list_namespaced_pod(
            self._namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
        )
        pods = [p for p in listing.items if not p.metadata.deletion_timestamp]
        if not pods:
            raise TargetUnavailable(
                f"no pod in namespace {self._namespace!r} matches the selector {selector!r} "
                f"({self._where()}), so there is no log to show"
            )
        pods.sort(key=lambda p: (_is_ready(p), p.metadata.creation_timestamp or 0), reverse=True)
        if every_pod:
            return sorted(pods, key=lambda p: str(p.metadata.name))
        return pods[:1]

    def _explain_log_failure(self, error: ApiException, pod: str, container: str) -> str:
        status, message = _status_of(error)
        if status in (400, 404):
            events = self._last_events(pod)
            shown = "; last events: " + "; ".join(events) if events else ""
            return f"cannot read the log of container {container} of pod {pod}: {message}{shown}"
        return explain_failure(
            error,
            attempted=f"reading the log of pod {pod}",
            where=self._where(),
            namespace=self._namespace,
            verb="get",
            resource="pods/log",
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
                return stream(
                    core.connect_get_namespaced_pod_exec,
                    pod,
                    self._namespace,
                    command=command,
                    container=self._container,
                    stdin=stdin or tty,
                    stdout=True,
                    stderr=True,
                    tty=tty,
                    _preload_content=False,
                    binary=True,
                )

        try:
            websocket = await asyncio.to_thread(open_exec)
        except Exception as error:
            raise self._failure(
                error, f"running {argv[0]!r} in pod {pod}", "create", "pods/exec"
            ) from error
        _stop_capturing(websocket)
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
        # The group first (the exec's own session); a runtime that does not start execs in a
        # session of their own leaves only the pid itself to signal.
        script = f"kill -{signal_name} -{pid} 2>/dev/null || kill -{signal_name} {pid}; true"
        with contextlib.suppress(Exception), self._stream_core() as core:
            stream(
                core.connect_get_namespaced_pod_exec,
                self._pod_name,
                self._namespace,
                command=["sh", "-c", script],
                container=self._container,
                stdin=False,
                stdout=True,
                stderr=True,
                tty=False,
                _request_timeout=30,
            )

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
        core = self._core()
        if self._selector is not None:
            scope = {"label_selector": self._selector}
        else:
            scope = {"field_selector": f"metadata.name={self._config.pod.name}"}
        version: str | None = None
        delay = WATCH_RETRY_FIRST
        failures = 0
        while not self._stop_watching.is_set():
            try:
                if version is None:
                    listing = core.list_namespaced_pod(
                        self._namespace, _request_timeout=REQUEST_TIMEOUT, **scope
                    )
                    version = listing.metadata.resource_version
                    failures = 0
                    self._observe_listing(listing.items)
                self._watch = _watch_module.Watch()
                for event in self._watch.stream(
                    core.list_namespaced_pod,
                    self._namespace,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                    _request_timeout=(REQUEST_TIMEOUT[0], WATCH_SECONDS + 10),
                    **scope,
                ):
                    failures = 0
                    version = self._watch.resource_version or version
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._observe(event["type"], event["object"])
                delay = WATCH_RETRY_FIRST
            except ApiException as error:
                if error.status == 410:
                    version = None  # expired: list again and go on from there
                    continue
                failures += 1
                self._watch_failed(failures, error)
                self._stop_watching.wait(delay)
                delay = min(delay * 2, WATCH_RETRY_MAX)
            except Exception as error:  # the API server went away; exec streams notice too
                if self._stop_watching.is_set():
                    return
                failures += 1
                self._watch_failed(failures, error)
                self._stop_watching.wait(delay)
                delay = min(delay * 2, WATCH_RETRY_MAX)

    def _watch_failed(self, failures: int, error: BaseException) -> None:
        """A watch that keeps failing leaves the session blind to its pod being replaced:
        say so (the session goes degraded and reconnects) rather than retry in silence."""
        if isinstance(error, ApiException):
            _, reason = _status_of(error)
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

    def _observe_listing(self, pods: list[Any]) -> None:
        with self._state_lock:
            missing = not any(p.metadata.uid == self._pod_uid for p in pods)
        if missing:
            self._observe("DELETED", None)
        for pod in pods:
            self._observe("MODIFIED", pod)

    def _observe(self, kind: str, pod: Any) -> None:
        with self._state_lock:
            events = self._translate(kind, pod)
            events += self._note_trouble(kind, pod)
        for event in events:
            self._emit(event)

    def _note_trouble(self, kind: str, pod: Any) -> list[TargetEvent]:
        """A WARNING when a pod of the workload gets into trouble or into other trouble."""
        if pod is None:
            return []
        uid = pod.metadata.uid
        trouble = None
        if kind != "DELETED" and not pod.metadata.deletion_timestamp:
            trouble = pod_trouble(pod, self._container or None)
        if trouble is None:
            self._troubles.pop(uid, None)
            return []
        if self._troubles.get(uid) == trouble:
            return []
        self._troubles[uid] = trouble
        return [TargetEvent(TargetEventKind.WARNING, trouble)]

    def pod_problems(self) -> list[str]:
        """What is wrong with the pods of the workload now, one line each."""
        with self._state_lock:
            return sorted(self._troubles.values())

    def _translate(self, kind: str, pod: Any) -> list[TargetEvent]:
        name = self._pod_name
        if pod is None or pod.metadata.uid == self._pod_uid:
            if self._pod_gone:
                return []
            if kind == "DELETED":
                self._pod_gone = True
                return [TargetEvent(TargetEventKind.GONE, f"pod {name} was deleted")]
            if pod.metadata.deletion_timestamp:
                self._pod_gone = True
                return [TargetEvent(TargetEventKind.GONE, f"pod {name} is terminating")]
            restarts = _restart_count(pod, self._container)
            found: list[TargetEvent] = []
            if restarts > self._restart_count:
                self._restart_count, self._awaiting_restart = restarts, True
                why = pod_trouble(pod, self._container)
                found.append(
                    TargetEvent(
                        TargetEventKind.GONE,
                        f"container {self._container} of pod {name} restarted (restart {restarts})"
                        + (f": {why}" if why else ""),
                    )
                )
            if self._awaiting_restart and _is_usable(pod, self._container):
                self._awaiting_restart = False
                found.append(
                    TargetEvent(
                        TargetEventKind.RESTARTED,
                        f"container {self._container} of pod {name} is running again",
                    )
                )
            return found
        uid = pod.metadata.uid
        if (
            self._pod_gone
            and kind != "DELETED"
            and uid not in self._announced
            and not pod.metadata.deletion_timestamp
            and _is_ready(pod)
        ):
            self._announced.add(uid)
            return [
                TargetEvent(
                    TargetEventKind.REPLACED, f"pod {pod.metadata.name} replaced pod {name}"
                )
            ]
        return []

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


def _container_status(pod: Any, container: str) -> Any:
    for each in pod.status.container_statuses or [] if pod.status is not None else []:
        if each.name == container:
            return each
    return None


def _restart_count(pod: Any, container: str) -> int:
    status = _container_status(pod, container)
    return int(status.restart_count or 0) if status is not None else 0


def _is_usable(pod: Any, container: str) -> bool:
    """Commands can run in the container: the pod runs and the container is not waiting."""
    if pod.metadata.deletion_timestamp or pod.status is None or pod.status.phase != "Running":
        return False
    status = _container_status(pod, container)
    return status is not None and status.state is not None and status.state.running is not None


def _is_ready(pod: Any) -> bool:
    return (
        any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if pod.status is not None
        else False
    )


def _stop_capturing(websocket: Any) -> None:
    """The client copies every byte of output into an in-memory log for ``read_all``, which
    a long-lived stream never calls; swap it for the client's own discarding sink."""
    from kubernetes.stream import ws_client

    websocket._all = ws_client._IgnoredIO()


HANDSHAKE_STATUS = re.compile(r"Handshake status (\d{3})")


def explain_failure(
    error: BaseException,
    *,
    attempted: str,
    where: str,
    namespace: str,
    verb: str = "",
    resource: str = "",
) -> str:
    """One sentence on what failed, why, and what to do, for the errors people hit."""
    status, message = _status_of(error)
    if status == 401:
        return (
            f"{attempted}: the API server rejected the credentials ({where}): 401 Unauthorized. "
            "They may have expired: log in again (your cluster's CLI refreshes the kubeconfig)"
        )
    if status == 403:
        grant = (
            f"; ask for a Role in namespace {namespace!r} that grants verb {verb!r} on "
            f"resource {resource!r} (kubectl create role podlink --verb={verb} "
            f"--resource={resource} -n {namespace})"
            if verb
            else ""
        )
        return f"{attempted}: forbidden ({where}): {message}{grant}"
    if status:
        return f"{attempted}: the API server answered {status} ({where}): {message}"
    return (
        f"{attempted}: cannot reach the API server ({where}): {message}. "
        "Is the cluster running and the kubeconfig current?"
    )


def _status_of(error: BaseException) -> tuple[int, str]:
    """The HTTP status and the Status message of a REST or WebSocket handshake failure."""
    if isinstance(error, ApiException):
        body = error.body
        status = int(error.status or 0)
        reason = str(error.reason or "")
        if not status and (match := HANDSHAKE_STATUS.search(reason)):
            status = int(match[1])
            body = reason.rsplit("-+-+-", 1)[-1].strip()
            if body.startswith(("b'", 'b"')):
                body = body[2:-1]
        if status:
            try:
                return status, str(json.loads(body or "{}").get("message") or reason)
            except (TypeError, ValueError, AttributeError):
                return status, reason
        return 0, reason.split("-+-+-")[0].strip() or type(error).__name__
    return 0, str(error) or type(error).__name__
