"""The daemon's framing, driven over raw pipes with what a broken or hostile client sends:
every bad message gets its JSON-RPC error and the daemon keeps listening."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podlink.server.framing import MAX_MESSAGE_BYTES


class RawDaemon:
    """``podlink serve`` on pipes: bytes go in as given, framed messages come out parsed."""

    def __init__(self, state: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "podlink", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PODLINK_STATE_DIR": str(state)},
        )
        self.messages: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = None
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if not line or length is None:
                return
            message = json.loads(stream.read(length))
            with self._changed:
                self.messages.append(message)
                self._changed.notify_all()

    def send_raw(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def request(self, message_id: int, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "id": message_id, "method": method, "params": params or {}})

    def wait_for(self, predicate: Any, seconds: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        with self._changed:
            while True:
                found = next((m for m in self.messages if predicate(m)), None)
                if found is not None:
                    self.messages.remove(found)
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no such message; got {self.messages}")
                self._changed.wait(remaining)

    def reply_to(self, message_id: int | None) -> dict[str, Any]:
        return self.wait_for(lambda m: "method" not in m and m.get("id") == message_id)

    def show_messages(self) -> list[dict[str, Any]]:
        with self._changed:
            return [m for m in self.messages if m.get("method") == "window/showMessage"]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RawDaemon]:
    daemon = RawDaemon(tmp_path / "state")
    daemon.request(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    assert "result" in daemon.reply_to(1)
    daemon.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    yield daemon
    if daemon.process.poll() is None:
        daemon.process.kill()
    daemon.process.wait()


def still_answers(daemon: RawDaemon, message_id: int) -> None:
    daemon.request(message_id, "podlink/listSessions")
    assert daemon.reply_to(message_id)["result"] == []


def framed(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


BAD_FRAMES = [
    pytest.param(b"Content-Length: abc\r\n\r\n{}", -32700, id="length-not-a-number"),
    pytest.param(b"Content-Length: -5\r\n\r\n{}", -32700, id="negative-length"),
    pytest.param(b"Content-Type: x\r\n\r\n{}", -32700, id="no-length"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 9, "method": "x"}', -32700, id="no-headers"),
    pytest.param(b"Content-Length: 1000000000000\r\n\r\n{}", -32600, id="huge-length"),
    pytest.param(framed(b"{not json"), -32700, id="not-json"),
    pytest.param(framed(b"\xff\xfe{}"), -32700, id="not-utf8"),
    pytest.param(framed(b"[1, 2]"), -32600, id="array"),
    pytest.param(framed(b"{}"), -32600, id="no-jsonrpc"),
    pytest.param(framed(b'{"jsonrpc": 2}'), -32600, id="wrong-jsonrpc"),
    pytest.param(framed(b'{"jsonrpc": "2.0", "id": [1]}'), -32600, id="bad-id"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
def test_a_bad_message_gets_its_error_and_the_next_one_is_answered(
    daemon: RawDaemon, frame: bytes, code: int
) -> None:
    daemon.send_raw(frame)
    still_answers(daemon, 2)
    error = daemon.reply_to(None)["error"]
    assert error["code"] == code
    assert error["data"]["reason"] == {-32700: "parseError", -32600: "invalidRequest"}[code]
    assert "Traceback" not in error["message"]
    # Again, to show the first one left nothing half-read behind.
    still_answers(daemon, 3)
    assert daemon.show_messages() == []


def test_an_oversized_message_names_the_limit_and_is_not_read_into_memory(
    daemon: RawDaemon,
) -> None:
    length = MAX_MESSAGE_BYTES + 1
    body = b'{"jsonrpc": "2.0", "id": 5, "method": "podlink/listSessions", "params": {"x": "'
    body += b"a" * (length - len(body) - 3) + b'"}}'
    assert len(body) == length
    daemon.send_raw(b"Content-Length: %d\r\n\r\n" % length + body)
    error = daemon.reply_to(None)["error"]
    assert error["code"] == -32600
    assert error["data"]["detail"] == {"limit": MAX_MESSAGE_BYTES, "length": length}
    still_answers(daemon, 6)


def test_a_request_without_jsonrpc_is_answered_with_its_own_id(daemon: RawDaemon) -> None:
    daemon.send({"id": 7, "method": "podlink/listSessions"})
    assert daemon.reply_to(7)["error"]["code"] == -32600
    still_answers(daemon, 8)


def test_a_config_file_outside_the_workspace_is_refused_without_its_contents(
    daemon: RawDaemon, tmp_path: Path
) -> None:
    folder = tmp_path / "workspace"
    folder.mkdir()
    daemon.request(
        4,
        "podlink/startSession",
        {"folder": folder.as_uri(), "configFile": "../../../../../../../../../etc/passwd"},
    )
    error = daemon.reply_to(4)["error"]
    assert error["code"] == -32001
    assert "must be inside the workspace folder" in error["message"]
    assert "root:" not in json.dumps(error)
    still_answers(daemon, 5)
