"""A local replay server of the VTJ-muutosrajapinta for tests: serves saved responses on 127.0.0.1.

`ReplayServer(pages={key: body}, first_key=...)`: GET /api/v1/kirjausavain/<date> answers the
first key; POST /api/v1/muutokset answers the page stored under the request's
viimeisinKirjausavain. `fail[key] = [500, 503]` makes the next requests for that key fail with
those statuses first. Every request is recorded (path, headers, JSON body).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dvv"


def fixture_pages() -> tuple[int, dict[int, bytes]]:
    """The first key and the pages of tests/fixtures/dvv (kirjausavain -> page1 -> page2)."""
    first = json.loads((FIXTURES / "kirjausavain.json").read_text())["viimeisinKirjausavain"]
    page1 = (FIXTURES / "page1.json").read_bytes()
    page2 = (FIXTURES / "page2.json").read_bytes()
    return first, {first: page1, json.loads(page1)["viimeisinKirjausavain"]: page2}


def sample_day(first_key: int = 7100000000) -> tuple[int, dict[int, bytes]]:
    """The first key and the pages of the demo's synthetic day (hub.adapters.dvv.sample), chained by
    key: three pages; the third has 3 bad changes and a data group the hub does not map."""
    from hub.adapters.dvv.sample import sample_files

    pages, key = {}, first_key
    for path in sample_files():
        pages[key] = path.read_bytes()
        key = json.loads(pages[key])["viimeisinKirjausavain"]
    return first_key, pages


class ReplayServer:
    def __init__(self, pages: dict[int, bytes], first_key: int, perustiedot: bytes | None = None):
        self.pages = dict(pages)
        self.first_key = first_key
        self.perustiedot = perustiedot or b'{"perustiedot": [], "ajanTasalla": true}'
        self.fail: dict[object, list[int]] = {}
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self, body):
                server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})

            def do_GET(self):
                self._record(None)
                if self.path.startswith("/api/v1/kirjausavain/"):
                    if server._failing("kirjausavain"):
                        return self._reply(server._failing("kirjausavain", pop=True), b"{}")
                    return self._reply(200, json.dumps({"viimeisinKirjausavain": server.first_key}).encode())
                self._reply(404, b'{"error": "not found"}')

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                self._record(body)
                if self.path == "/api/v1/muutokset":
                    key = int(body["viimeisinKirjausavain"])
                    status = server._failing(key, pop=True)
                    if status:
                        return self._reply(status, b'{"error": "try again"}')
                    page = server.pages.get(key)
                    if page is None:
                        return self._reply(200, json.dumps({"viimeisinKirjausavain": key, "muutokset": [], "ajanTasalla": True}).encode())
                    return self._reply(200, page)
                if self.path == "/api/v1/perustiedot":
                    return self._reply(200, server.perustiedot)
                self._reply(404, b'{"error": "not found"}')

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def _failing(self, key, pop: bool = False):
        queue = self.fail.get(key)
        if not queue:
            return None
        return queue.pop(0) if pop else queue[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1"

    def muutokset_keys(self) -> list[int]:
        return [r["body"]["viimeisinKirjausavain"] for r in self.requests if r["path"] == "/api/v1/muutokset"]

    def __enter__(self) -> "ReplayServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
