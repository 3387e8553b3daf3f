"""Running the faust app inside a program (demo, tests, benchmarks) rather than as `faust worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import AsyncIterator, Callable

from hub.streams.app import HubApp

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def running(hub: HubApp) -> AsyncIterator[HubApp]:
    """Start the app's services (consumer, producer, agents, tables) and stop them afterwards."""
    await asyncio.get_running_loop().run_in_executor(None, hub.publisher.ensure_topics)
    await hub.app.start()
    try:
        yield hub
    finally:
        await hub.app.stop()


async def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> float:
    """Wait until `condition()` holds; return the seconds waited. Raises TimeoutError naming `what`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(poll)
    return time.monotonic() - start
