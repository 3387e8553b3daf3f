"""HTTP edge of the schema registry (hub.schemas.registry) on aiohttp.web.

Every request goes to `SchemaRegistry.handle`; /health answers the probes. A connection silent
for `http_server.IDLE_TIMEOUT` seconds is closed (also one that never sends a whole request),
request bodies are bounded (`MAX_BODY`), and a stop is graceful: the listener closes, requests in
flight finish (up to `SHUTDOWN_TIMEOUT`), then connections close. The access log
(logger hub.registry.access, INFO) holds the client address, request line, status, size and
time: registry requests carry schemas and subject names, never personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from typing import Callable, Iterator

from aiohttp import web

from hub.adapters import http_server
from hub.schemas.registry import CONTENT_TYPE, SchemaRegistry

log = logging.getLogger(__name__)
access_log = logging.getLogger("hub.registry.access")

MAX_BODY = 1024 * 1024  # a schema in a lookup, register or compatibility POST; the hub's largest is a few kB
SHUTDOWN_TIMEOUT = 10.0  # seconds requests in flight get to finish at a stop
ACCESS_FORMAT = '%a "%r" %s %b %Tfs'


def make_app(registry: SchemaRegistry | None = None) -> web.Application:
    """The aiohttp application: GET /health and the registry's API on every other path."""
    registry = registry or SchemaRegistry()

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "versions": sum(len(registry.codec.versions(n)) for n in registry.codec.names)})

    async def api(request: web.Request) -> web.Response:
        method = "GET" if request.method == "HEAD" else request.method
        body = await request.read() if request.can_read_body else b""
        if method == "GET":
            status, answer = registry.handle(method, request.raw_path, body)
        else:  # a compatibility check reads generated records: off the event loop
            status, answer = await asyncio.get_running_loop().run_in_executor(None, registry.handle, method, request.raw_path, body)
        return web.Response(status=status, body=json.dumps(answer, ensure_ascii=False).encode(), content_type=CONTENT_TYPE)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", api)
    return app


async def start(host: str, port: int, registry: SchemaRegistry | None = None) -> tuple[web.AppRunner, int]:
    """Start serving on host:port (0 picks a free port). Returns the runner (stop: `runner.cleanup()`) and the port."""
    runner = web.AppRunner(make_app(registry), access_log=access_log, access_log_format=ACCESS_FORMAT,
                           keepalive_timeout=http_server.IDLE_TIMEOUT, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=128, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def serve(host: str, port: int, on_ready: Callable[[int], None] | None = None, registry: SchemaRegistry | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully; `on_ready(port)` once listening."""
    runner, bound = await start(host, port, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(bound)
    try:
        await stop.wait()
    finally:
        log.info("schema registry stopping: finishing requests in flight")
        await runner.cleanup()


@contextlib.contextmanager
def serving(host: str = "127.0.0.1", port: int = 0, registry: SchemaRegistry | None = None) -> Iterator[str]:
    """Serve in a background thread with its own event loop; yields the base URL; stops on exit."""
    loop = asyncio.new_event_loop()
    ready: list[int] = []
    started = threading.Event()
    failed: list[BaseException] = []
    stop: list[asyncio.Event] = []

    async def run() -> None:
        stop.append(asyncio.Event())
        try:
            runner, bound = await start(host, port, registry)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller's thread
            failed.append(exc)
            started.set()
            return
        ready.append(bound)
        started.set()
        try:
            await stop[0].wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=loop.run_forever, name="schema-registry", daemon=True)
    thread.start()
    future = asyncio.run_coroutine_threadsafe(run(), loop)
    started.wait(30)
    try:
        if failed:
            raise failed[0]
        yield f"http://{host}:{ready[0]}"
    finally:
        if stop:
            loop.call_soon_threadsafe(stop[0].set)
        with contextlib.suppress(BaseException):
            future.result(SHUTDOWN_TIMEOUT + 5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
