"""The worker consumer's fetch wait is the hub's setting, not faust's fixed 1.5 s (on the real broker).

At low load the fixed wait added up to 1.5 s per hop (bench/RESULTS.md: p50 874 ms -> 135 ms at 150
events/s); a test that would fail if faust's factory stopped taking the setting."""

import asyncio

import pytest

from hub.config import Settings
from hub.adapters.person_states import MemoryPersonStates
from hub.streams import newcomer_agents
from hub.streams.app import HubApp
from hub.streams.runner import running

pytestmark = pytest.mark.integration


def test_the_worker_producer_lingers_as_configured():
    assert Settings.from_env({}).producer_linger_ms == 0
    assert HubApp(Settings(app_id="linger-default"), "kafka://127.0.0.1:1").app.conf.producer_linger == 0.0
    settings = Settings.from_env({"HUB_KAFKA_PRODUCER_LINGER_MS": "5"})
    assert HubApp(settings, "kafka://127.0.0.1:1").app.conf.producer_linger == 0.005


def test_a_batch_consumers_producer_is_configured_like_the_apps():
    settings = Settings.from_env({"HUB_KAFKA_PRODUCER_LINGER_MS": "5", "HUB_KAFKA_PRODUCER_TIMEOUT": "30"})
    hub = HubApp(settings, "kafka://127.0.0.1:1")

    async def made():
        return hub._new_producer("detection")  # not started: nothing connects

    producer = asyncio.run(made())
    assert (producer._sender._acks, producer._request_timeout_ms, producer._partitioner) == (-1, 30_000, hub.app.conf.producer_partitioner)
    assert producer._message_accumulator._linger_time == 0.005
    assert producer.client._client_id == f"{settings.app_id}-detection"


@pytest.mark.parametrize("wait_ms, pipeline_wait_ms", [(100, 20), (250, 5)])
def test_the_worker_consumer_fetches_with_the_configured_wait(fresh_kafka_url, wait_ms, pipeline_wait_ms):
    assert Settings.from_env({}).fetch_max_wait_ms == 100
    assert Settings.from_env({}).pipeline_fetch_max_wait_ms == 5
    env = {"HUB_KAFKA_FETCH_MAX_WAIT_MS": str(wait_ms), "HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS": str(pipeline_wait_ms)}
    assert (Settings.from_env(env).fetch_max_wait_ms, Settings.from_env(env).pipeline_fetch_max_wait_ms) == (wait_ms, pipeline_wait_ms)

    async def scenario():
        hub = HubApp(Settings(app_id=f"fetch-wait-{wait_ms}", fetch_max_wait_ms=wait_ms, pipeline_fetch_max_wait_ms=pipeline_wait_ms), fresh_kafka_url)
        newcomer_agents.register(hub, states=MemoryPersonStates())  # detection's batch consumer
        hub.app.agent(hub.topic("fetch-wait.other.v1"), name="other")(_drain)  # a worker consumer exists only with an agent
        async with running(hub):
            consumer = hub.app.consumer._thread._consumer
            for _ in range(100):
                if getattr(consumer, "_fetcher", None) is not None:
                    break
                await asyncio.sleep(0.05)
            (detection,) = hub.batch_consumers
            return consumer._fetch_max_wait_ms, consumer._fetcher._fetch_max_wait_ms, detection.fetch_wait_ms, detection.busy_fetch_wait_ms

    # faust's consumer (every other stream) waits HUB_KAFKA_FETCH_MAX_WAIT_MS; so do the pipeline's batch consumers (the latency
    # path) while their topic is quiet, and HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS while records flow (tests/integration/test_batch_consumer.py)
    assert asyncio.run(scenario()) == (wait_ms, wait_ms, wait_ms, pipeline_wait_ms)


async def _drain(stream):
    async for _ in stream:
        pass


def _committed(url: str, group: str, topic: str) -> int | None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from tests.kafka_helpers import bootstrap

    async def read():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return await consumer.committed(TopicPartition(topic, 0))
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_commits_from_a_fresh_group_and_a_restart_resumes_after_them(fresh_kafka_url):
    """A group with nothing committed has a base (the earliest offset), so it commits as it goes;
    a new worker of the same group starts exactly after the committed offset: nothing processed
    twice, nothing skipped (the safe-commit rules of hub.adapters.faust_consumer on the real broker)."""
    from tests.kafka_helpers import publish_all

    topic = "safe-commit-test"
    app_id = "safe-commits-it"

    async def run(expect: int) -> list[int]:
        hub = HubApp(Settings(app_id=app_id), fresh_kafka_url)
        seen: list[int] = []

        @hub.app.agent(hub.topic(topic), name="offsets")
        async def offsets(stream):
            async for event in stream.events():
                seen.append(event.message.offset)

        async with running(hub):
            for _ in range(400):
                if len(seen) >= expect:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the last event is acknowledged when the stream asks for the next
            await hub.app.consumer.commit()
        return seen

    asyncio.run(publish_all(fresh_kafka_url, [(topic, b"k", b"%d" % i, None) for i in range(30)]))
    assert asyncio.run(run(30)) == list(range(30))
    assert _committed(fresh_kafka_url, app_id, topic) == 30
    asyncio.run(publish_all(fresh_kafka_url, [(topic, b"k", b"%d" % i, None) for i in range(30, 40)]))
    assert asyncio.run(run(10)) == list(range(30, 40))
    assert _committed(fresh_kafka_url, app_id, topic) == 40


def test_a_starting_app_sets_the_configured_gc_threshold(fresh_kafka_url):
    import gc

    before = gc.get_threshold()

    async def scenario(threshold):
        hub = HubApp(Settings(app_id=f"gc-{threshold}", gc_threshold=threshold), fresh_kafka_url)
        newcomer_agents.register(hub, states=MemoryPersonStates())
        async with running(hub):
            return gc.get_threshold()[0]

    try:
        gc.set_threshold(700, *before[1:])
        assert asyncio.run(scenario(0)) == 700  # 0: Python's own
        assert asyncio.run(scenario(4_321)) == 4_321
        assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)
