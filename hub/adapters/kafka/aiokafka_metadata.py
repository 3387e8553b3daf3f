"""A workaround for aiokafka's producer metadata, through its public API: a producer tracks every
topic it sends to.

aiokafka (0.14.0) `AIOKafkaClient._wait_on_metadata(topic)` returns early when the cluster metadata
already knows the topic, without adding it to the client's tracked topics. Right after start-up the
client holds the metadata of *all* topics (it tracks none yet), so the first sends to existing
topics are never tracked; once one new topic is added, metadata refreshes ask for the tracked topics
only, the untracked ones vanish from the cluster view, and a batch queued for one of them waits for
a partition leader that never comes (until the request timeout). No upstream issue was found for it
(searched aio-libs/aiokafka's issues); `tests/integration/test_aiokafka_metadata.py` reproduces it on
a plain producer and fails once aiokafka no longer has it, so this module can go.

`TopicTrackingProducer` wraps an `AIOKafkaProducer`: before its first send to a topic it asks the
producer's client to track it (`producer.client.add_topic`, public), waiting for that metadata
update once per topic.
"""

from __future__ import annotations

from typing import Any


class TopicTrackingProducer:
    """An `AIOKafkaProducer` whose client tracks every topic it is asked to send to (see above)."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._tracked: set[str] = set()

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def flush(self) -> None:
        await self.producer.flush()

    async def track(self, topic: str) -> None:
        """Have the client track `topic` (a metadata update the first time only)."""
        if topic not in self._tracked:
            await self.producer.client.add_topic(topic)
            self._tracked.add(topic)

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, *, partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> Any:
        """`AIOKafkaProducer.send`: returns the future of the broker's acknowledgement."""
        await self.track(topic)
        return await self.producer.send(topic, value=value, key=key, partition=partition, headers=headers)

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None, *, partition: int | None = None,
                            headers: list[tuple[str, bytes]] | None = None) -> Any:
        return await (await self.send(topic, value, key, partition=partition, headers=headers))
