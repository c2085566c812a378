"""A Kubernetes API server double: enough of the real wire protocols for the official client.

This is a TEST DOUBLE, not a Kubernetes. It is written from the Kubernetes API reference and
serves, over plain HTTP on 127.0.0.1 with one bearer token:

* ``GET /api/v1/namespaces/{ns}``;
* pods: list/get (``labelSelector``, equality- and set-based: ``selectors.py``;
  ``fieldSelector metadata.name=``), watch (chunked JSON lines, ``resourceVersion``,
  ``timeoutSeconds``, an ERROR event with a 410 Status once the requested version has been
  compacted away), delete;
* ``GET /api/v1/namespaces/{ns}/events`` (``fieldSelector involvedObject.name=``);
* apps/v1 deployments: list (``labelSelector``), get, and patch (strategic merge or JSON
  merge patch, with a ``metadata.resourceVersion`` precondition; ``deployments.py``);
* exec over WebSocket (``v5.channel.k8s.io`` or ``v4.channel.k8s.io``: a channel byte then
  data; 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 resize; on v5 ``[255, 0]``
  closes stdin);
* port-forward over WebSocket (``portforward.k8s.io``: data channel 0 and error channel 1,
  each opened by a frame carrying the port as two little-endian bytes; a port nobody
  listens on gets the kubelet's message on the error channel);
* 401 for a wrong token and 403 Status bodies for the verb/resource pairs a test denies.

Every running pod is a real Docker container (``cluster.py``): exec runs ``docker exec``, and
port-forward dials the port on the container's own loopback from inside its network
namespace (``netns.py``), as the kubelet's runtime does, so both do real work. The server
runs on its own event loop in a thread; tests change the cluster with the plain methods of
``KubeApiDouble`` (``cluster.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.kube_double.deployments import PatchError
from tests.kube_double.netns import NamespaceUnavailable
from tests.kube_double.objects import Pod, matches_fields, status_body
from tests.kube_double.selectors import Requirement, SelectorError, matches, parse
from tests.kube_double.websocket import WebSocket, handshake_response

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORTFORWARD_PROTOCOL = "portforward.k8s.io"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
FORWARD_DATA, FORWARD_ERROR = 0, 1
DEPLOYMENTS = r"/apis/apps/v1/namespaces/([^/]+)/deployments"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def param(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]

    def flag(self, name: str) -> bool:
        return self.param(name).lower() in ("true", "1")


class Reply(Exception):
    """Ends a request with this status and JSON body."""

    def __init__(self, code: int, body: dict[str, Any]) -> None:
        super().__init__(code)
        self.code = code
        self.body = body


REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    415: "Unsupported Media Type",
}

Handler = Callable[[Request, "re.Match[str]"], Awaitable[dict[str, Any] | None]]


class ApiServer:
    """The HTTP side. ``cluster`` (a ``KubeApiDouble``) holds the state and runs the pods."""

    def __init__(self, cluster: Any, token: str) -> None:
        self.cluster = cluster
        self.token = token
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"/api/v1/namespaces/([^/]+)"), self._get_namespace),
            ("GET", re.compile(r"/api/v1/namespaces/([^/]+)/pods"), self._list_pods),
            ("GET", re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)"), self._get_pod),
            ("DELETE", re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)"), self._delete_pod),
            ("GET", re.compile(r"/api/v1/namespaces/([^/]+)/events"), self._list_events),
            ("GET", re.compile(DEPLOYMENTS), self._list_deployments),
            ("GET", re.compile(DEPLOYMENTS + r"/([^/]+)"), self._get_deployment),
            ("PATCH", re.compile(DEPLOYMENTS + r"/([^/]+)"), self._patch_deployment),
            ("*", re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec"), self._exec),
            (
                "*",
                re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/portforward"),
                self._portforward,
            ),
        ]

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, "127.0.0.1", 0), self.loop
        )
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if not self.loop.is_running():
            return

        async def shut() -> None:
            assert self._server is not None
            self._server.close()
            # Every task of the loop, again until none is left: a connection accepted just
            # before the listener closed starts its task only now.
            this = asyncio.current_task()
            while tasks := [task for task in asyncio.all_tasks() if task is not this]:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(callback)

    # -- HTTP/1.1 ----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await self._read_request(reader, writer):
                if not await self._dispatch(request):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        parts = urlsplit(target)
        return Request(method, parts.path, parse_qs(parts.query), headers, body, reader, writer)

    async def _dispatch(self, request: Request) -> bool:
        """Serve one request; False when the connection was taken over or must close."""
        try:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                raise Reply(401, status_body(401, "Unauthorized", "Unauthorized"))
            for method, pattern, handler in self._routes:
                match = pattern.fullmatch(request.path)
                if match and method in ("*", request.method):
                    body = await handler(request, match)
                    if body is None:
                        return False
                    await self._send(request.writer, 200, body)
                    return True
            raise Reply(
                404, status_body(404, "NotFound", f"the server could not find {request.path}")
            )
        except Reply as reply:
            await self._send(request.writer, reply.code, reply.body)
            return "upgrade" not in request.headers

    async def _send(self, writer: asyncio.StreamWriter, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()

    # -- REST --------------------------------------------------------------------------

    def _authorize(self, verb: str, resource: str, namespace: str, name: str = "") -> None:
        if (verb, resource) in self.cluster.denied:
            subject = f'{resource.split("/")[0]} "{name}" is' if name else f"{resource} is"
            raise Reply(
                403,
                status_body(
                    403,
                    "Forbidden",
                    f'{subject} forbidden: User "system:serviceaccount:{namespace}:developer" '
                    f'cannot {verb} resource "{resource}" in API group "" '
                    f'in the namespace "{namespace}"',
                    name=name,
                    kind=resource.split("/")[0],
                ),
            )

    def _namespace(self, name: str) -> None:
        if name not in self.cluster.namespaces:
            raise Reply(404, status_body(404, "NotFound", f'namespaces "{name}" not found'))

    def _pod(self, namespace: str, name: str) -> Pod:
        pod: Pod | None = self.cluster.pods.get((namespace, name))
        if pod is None:
            raise Reply(404, status_body(404, "NotFound", f'pods "{name}" not found'))
        return pod

    async def _get_namespace(self, request: Request, match: re.Match[str]) -> dict[str, Any]:
        namespace = match[1]
        self._authorize("get", "namespaces", namespace, namespace)
        self._namespace(namespace)
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace},
            "status": {"phase": "Active"},
        }

    def _labels(self, request: Request) -> list[Requirement]:
        """The request's label selector; a 400, as the API server answers, if it is bad."""
        try:
            return parse(request.param("labelSelector"))
        except SelectorError as error:
            raise Reply(400, status_body(400, "BadRequest", str(error))) from error

    def _selected(self, request: Request, namespace: str) -> list[Pod]:
        labels, fields = self._labels(request), request.param("fieldSelector")
        return [
            pod
            for (space, _), pod in sorted(self.cluster.pods.items())
            if space == namespace and matches(labels, pod.labels) and matches_fields(pod, fields)
        ]

    async def _list_pods(self, request: Request, match: re.Match[str]) -> dict[str, Any] | None:
        namespace = match[1]
        watching = request.flag("watch")
        self._authorize("watch" if watching else "list", "pods", namespace)
        self._namespace(namespace)
        self._labels(request)  # refused before a watch starts its response
        if watching:
            await self._watch_pods(request, namespace)
            return None
        with self.cluster.lock:
            items = [pod.to_json() for pod in self._selected(request, namespace)]
            version = self.cluster.resource_version
        return {
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": str(version)},
            "items": items,
        }

    async def _watch_pods(self, request: Request, namespace: str) -> None:
        writer = request.writer
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        queue: asyncio.Queue[tuple[int, str, dict[str, Any], Pod] | None] = asyncio.Queue()
        self.cluster.watchers.add(queue)
        self.cluster.watch_opened.set()
        try:
            since = request.param("resourceVersion")
            with self.cluster.lock:
                if since and int(since) < self.cluster.compacted_version:
                    self.cluster.expired_watches += 1
                    expired = status_body(410, "Expired", f"too old resource version: {since}")
                    await self._chunk(writer, {"type": "ERROR", "object": expired})
                    await self._chunk(writer, None)
                    return
                if since:
                    backlog = [e for e in self.cluster.history if e[0] > int(since)]
                else:
                    backlog = [
                        (pod.resource_version, "ADDED", pod.to_json(), pod)
                        for pod in self._selected(request, namespace)
                    ]
                # Every change up to here is in the backlog; later ones arrive on the queue.
                sent = self.cluster.resource_version
            for _, kind, body, pod in backlog:
                if pod.namespace == namespace and self._selected_pod(request, pod):
                    await self._chunk(writer, {"type": kind, "object": body})
            deadline = self.loop.time() + float(request.param("timeoutSeconds") or 1800)
            while (remaining := deadline - self.loop.time()) > 0:
                try:
                    change = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if change is None:
                    break
                version, kind, body, pod = change
                if version <= sent:
                    continue
                sent = version
                if pod.namespace == namespace and self._selected_pod(request, pod):
                    await self._chunk(writer, {"type": kind, "object": body})
            await self._chunk(writer, None)
        finally:
            self.cluster.watchers.discard(queue)

    def _selected_pod(self, request: Request, pod: Pod) -> bool:
        return matches(self._labels(request), pod.labels) and matches_fields(
            pod, request.param("fieldSelector")
        )

    async def _chunk(self, writer: asyncio.StreamWriter, event: dict[str, Any] | None) -> None:
        if event is None:
            writer.write(b"0\r\n\r\n")
        else:
            line = json.dumps(event).encode() + b"\n"
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
        await writer.drain()

    async def _get_pod(self, request: Request, match: re.Match[str]) -> dict[str, Any]:
        namespace, name = match[1], match[2]
        self._authorize("get", "pods", namespace, name)
        self._namespace(namespace)
        with self.cluster.lock:
            body: dict[str, Any] = self._pod(namespace, name).to_json()
        return body

    async def _delete_pod(self, request: Request, match: re.Match[str]) -> dict[str, Any]:
        namespace, name = match[1], match[2]
        self._authorize("delete", "pods", namespace, name)
        body = self._pod(namespace, name).to_json()
        await asyncio.to_thread(self.cluster.delete_pod, name, namespace)
        return body

    async def _list_events(self, request: Request, match: re.Match[str]) -> dict[str, Any]:
        namespace = match[1]
        self._authorize("list", "events", namespace)
        wanted = request.param("fieldSelector").partition("involvedObject.name=")[2]
        wanted = wanted.split(",")[0]
        with self.cluster.lock:
            items = [
                event.to_json()
                for event in self.cluster.events
                if event.pod.namespace == namespace and (not wanted or event.pod.name == wanted)
            ]
        return {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items}

    async def _list_deployments(self, request: Request, match: re.Match[str]) -> dict[str, Any]:
        namespace = match[1]
        self._authorize("list", "deployments", namespace)
        self._namespace(namespace)
        labels = self._labels(request)
        with self.cluster.lock:
            items = [
                json.loads(json.dumps(body))
                for (space, _), body in sorted(self.cluster.deployments.items())
                if space == namespace and matches(labels, body["metadata"].get("labels", {}))
            ]
            version = self.cluster.resource_version
        return {
            "apiVersion": "apps/v1",
            "kind": "DeploymentList",
            "metadata": {"resourceVersion": str(version)},
            "items": items,
        }

    def _deployment(self, namespace: str, name: str) -> dict[str, Any]:
        self._namespace(namespace)
        with self.cluster.lock:
            body = self.cluster.deployments.get((namespace, name))
            if body is None:
                message = f'deployments.apps "{name}" not found'
                raise Reply(404, status_body(404, "NotFound", message))
            copied: dict[str, Any] = json.loads(json.dumps(body))
            return copied

    async def _get_deployment(self, request: Request, match: re.Match[str]) -> dict[str, Any]:
        self._authorize("get", "deployments", match[1], match[2])
        return self._deployment(match[1], match[2])

    async def _patch_deployment(self, request: Request, match: re.Match[str]) -> dict[str, Any]:
        namespace, name = match[1], match[2]
        self._authorize("patch", "deployments", namespace, name)
        self._deployment(namespace, name)
        try:
            patch = json.loads(request.body or b"null")
        except ValueError as error:
            raise Reply(400, status_body(400, "BadRequest", f"invalid patch: {error}")) from error
        content_type = request.headers.get("content-type", "")
        try:
            return await asyncio.to_thread(
                self.cluster.patch_deployment, namespace, name, patch, content_type
            )
        except PatchError as error:
            raise Reply(error.code, error.body) from error

    # -- streaming subresources --------------------------------------------------------

    async def _upgrade(self, request: Request, offered: tuple[str, ...]) -> WebSocket:
        if request.headers.get("upgrade", "").lower() != "websocket":
            raise Reply(400, status_body(400, "BadRequest", "this double serves WebSockets only"))
        wanted = [p.strip() for p in request.headers.get("sec-websocket-protocol", "").split(",")]
        chosen = next((p for p in wanted if p in offered), wanted[0] if wanted else "")
        request.writer.write(handshake_response(request.headers["sec-websocket-key"], chosen))
        await request.writer.drain()
        return WebSocket(request.reader, request.writer, chosen)

    async def _exec(self, request: Request, match: re.Match[str]) -> None:
        namespace, name = match[1], match[2]
        self._authorize("create", "pods/exec", namespace, name)
        pod = self._running_pod(namespace, name, request.param("container"))
        offered = EXEC_PROTOCOLS if self.cluster.offer_v5 else EXEC_PROTOCOLS[1:]
        socket = await self._upgrade(request, offered)
        process = await self.cluster.docker_exec(
            pod, request.query.get("command", []), stdin=request.flag("stdin")
        )
        assert process.stdin is not None and process.stdout and process.stderr

        async def pump_output(source: asyncio.StreamReader, channel: int) -> None:
            while chunk := await source.read(1 << 16):
                await socket.send(bytes([channel]) + chunk)

        async def pump_input() -> None:
            assert process.stdin is not None
            while (message := await socket.receive()) is not None:
                if not message:
                    continue
                if message[0] == STDIN:
                    with contextlib.suppress(ConnectionError):
                        process.stdin.write(message[1:])
                        await process.stdin.drain()
                elif message[0] == CLOSE and message[1:2] == bytes([STDIN]):
                    process.stdin.close()
            # The client hung up: like the kubelet, stop feeding the command; it keeps running.
            process.stdin.close()

        reading = asyncio.create_task(pump_input())
        try:
            await asyncio.gather(
                pump_output(process.stdout, STDOUT), pump_output(process.stderr, STDERR)
            )
            code = await process.wait()
            await socket.send(bytes([STATUS]) + json.dumps(exit_status(code)).encode())
            await socket.close()
        finally:
            reading.cancel()
            if process.returncode is None:
                process.kill()

    def _running_pod(self, namespace: str, name: str, container: str) -> Pod:
        self._namespace(namespace)
        pod = self._pod(namespace, name)
        if container and container not in pod.containers:
            raise Reply(
                400,
                status_body(
                    400, "BadRequest", f"container {container} is not valid for pod {name}"
                ),
            )
        if pod.container is None or pod.waiting_reason is not None:
            raise Reply(
                400,
                status_body(
                    400,
                    "BadRequest",
                    f"pod {name} does not have a host assigned"
                    if pod.phase == "Pending"
                    else f"container not found ({container or pod.containers[0]})",
                ),
            )
        return pod

    async def _portforward(self, request: Request, match: re.Match[str]) -> None:
        namespace, name = match[1], match[2]
        self._authorize("create", "pods/portforward", namespace, name)
        pod = self._running_pod(namespace, name, "")
        port = int(request.param("ports").split(",")[0])
        socket = await self._upgrade(request, (PORTFORWARD_PROTOCOL,))
        # As the kubelet does: each channel opens with a frame carrying the port, then it
        # dials; a failed dial is reported on the error channel and ends the stream. Nothing
        # is sent for a dial that worked.
        port_bytes = port.to_bytes(2, "little")
        await socket.send(bytes([FORWARD_DATA]) + port_bytes)
        await socket.send(bytes([FORWARD_ERROR]) + port_bytes)
        try:
            connection = await asyncio.to_thread(self.cluster.dial, pod, port)
        except (OSError, NamespaceUnavailable) as error:
            message = self.cluster.forward_error(pod, port, error)
            await socket.send(bytes([FORWARD_ERROR]) + message.encode())
            await socket.close()
            return
        reader, writer = await asyncio.open_connection(sock=connection)

        async def upstream() -> None:
            while (message := await socket.receive()) is not None:
                if message[:1] == bytes([FORWARD_DATA]) and len(message) > 1:
                    writer.write(message[1:])
                    await writer.drain()

        async def downstream() -> None:
            while chunk := await reader.read(1 << 16):
                await socket.send(bytes([FORWARD_DATA]) + chunk)

        # Whichever side ends first ends both, as with the kubelet: the protocol has no
        # half-close, so a closed WebSocket closes the app's connection, and the app closing
        # its connection closes the WebSocket.
        tasks = {asyncio.create_task(upstream()), asyncio.create_task(downstream())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            await socket.close()


def exit_status(code: int) -> dict[str, Any]:
    """The Status the kubelet sends on channel 3 when the command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }
