"""The hub's aiokafka producers: the worker's (`new_producer`) and the command-line tools' (replay,
resend: `EventProducer`). Every one acks=all, no idempotence (the embedded broker refuses it;
consumers dedupe by event id), and tracks every topic it sends to (`hub.adapters.kafka.aiokafka_metadata`)."""

from __future__ import annotations

import asyncio

from hub.adapters.kafka.aiokafka_metadata import TopicTrackingProducer
from hub.adapters.kafka.security import bootstrap_servers, kafka_client_options
from hub.config import Settings
from hub.schemas.codec import Codec, default_codec


def new_producer(settings: Settings, kafka_url: str, client_id: str) -> TopicTrackingProducer:
    """A (not yet started) producer of the worker: acks=all, HUB_KAFKA_PRODUCER_LINGER_MS,
    HUB_KAFKA_PRODUCER_TIMEOUT (a record not acknowledged by then fails: the caller retries or
    dead-letters it), the key partitioner below, the hub's TLS/SASL."""
    from aiokafka import AIOKafkaProducer

    return TopicTrackingProducer(AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(kafka_url), client_id=client_id, acks="all", enable_idempotence=False,
        linger_ms=settings.producer_linger_ms, request_timeout_ms=int(settings.producer_timeout * 1000), partitioner=KeyPartitioner(),
        **kafka_client_options(settings)))


class EventProducer:
    def __init__(self, kafka_url: str, codec: Codec | None = None, security: dict | None = None):
        self.kafka_url = kafka_url
        self.security = security or {}  # TLS/SASL: hub.adapters.kafka.security.kafka_client_options
        self.codec = codec or default_codec()
        self._producer = None
        self._pending: list[asyncio.Future] = []

    async def __aenter__(self) -> "EventProducer":
        from aiokafka import AIOKafkaProducer

        self._producer = TopicTrackingProducer(AIOKafkaProducer(bootstrap_servers=bootstrap_servers(self.kafka_url), acks="all",
                                                                enable_idempotence=False, linger_ms=5, **self.security))
        await self._producer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                if exc[0] is None:
                    await self.flush()
            finally:
                await producer.stop()

    async def send_event(self, topic: str, name: str, record: dict, key: str | bytes | None = None) -> None:
        """Encode through the codec and send with the CloudEvents headers (as Publisher.publish)."""
        from hub.schemas.envelope import cloudevent_headers

        value = self.codec.encode(name, record)
        await self.send_raw(topic, key.encode() if isinstance(key, str) else key, value, cloudevent_headers(name, record))

    async def send_raw(self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        self._pending.append(await self._producer.send(topic, value=value, key=key, headers=headers))

    async def flush(self) -> int:
        """Wait until the broker acknowledged everything sent; returns how many."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)
        return len(pending)


class KeyPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, as Kafka's Java client), without the hash
    when the topic has one partition: the answer is that partition anyway (the hash is pure Python in
    aiokafka, a noticeable share of a busy worker's time)."""

    def __init__(self) -> None:
        from aiokafka.partitioner import DefaultPartitioner

        self._default = DefaultPartitioner()

    def __call__(self, key, all_partitions, available):
        if len(all_partitions) == 1:
            return all_partitions[0]
        return self._default(key, all_partitions, available)
