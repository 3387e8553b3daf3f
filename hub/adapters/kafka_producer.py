"""A plain aiokafka producer for command-line tools (replay, resend): hub events go out exactly as
HubApp.publish sends them (codec wire format + CloudEvents headers), acks=all, no idempotence
(the embedded broker refuses it; consumers dedupe by event id)."""

from __future__ import annotations

import asyncio
from hub.adapters import aiokafka_metadata  # noqa: F401 - producers keep tracking every topic they send to

from hub.adapters.kafka_security import bootstrap_servers
from hub.schemas.codec import Codec, default_codec


class EventProducer:
    def __init__(self, kafka_url: str, codec: Codec | None = None, security: dict | None = None):
        self.kafka_url = kafka_url
        self.security = security or {}  # TLS/SASL: hub.adapters.kafka_security.kafka_client_options
        self.codec = codec or default_codec()
        self._producer = None
        self._pending: list[asyncio.Future] = []

    async def __aenter__(self) -> "EventProducer":
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(self.kafka_url), acks="all", enable_idempotence=False, linger_ms=5, **self.security)
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
        """Encode through the codec and send with the CloudEvents headers (as HubApp.publish)."""
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
    when the topic has one partition: the answer is that partition anyway. The hash is pure Python
    in aiokafka: py-spy found it at ~6 % of a worker on the benchmark (bench/RESULTS.md, session 6)."""

    def __init__(self) -> None:
        from aiokafka.partitioner import DefaultPartitioner

        self._default = DefaultPartitioner()

    def __call__(self, key, all_partitions, available):
        if len(all_partitions) == 1:
            return all_partitions[0]
        return self._default(key, all_partitions, available)
