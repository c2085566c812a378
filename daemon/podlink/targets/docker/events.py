"""The Docker Engine's events for the target's container, turned into target events.

A thread reads the Engine's event stream for the container (it blocks for as long as the
session runs) and hands each event that matters to the session's loop: the container
stopped or was removed (GONE), started again (RESTARTED) or replaced by a new one of the
same name (REPLACED).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import docker

from podlink.targets.base import TargetEvent, TargetEventKind
from podlink.targets.docker.exec import engine_error_text


class ContainerEvents:
    def __init__(
        self,
        client: docker.DockerClient,
        queue: asyncio.Queue[TargetEvent | None],
        name: Callable[[], str],
        current_id: Callable[[], str],
    ) -> None:
        self._client = client
        self._queue = queue
        self._name = name
        self._current_id = current_id
        self._stream: Any = None
        self._closed = False
        self.started = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        thread = threading.Thread(
            target=self._pump, args=(loop,), name="podlink-docker-events", daemon=True
        )
        thread.start()
        self.started = True

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            # A client of its own: the stream holds its connection for good, and taking the
            # shared client's idle one would make the agent's first exec open another (a
            # round trip to a far Engine) while this thread is not waited for.
            client = self._client
            events = docker.from_env(timeout=client.api.timeout, version=client.api._version)
            stream = events.events(
                decode=True, filters={"type": "container", "container": self._name()}
            )
            self._stream = stream
            if self._closed:
                stream.close()
                return
            for event in stream:
                translated = self._translate(event)
                if translated is not None:
                    loop.call_soon_threadsafe(self._queue.put_nowait, translated)
        except Exception as error:  # the stream breaks when the engine goes away
            if not self._closed:
                reason = f"lost the Docker Engine's event stream: {engine_error_text(error)}"
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(
                        self._queue.put_nowait, TargetEvent(TargetEventKind.GONE, reason)
                    )

    def _translate(self, event: dict[str, Any]) -> TargetEvent | None:
        action = str(event.get("Action") or event.get("status") or "")
        event_id = str(event.get("id") or "")
        current = self._current_id()
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        if action == "die":
            code = attributes.get("exitCode", "?")
            return TargetEvent(
                TargetEventKind.GONE, f"container {self._name()} stopped (exit code {code})"
            )
        if action == "destroy":
            return TargetEvent(TargetEventKind.GONE, f"container {self._name()} was removed")
        if action == "start":
            kind = TargetEventKind.RESTARTED if event_id == current else TargetEventKind.REPLACED
            return TargetEvent(kind, f"container {self._name()} started")
        return None

    def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
