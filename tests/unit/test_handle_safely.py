"""An unexpected error on one record dead-letters it (type name only) instead of stopping the agent."""

import asyncio
from types import SimpleNamespace

from hub.config import Settings
from hub.streams.app import HubApp


def test_unexpected_error_is_dead_lettered_with_the_type_only():
    hub = HubApp(Settings(app_id="safely"), "kafka://127.0.0.1:1")
    letters = []

    async def capture(value, reason, message, **kw):
        letters.append((value, reason, message, kw))
        kept = asyncio.get_running_loop().create_future()  # the dead letter exists
        kept.set_result(None)
        return kept

    hub.dead_letter = capture
    event = SimpleNamespace(message=SimpleNamespace(value=b"\x00raw", topic="hub.newcomers.v1", partition=0, offset=7, key=b"k"))

    async def boom(_event):
        raise KeyError("131052-308T")

    async def fine(_event):
        return "ok"

    assert asyncio.run(hub.handle_safely(event, boom, "routing")) is None
    assert asyncio.run(hub.handle_safely(event, fine, "routing")) == "ok"
    ((value, reason, message, kw),) = letters
    assert value == b"\x00raw" and reason == "internal_error" and kw["offset"] == 7
    assert "KeyError" in message and "131052" not in message
