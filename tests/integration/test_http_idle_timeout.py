"""The hub's HTTP servers (/metrics and the schema registry) close idle connections after the idle
timeout and bound the connections they serve at once, so idle clients cannot pin a thread each."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

from hub import metrics
from hub.adapters import http_server
from hub.adapters.registry_server import serving

pytestmark = pytest.mark.integration


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setattr(http_server, "IDLE_TIMEOUT", 0.5)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (recv gets EOF)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except (TimeoutError, ConnectionResetError):
        return False


def idle_connections(port: int, n: int, partial: bytes = b"") -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if partial:
            s.sendall(partial)
        socks.append(s)
    return socks


@pytest.mark.parametrize("server", ["metrics", "registry"])
def test_idle_connections_are_closed_and_bounded(server, short_timeout):
    if server == "metrics":
        httpd, _ = metrics.serve(0)
        url = f"http://127.0.0.1:{httpd.server_port}/metrics"
        stop = lambda: (httpd.shutdown(), httpd.server_close())  # noqa: E731
    else:
        ctx = serving()
        base = ctx.__enter__()
        url = f"{base}/subjects"
        stop = lambda: ctx.__exit__(None, None, None)  # noqa: E731
    port = int(url.split(":")[2].split("/")[0])
    try:
        threads_before = threading.active_count()
        socks = idle_connections(port, 20) + idle_connections(port, 20, partial=b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        assert threading.active_count() - threads_before <= http_server.MAX_CONNECTIONS  # not one thread per connection
        started = time.monotonic()
        assert all(closed_within(s, 3) for s in socks)  # every idle one closed by the server
        assert time.monotonic() - started < 3
        for s in socks:
            s.close()
        with urllib.request.urlopen(url, timeout=5) as resp:  # and it serves again
            assert resp.status == 200
    finally:
        stop()
