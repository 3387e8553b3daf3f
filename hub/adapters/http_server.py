"""The hub's small HTTP servers (/metrics and /health of the workers): a thread per connection, but
at most `max_connections` at once (more are closed at once), and a connection idle for
`IDLE_TIMEOUT` seconds is closed, so idle or slow clients cannot pin threads. The schema registry
(hub/adapters/registry_server.py, aiohttp) closes idle connections after the same `IDLE_TIMEOUT`."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import ThreadingHTTPServer
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 10.0  # seconds a connection may stay silent (a Prometheus scrape or a probe needs far less)
MAX_CONNECTIONS = 32


class BoundedThreads(ThreadingMixIn):
    """ThreadingMixIn with a cap on the connections handled at once."""

    daemon_threads = True
    block_on_close = False
    max_connections = MAX_CONNECTIONS
    request_queue_size = 64  # listen backlog (socketserver's 5 makes a burst of connections wait for SYN retries)

    def process_request(self, request, client_address):
        slots = self.__dict__.setdefault("_slots", threading.BoundedSemaphore(self.max_connections))
        if not slots.acquire(blocking=False):
            log.warning("http: %s connections open already; closing the one from %s", self.max_connections, client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):  # a client that went away: not worth a traceback on stderr
        log.debug("http: connection from %s failed", client_address[0], exc_info=True)


class BoundedHTTPServer(BoundedThreads, ThreadingHTTPServer):
    """http.server's ThreadingHTTPServer, bounded; its handler class sets `timeout = IDLE_TIMEOUT`
    (BaseHTTPRequestHandler closes a connection that times out)."""


def _family(addr: str) -> socket.AddressFamily:
    return socket.getaddrinfo(addr or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]


class _WSGIHandler(WSGIRequestHandler):
    def handle(self) -> None:
        try:
            super().handle()
        except TimeoutError:  # idle past the timeout: close it quietly
            self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        log.debug("http: " + format, *args)


def serve_wsgi(app, port: int, addr: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
    """Serve a WSGI app on addr:port (0 picks a free port) in a daemon thread: (server, thread)."""

    class Server(BoundedThreads, WSGIServer):
        address_family = _family(addr)

    class Handler(_WSGIHandler):
        timeout = IDLE_TIMEOUT

    server = Server((addr, port), Handler)
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, name=f"http-{server.server_port}", daemon=True)
    thread.start()
    return server, thread
