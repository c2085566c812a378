"""Following the session's pod: what happens to it and to its siblings, as target events.

``PodFollower`` turns the pod watch's observations into events: the pod deleted or
terminating, its container restarted and running again, a new Ready pod replacing it, a pod
of the workload getting into trouble. ``watch_pods`` is the watch itself, a loop for a
thread of its own that lists, then watches, and starts over when the watch expires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from podlink.targets.base import TargetEvent, TargetEventKind
from podlink.targets.kubernetes.cluster import REQUEST_TIMEOUT, status_of
from podlink.targets.kubernetes.pods import is_ready, is_usable, restart_count
from podlink.targets.kubernetes.trouble import pod_trouble

if TYPE_CHECKING:
    from podlink.targets.kubernetes.connection import ClusterConnection

# The client's Watch is untyped in an otherwise typed package.
_watch_module: Any = watch

WATCH_SECONDS = 240
WATCH_RETRY_FIRST, WATCH_RETRY_MAX = 0.5, 15.0


log = logging.getLogger(__name__)


class PodFollower:
    """What is known of the followed pod, changed by what the watch observes. Thread-safe:
    the watch thread observes while the session reads ``problems``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pod_name = ""
        self._container = ""
        self._pod_uid = ""
        self._restart_count = 0
        self._pod_gone = False
        self._awaiting_restart = False
        self._announced: set[str] = set()
        # What is wrong with each pod of the workload now, by pod uid (``pod_trouble``).
        self._troubles: dict[str, str] = {}

    def follow(self, pod: Any, container: str) -> None:
        """Follow ``pod`` (just connected to) from now on."""
        with self._lock:
            self._pod_name = pod.metadata.name
            self._container = container
            self._pod_uid = pod.metadata.uid
            self._restart_count = restart_count(pod, container)
            self._pod_gone = self._awaiting_restart = False
            self._announced = {pod.metadata.uid}

    def observe_listing(self, pods: list[Any]) -> list[TargetEvent]:
        """A fresh listing of the workload's pods: the followed one missing is deleted."""
        with self._lock:
            missing = not any(p.metadata.uid == self._pod_uid for p in pods)
        events = self.observe("DELETED", None) if missing else []
        for pod in pods:
            events += self.observe("MODIFIED", pod)
        return events

    def observe(self, kind: str, pod: Any) -> list[TargetEvent]:
        """A watch event (``ADDED``, ``MODIFIED``, ``DELETED``; ``pod`` None: the followed
        pod is gone from a listing)."""
        with self._lock:
            return self._translate(kind, pod) + self._note_trouble(kind, pod)

    def problems(self) -> list[str]:
        """What is wrong with the pods of the workload now, one line each."""
        with self._lock:
            return sorted(self._troubles.values())

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
            restarts = restart_count(pod, self._container)
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
            if self._awaiting_restart and is_usable(pod, self._container):
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
            and is_ready(pod)
        ):
            self._announced.add(uid)
            return [
                TargetEvent(
                    TargetEventKind.REPLACED, f"pod {pod.metadata.name} replaced pod {name}"
                )
            ]
        return []


def watch_pods(
    core: Any,
    namespace: str,
    scope: dict[str, str],
    stop: threading.Event,
    *,
    on_watch: Callable[[Any], None],
    on_listing: Callable[[list[Any]], None],
    on_change: Callable[[str, Any], None],
    on_failure: Callable[[int, BaseException], None],
) -> None:
    """List the pods ``scope`` selects, then watch them until ``stop`` is set, retrying a
    failed watch with capped backoff. ``on_watch`` receives each Watch (``stop()`` ends it);
    ``on_failure`` the number of failures in a row and the last one. Blocks: run it in a
    thread of its own."""
    version: str | None = None
    delay = WATCH_RETRY_FIRST
    failures = 0
    while not stop.is_set():
        try:
            if version is None:
                listing = core.list_namespaced_pod(
                    namespace, _request_timeout=REQUEST_TIMEOUT, **scope
                )
                version = listing.metadata.resource_version
                failures = 0
                on_listing(listing.items)
            pod_watch = _watch_module.Watch()
            on_watch(pod_watch)
            for event in pod_watch.stream(
                core.list_namespaced_pod,
                namespace,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
                _request_timeout=(REQUEST_TIMEOUT[0], WATCH_SECONDS + 10),
                **scope,
            ):
                failures = 0
                version = pod_watch.resource_version or version
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    on_change(event["type"], event["object"])
            delay = WATCH_RETRY_FIRST
        except ApiException as error:
            if error.status == 410:
                version = None  # expired: list again and go on from there
                continue
            failures += 1
            on_failure(failures, error)
            stop.wait(delay)
            delay = min(delay * 2, WATCH_RETRY_MAX)
        except Exception as error:  # the API server went away; exec streams notice too
            if stop.is_set():
                return
            failures += 1
            on_failure(failures, error)
            stop.wait(delay)
            delay = min(delay * 2, WATCH_RETRY_MAX)


# Failed watches in a row before the session hears of it: one blip is retried quietly.
WATCH_FAILURES_SHOWN = 3


class PodWatch:
    """The watch on the target's pods, on a thread of its own: what it sees goes through the
    follower into target events; a watch that keeps failing leaves the session blind to its
    pod being replaced, so it ends the target (GONE: degraded, reconnect) rather than retry
    in silence."""

    def __init__(
        self,
        cluster: ClusterConnection,
        follower: PodFollower,
        emit: Callable[[list[TargetEvent]], None],
        pod_name: Callable[[], str],
    ) -> None:
        self._cluster = cluster
        self._follower = follower
        self._emit = emit
        self._pod_name = pod_name
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None

    def start(self, scope: dict[str, str]) -> None:
        """Watch the pods ``scope`` selects (a label or field selector), once."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(scope,), name="podlink-kube-watch", daemon=True
            )
            self._thread.start()

    def _run(self, scope: dict[str, str]) -> None:
        watch_pods(
            self._cluster.core(),
            self._cluster.namespace,
            scope,
            self._stop,
            on_watch=self._keep,
            on_listing=lambda pods: self._emit(self._follower.observe_listing(pods)),
            on_change=lambda kind, pod: self._emit(self._follower.observe(kind, pod)),
            on_failure=self._failed,
        )

    def _keep(self, pod_watch: Any) -> None:
        self._watch = pod_watch

    def _failed(self, failures: int, error: BaseException) -> None:
        if isinstance(error, ApiException):
            _, reason = status_of(error)
            message = f"{error.status} {reason}".strip()
        else:
            message = str(error) or type(error).__name__
        log.warning("pod watch failed (%d in a row): %s", failures, message)
        if failures % WATCH_FAILURES_SHOWN == 0:
            where = self._cluster.where()
            self._emit(
                [
                    TargetEvent(
                        TargetEventKind.GONE,
                        f"cannot follow pod {self._pod_name()} in {where}: the pod watch "
                        f"failed {failures} times in a row ({message})",
                    )
                ]
            )

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
