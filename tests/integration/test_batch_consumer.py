"""The batch consumer (hub.adapters.kafka.consumer) on the real broker: commits after each handled
batch, a failed batch read again in the same process, a restart resuming after the commit, and a
partition moving to a second worker only between batches."""

import asyncio
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from hub.adapters.kafka.admin import ensure_topics
from hub.config import Settings
from hub.streams.pipeline import hub_app
from hub.streams.runner import running, wait_for
from hub.adapters.kafka.consumer import stream_producer
from tests.kafka_helpers import bootstrap, decoded, produce, read_topic

pytestmark = pytest.mark.integration
TOPIC = "test.batch-consumer.v1"


async def committed(url: str, group: str, partitions: int = 1) -> list[int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return [await consumer.committed(TopicPartition(TOPIC, p)) for p in range(partitions)]
    finally:
        await consumer.stop()


def load(url: str, n: int, partitions: int = 1) -> None:
    ensure_topics(url, [TOPIC], partitions)
    asyncio.run(produce(url, TOPIC, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(n)]))


def test_a_failed_batch_is_read_again_in_process_and_committed_after_it_succeeds(fresh_kafka_url):
    load(fresh_kafka_url, 50)
    hub = hub_app(Settings(app_id="batch-retry-it"), fresh_kafka_url)
    seen: Counter = Counter()
    failures = []

    async def handle(records):
        if not failures:  # the first batch fails once with an outage (the broker not reachable): read again whole
            failures.append(len(records))
            raise KafkaConnectionError("not this time")
        seen.update(r.value for r in records)

    consumer = hub.batch_consumer("retry", TOPIC, handle, max_records=20)

    async def scenario():
        async with running(hub):
            await wait_for(lambda: len(seen) == 50, 60, "every record")

    asyncio.run(scenario())
    assert asyncio.run(committed(fresh_kafka_url, hub.batch_group("retry"))) == [50]
    assert failures and consumer.retries == 1
    assert set(seen) == {f"v{i}".encode() for i in range(50)} and max(seen.values()) == 1  # the failed batch: nothing kept of it


def test_a_restarted_worker_resumes_after_the_committed_batches(fresh_kafka_url):
    load(fresh_kafka_url, 30)
    settings = Settings(app_id="batch-restart-it")
    seen: list[bytes] = []

    async def handle(records):
        seen.extend(r.value for r in records)

    async def worker(until: int):
        hub = hub_app(settings, fresh_kafka_url)
        hub.batch_consumer("restart", TOPIC, handle, max_records=7)
        async with running(hub):
            await wait_for(lambda: len(seen) >= until, 60, f"{until} records")

    asyncio.run(worker(30))
    asyncio.run(produce(fresh_kafka_url, TOPIC, [(b"k", f"late{i}".encode()) for i in range(5)]))
    asyncio.run(worker(35))
    assert seen == [f"v{i}".encode() for i in range(30)] + [f"late{i}".encode() for i in range(5)]  # nothing read twice
    assert asyncio.run(committed(fresh_kafka_url, "batch-restart-it.restart")) == [35]


def test_a_partition_moves_to_a_second_worker_only_between_batches(fresh_kafka_url):
    """Two workers of one group on two partitions; the second joins while the first is in the middle
    of slow batches. The first finishes and commits its batch before its partition moves, so no
    record is handled twice and none is skipped. A batch takes 5 s, longer than the group join
    (~3 s on the embedded broker): without the rebalance listener that waits for it, the second
    worker reads the batch's partition from the old commit and handles records twice (this test
    fails then; with 2 s batches it did not)."""
    n = 100
    load(fresh_kafka_url, n, partitions=2)
    settings = Settings(app_id="batch-rebalance-it", topic_partitions=2)
    handled: Counter = Counter()
    by_worker: Counter = Counter()

    def handler(name, pause):
        async def handle(records):
            await asyncio.sleep(pause)  # the first worker is slow: the rebalance finds a batch in processing
            handled.update((r.partition, r.offset) for r in records)
            by_worker[name] += len(records)
        return handle

    async def scenario():
        first, second = hub_app(settings, fresh_kafka_url), hub_app(settings, fresh_kafka_url)
        first.batch_consumer("rebalance", TOPIC, handler("first", 5.0), max_records=10)
        second.batch_consumer("rebalance", TOPIC, handler("second", 0.05), max_records=10)
        async with running(first):
            await wait_for(lambda: by_worker["first"] >= 10, 60, "the first worker to be under way")
            async with running(second):
                await wait_for(lambda: len(handled) == n, 120, "every record")
                await asyncio.sleep(1.0)

    asyncio.run(scenario())
    assert len(handled) == n and max(handled.values()) == 1, [k for k, v in handled.items() if v > 1][:5]
    assert by_worker["second"] > 0  # the second worker did take a partition over


