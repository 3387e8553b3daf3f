"""HTTP edge of the read-only schema registry (hub.schemas.registry): standard library only."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler
from typing import Iterator

from hub.adapters import http_server
from hub.schemas.registry import CONTENT_TYPE, SchemaRegistry

log = logging.getLogger(__name__)


def make_server(host: str = "127.0.0.1", port: int = 8081, registry: SchemaRegistry | None = None) -> http_server.BoundedHTTPServer:
    """A server bound to host:port (0 picks a free port); call serve_forever() or use `serving()`.
    Idle connections are closed after IDLE_TIMEOUT seconds; connections are bounded (hub.adapters.http_server)."""
    registry = registry or SchemaRegistry()

    class Handler(BaseHTTPRequestHandler):
        server_version = "hub-schema-registry"
        timeout = http_server.IDLE_TIMEOUT

        def do_GET(self):  # noqa: N802 - http.server's naming
            status, body = registry.get(self.path)
            self._reply(status, body)

        def do_HEAD(self):  # noqa: N802
            status, _ = registry.get(self.path)
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.end_headers()

        def _read_only(self):
            self._reply(405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed: the hub's schema registry is read-only; schemas change in the hub's repository"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _read_only

        def _reply(self, status: int, body) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):  # access log at debug level, not on stderr
            log.debug("registry: " + fmt, *args)

    return http_server.BoundedHTTPServer((host, port), Handler)


@contextlib.contextmanager
def serving(host: str = "127.0.0.1", port: int = 0, registry: SchemaRegistry | None = None) -> Iterator[str]:
    """Serve in a background thread; yields the base URL; stops the server on exit."""
    server = make_server(host, port, registry)
    thread = threading.Thread(target=server.serve_forever, name="schema-registry", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
