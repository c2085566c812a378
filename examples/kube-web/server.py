"""An HTTP server on port 8000 that answers with ``greeting.text()``.

It loads greeting.py again whenever the file changed, so a save that podlink syncs into
the pod is served by the next request without restarting the container. Each request is
logged on stdout: `podlink logs` shows it.
"""

import importlib
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import greeting

PORT = int(os.environ.get("PORT", "8000"))
_loaded_at = os.stat(greeting.__file__).st_mtime_ns


def current_greeting() -> str:
    global _loaded_at
    changed = os.stat(greeting.__file__).st_mtime_ns
    if changed != _loaded_at:
        _loaded_at = changed
        importlib.reload(greeting)
    return greeting.text()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (current_greeting() + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)


if __name__ == "__main__":
    print(f"serving on port {PORT}", flush=True)
    sys.stdout.flush()
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
