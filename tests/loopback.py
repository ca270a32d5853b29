"""A threaded HTTP server on a free loopback port, serving while a ``with`` block runs.

The CLI tests put one between a real client (Claude Code, Codex) and the gateway, to record or
script what goes over the wire; each brings its own request handler.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """Serves ``handler`` on 127.0.0.1 (a free port) from a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name=name)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)