def test_the_fetch_wait_is_short_while_records_flow_and_long_when_the_topic_is_quiet(fresh_kafka_url):
    ensure_topics(fresh_kafka_url, [TOPIC], 1)
    hub = hub_app(Settings(app_id="batch-wait-it", fetch_max_wait_ms=100, pipeline_fetch_max_wait_ms=5), fresh_kafka_url)
    seen: list[bytes] = []

    async def handle(records):
        seen.extend(r.value for r in records)

    consumer = hub.batch_consumer("wait", TOPIC, handle, max_records=20)
    consumer.idle_after = 2.0
    waits = []

    async def scenario():
        async with running(hub):
            await wait_for(lambda: consumer.fetch_wait_ms is not None, 30, "the consumer's fetcher")
            waits.append(consumer.fetch_wait_ms)  # nothing to read yet
            await produce(fresh_kafka_url, TOPIC, [(b"k", f"v{i}".encode()) for i in range(10)])
            await wait_for(lambda: len(seen) == 10, 30, "the records")
            waits.append(consumer.fetch_wait_ms)  # records flowed within the last idle_after seconds
            await wait_for(lambda: consumer.fetch_wait_ms == 100, 30, "the long wait after a quiet spell")
            await produce(fresh_kafka_url, TOPIC, [(b"k", b"again")])
            await wait_for(lambda: len(seen) == 11, 30, "the next record")
            waits.append(consumer.fetch_wait_ms)

    asyncio.run(scenario())
    assert waits == [100, 5, 5]


def test_a_handler_publishes_through_its_consumers_own_producer_and_a_timer_through_the_hubs(fresh_kafka_url):
    out = "test.batch-consumer.out.v1"
    ensure_topics(fresh_kafka_url, [TOPIC, out], 1)
    hub = hub_app(Settings(app_id="batch-producer-it"), fresh_kafka_url)
    used = []

    async def handle(records):
        used.append(stream_producer.get())
        sends = [await hub.publisher.publish(out, "DeadLetter", _record(r.value)) for r in records]
        await asyncio.gather(*sends)

    consumer = hub.batch_consumer("producer", TOPIC, handle, max_records=20)
    make = consumer._new_producer
    consumer._new_producer = lambda: _CountingSends(make())

    @hub.app.timer(interval=0.2)
    async def outside():  # a timer: no stream producer there, the hub's own
        used.append(("timer", stream_producer.get(), hub.publisher.producer_here() is hub.producer))

    async def scenario():
        async with running(hub):
            await produce(fresh_kafka_url, TOPIC, [(b"k", f"v{i}".encode()) for i in range(5)])
            records = await read_topic(fresh_kafka_url, out, min_count=5)
            return consumer.producer, records

    own, records = asyncio.run(scenario())
    assert isinstance(own, _CountingSends) and own.sent == 5  # the hub's publish went through it
    assert {p for p in used if not isinstance(p, tuple)} == {own}  # every batch through the consumer's producer
    assert ("timer", None, True) in used
    assert sorted(r["original_value"] for r in decoded(records)) == [f"v{i}".encode() for i in range(5)]
    assert consumer.producer is None  # stopped with the consumer


def _record(value: bytes) -> dict:
    from hub.schemas.envelope import dead_letter_record

    return dead_letter_record(value, "internal_error", "test", original_topic=TOPIC)


class _CountingSends:
    """The consumer's aiokafka producer, counting what is sent through it."""

    def __init__(self, producer) -> None:
        self.producer, self.sent = producer, 0

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, *args, **kwargs):
        self.sent += 1
        return await self.producer.send(*args, **kwargs)
