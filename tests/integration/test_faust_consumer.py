"""The worker consumer's fetch wait is the hub's setting, not faust's fixed 1.5 s (on the real broker).

At low load the fixed wait added up to 1.5 s per hop (bench/RESULTS.md: p50 874 ms -> 135 ms at 150
events/s); a test that would fail if faust's factory stopped taking the setting."""

import asyncio

import pytest

from hub.config import Settings
from hub.streams import newcomer_agents
from hub.streams.app import HubApp
from hub.streams.runner import running

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("wait_ms", [100, 250])
def test_the_worker_consumer_fetches_with_the_configured_wait(fresh_kafka_url, wait_ms):
    assert Settings.from_env({}).fetch_max_wait_ms == 100
    assert Settings.from_env({"HUB_KAFKA_FETCH_MAX_WAIT_MS": str(wait_ms)}).fetch_max_wait_ms == wait_ms

    async def scenario():
        hub = HubApp(Settings(app_id=f"fetch-wait-{wait_ms}", fetch_max_wait_ms=wait_ms), fresh_kafka_url)
        newcomer_agents.register(hub)  # a worker consumer exists only with an agent
        async with running(hub):
            consumer = hub.app.consumer._thread._consumer
            for _ in range(100):
                if getattr(consumer, "_fetcher", None) is not None:
                    break
                await asyncio.sleep(0.05)
            return consumer._fetch_max_wait_ms, consumer._fetcher._fetch_max_wait_ms

    assert asyncio.run(scenario()) == (wait_ms, wait_ms)
