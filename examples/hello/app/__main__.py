"""Serve the greeting over HTTP on 127.0.0.1:$PORT (8000 by default).

``POST /echo`` answers with the request body: ``Content-Length`` bytes, or, without that
header, everything the client sends until it closes its side of the connection.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from app.greeting import greet


class GreetingHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/health":
            self._reply(200, {"ok": True})
        elif url.path == "/":
            name = parse_qs(url.query).get("name", ["world"])[0]
            self._reply(200, {"message": greet(name)})
        else:
            self._reply(404, {"error": f"no page at {url.path}"})

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/echo":
            self._reply(404, {"error": f"nothing to post to at {self.path}"})
            return
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length is not None else self.rfile.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reply(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)


class GreetingServer(ThreadingHTTPServer):
    # The default backlog of 5 turns a burst of clients into connection resets.
    request_queue_size = 128


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    server = GreetingServer(("127.0.0.1", port), GreetingHandler)
    print(f"hello app listening on http://127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
