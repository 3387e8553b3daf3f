"""aiokafka's producer forgets a topic it sent to (hub.adapters.kafka.aiokafka_metadata), on the real broker.

A topic first sent to while the client still held all-topic metadata is not tracked; once a new
topic is added, a refresh drops it from the producer's cluster view. The plain producer's test is
expected to fail while aiokafka has the bug (strict: it turns into a failure once upstream fixes it,
and the workaround can go); the hub's producer keeps the topic."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from hub.adapters.kafka.aiokafka_metadata import TopicTrackingProducer
from hub.adapters.kafka.admin import ensure_topics
from hub.adapters.kafka.security import bootstrap_servers

pytestmark = pytest.mark.integration


def _scenario(kafka_url: str, wrap) -> tuple[set, object]:
    uid = uuid.uuid4().hex[:8]
    old, new = f"test.{uid}.existing", f"test.{uid}.created-later"
    ensure_topics(kafka_url, [old], 1)

    async def run():
        plain = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(kafka_url), acks="all", enable_idempotence=False, request_timeout_ms=15000)
        producer = wrap(plain)
        await producer.start()
        try:
            await plain.client.force_metadata_update()  # no topic tracked yet: metadata of every topic
            await producer.send_and_wait(old, b"1")
            ensure_topics(kafka_url, [new], 1)
            await producer.send_and_wait(new, b"2")  # tracks `new`: refreshes now ask for tracked topics only
            await plain.client.force_metadata_update()
            return set(plain.client.cluster.topics()), plain.client.cluster.partitions_for_topic(old)
        finally:
            await producer.stop()

    known, partitions = asyncio.run(run())
    return known - {new}, (old, partitions)


@pytest.mark.xfail(strict=True, reason="aiokafka does not track a topic whose metadata it already held (hub.adapters.kafka.aiokafka_metadata)")
def test_upstream_a_plain_producer_keeps_a_topic_it_sent_to_before_a_new_topic(kafka_url):
    known, (old, partitions) = _scenario(kafka_url, lambda producer: producer)
    assert old in known and partitions


def test_the_hubs_producer_keeps_every_topic_it_sent_to(kafka_url):
    known, (old, partitions) = _scenario(kafka_url, TopicTrackingProducer)
    assert old in known and partitions == {0}
