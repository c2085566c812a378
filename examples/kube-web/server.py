"""An HTTP server on port 8000 that answers with ``text()`` of greeting.py.

It runs greeting.py again whenever the file changed, so a save that podlink syncs into the
pod is served by the next request without restarting the container. (Its source is run
directly rather than re-imported: a reload could take a stale bytecode cache for a file
saved twice within a second at the same size.) Each request is logged on stdout: `podlink
logs` shows it.
"""

import os
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PORT = int(os.environ.get("PORT", "8000"))
GREETING = Path(__file__).with_name("greeting.py")
_loaded: tuple[int, int, Callable[[], str]] | None = None


def current_greeting() -> str:
    global _loaded
    info = GREETING.stat()
    if _loaded is None or _loaded[:2] != (info.st_mtime_ns, info.st_size):
        namespace: dict[str, object] = {}
        exec(compile(GREETING.read_text(), str(GREETING), "exec"), namespace)
        text = namespace["text"]
        assert callable(text)
        _loaded = (info.st_mtime_ns, info.st_size, text)
    return str(_loaded[2]())


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
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
