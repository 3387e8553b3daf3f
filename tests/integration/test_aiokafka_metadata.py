"""The producer keeps tracking every topic it sent to (hub.adapters.aiokafka_metadata), on the real broker.

Without the fix, a topic first sent to while the client still held all-topic metadata is not
tracked; once a new topic is added, a refresh drops it and a batch for it waits for good."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from hub.adapters import aiokafka_metadata
from hub.adapters.kafka_admin import ensure_topics
from hub.adapters.kafka_security import bootstrap_servers

pytestmark = pytest.mark.integration


def test_a_topic_sent_to_before_a_new_topic_stays_in_the_producers_metadata(kafka_url):
    aiokafka_metadata.apply()
    uid = uuid.uuid4().hex[:8]
    old, new = f"test.{uid}.existing", f"test.{uid}.created-later"
    ensure_topics(kafka_url, [old], 1)

    async def scenario():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(kafka_url), acks="all", enable_idempotence=False, request_timeout_ms=15000)
        await producer.start()
        try:
            await producer.client.force_metadata_update()  # no topic tracked yet: metadata of every topic
            await producer.send_and_wait(old, b"1")
            ensure_topics(kafka_url, [new], 1)
            await producer.send_and_wait(new, b"2")  # tracks `new`: refreshes now ask for tracked topics only
            await producer.client.force_metadata_update()
            known = set(producer.client.cluster.topics())
            await producer.send_and_wait(old, b"3")  # acknowledged, not stuck on an unknown leader
            return known, set(producer.client._topics)
        finally:
            await producer.stop()

    known, tracked = asyncio.run(scenario())
    assert {old, new} <= tracked
    assert old in known
