"""Reading and writing topics in tests with a plain aiokafka client (not the code under test)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub.schemas.codec import default_codec


def bootstrap(url: str) -> str:
    return url.split("://", 1)[-1]


async def publish_all(url: str, items, batch: int = 1000, **producer_options) -> None:
    """Send (topic, key, value, headers) items in order, acks=all, awaiting the acks every `batch` records."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(url), acks="all", linger_ms=5, **producer_options)
    await producer.start()
    try:
        pending = []
        for topic, key, value, headers in items:
            pending.append(await producer.send(topic, value=value, key=key, headers=headers or None))
            if len(pending) >= batch:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read_topic(url: str, topic: str, min_count: int = 0, timeout: float = 30.0, settle: float = 1.0) -> list:
    """Every record of `topic` from the start: waits for at least `min_count`, then `settle` seconds more."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap(url), auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    out = []
    try:
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = [m for msgs in batch.values() for m in msgs]
            out.extend(got)
            if len(out) >= min_count:
                if quiet_until is None or got:
                    quiet_until = time.monotonic() + settle
                elif time.monotonic() >= quiet_until:
                    break
    finally:
        await consumer.stop()
    return out


def decoded(messages) -> list[dict]:
    codec = default_codec()
    return [codec.decode(m.value).record for m in messages]


async def produce(url: str, topic: str, items: list[tuple[bytes | None, bytes]], **producer_options) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(url), **producer_options)
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def run(coro):
    return asyncio.run(coro)
