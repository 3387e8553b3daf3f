"""The hub's publishing: topics made before their first record, events encoded, signed and sent
through the hub's own producers, and dead letters (too large ones kept whole in the database).

A batch consumer's handler sends through the consumer's own producer (`stream_producer`); anything
else (timers, the relay) through the hub's (`default_producer`, started with the app).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from hub import metrics
from hub.adapters.kafka.consumer import dead_lettered, stream_producer
from hub.adapters.kafka.errors import is_outage, retry_pause, too_large
from hub.adapters.database import with_database_retry
from hub.adapters.kafka import admin
from hub.adapters.kafka.security import kafka_client_options
from hub.config import Settings
from hub.domain import publishers as identity
from hub.schemas.codec import Codec
from hub.schemas import topics as names
from hub.schemas.envelope import cloudevent_headers, dead_letter_record

log = logging.getLogger(__name__)

KEPT_KEY_BYTES = 1024  # a longer original key stays in the database only, not on the pointing dead-letter record
KEPT_HEADER_BYTES = 64 * 1024  # the original's headers stay on the pointing record up to this size (keys and values)


class Publisher:
    """Sends the hub's events. `default_producer()`: the hub's producer while the app runs, else None."""

    def __init__(self, settings: Settings, kafka_url: str, codec: Codec, default_producer: Callable[[], Any]) -> None:
        self.settings = settings
        self.kafka_url = kafka_url
        self.codec = codec
        self.default_producer = default_producer
        self.signing_key = settings.signing_key()
        self.declared: set[str] = set(names.FIXED_TOPICS)  # every topic the hub reads or always writes: ensure_topics creates them
        self._existing: set[str] = set()  # topics known to exist on the broker (created or found by ensure_topics)
        self.dead_letter_store = None  # hub.adapters.dead_letter_store.DeadLetterStore, made on first use (or set by the composition root)
        self._dead_letter_calls = None

    def ensure_topics(self) -> list[str]:
        """Create the hub's fixed topics (and any declared so far) with the configured partitions, and
        remember every topic already on the broker: the per-recipient topics a deployment made
        (`hub topics --create`, Strimzi's KafkaTopic resources) then need no admin round trip
        before their first record (`ensure_exists`)."""
        declared = sorted(self.declared)
        on_broker: set[str] = set()
        created = admin.ensure_topics(self.kafka_url, declared, self.settings.topic_partitions, seen=on_broker, **kafka_client_options(self.settings))
        self._existing.update(declared)
        self._existing.update(on_broker)
        return created

    async def ensure_exists(self, topic: str) -> None:
        """Create a per-recipient topic (referrals, plan requests, notices) before its first record,
        with HUB_TOPIC_PARTITIONS partitions, instead of leaving it to the broker's auto-creation on
        produce (other partition counts; on the embedded broker a produce that auto-created several
        topics was seen to stall). Where the hub may not create topics (ACLs on Strimzi, where the
        KafkaTopic resources make them), the failure is logged once and the send goes ahead."""
        if topic in self._existing:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: admin.ensure_topics(self.kafka_url, [topic], self.settings.topic_partitions, **kafka_client_options(self.settings)))
        except Exception as exc:  # noqa: BLE001 - not allowed or not reachable: the produce says more
            log.warning("could not make sure topic %s exists (%s); sending anyway", topic, type(exc).__name__)
        self._existing.add(topic)

    def producer_here(self):
        """The producer to send through here: in a batch consumer's handler its own, else the hub's (`default_producer`)."""
        producer = stream_producer.get() or self.default_producer()
        if producer is None:
            raise RuntimeError("the hub's producer runs only while its app does (hub.streams.runner.running, hub worker)")
        return producer

    async def publish(self, topic: str, name: str, record: dict, key: str | bytes | None = None) -> Any:
        """Encode through the codec, add CloudEvents headers (signed when the hub has a key), and send.
        Returns the future of the broker's acknowledgement."""
        value = self.codec.encode(name, record)
        if isinstance(key, str):
            key = key.encode()
        await self.ensure_exists(topic)
        headers = self.signed(_headers(name, record), value)
        return await self.producer_here().send(topic, value, key, headers=headers)

    def signed(self, headers: list[tuple[str, bytes]], value: bytes) -> list[tuple[str, bytes]]:
        """`headers` with the hub's signature when it has a key of its own (id = HUB_APP_ID), else as given."""
        if self.signing_key is None:
            return headers
        return identity.sign_headers(headers, value, self.settings.app_id, self.signing_key)

    async def dead_letter(
        self,
        original_value: bytes,
        reason: str,
        message: str,
        *,
        original_topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        original_key: bytes | None = None,
        location: str | None = None,
        original_headers: list[tuple[str, bytes | None]] | None = None,
    ) -> asyncio.Future:
        """Send a record that could not be processed to the dead-letter topic, bytes unchanged.

        Returns a future done once the dead letter exists: acknowledged by the broker, or, when the
        record is too large for the producer or the broker, kept whole in the database
        (`hub.adapters.dead_letter_store`) with a record on the topic pointing at it. Only then is it
        counted in `hub_dead_letters_total`; a failure to keep it (an outage) is the future's error."""

        record = dead_letter_record(
            original_value, reason, message, original_topic=original_topic, partition=partition, offset=offset, original_key=original_key, location=location,
            original_headers=original_headers,
        )
        log.warning("dead letter: reason=%s topic=%s location=%s: %s", reason, original_topic, location, message)
        try:
            sent = await self.publish(names.DEAD_LETTERS, "DeadLetter", record, key=original_key)
        except Exception as exc:  # noqa: BLE001 - only a size is handled here
            if not too_large(exc):
                raise
            sent = None  # refused by the producer before sending
        return asyncio.ensure_future(self._dead_letter_kept(sent, record))

    async def _dead_letter_kept(self, sent, record: dict) -> Any:
        result = None
        if sent is not None:
            try:
                result = await sent
            except Exception as exc:  # noqa: BLE001 - only a size is handled here
                if not too_large(exc):
                    raise
                sent = None  # refused by the broker
        if sent is None:
            result = await self._keep_in_database(record)
        metrics.dead_letters.labels(record["reason"]).inc()
        return result

    async def _keep_in_database(self, record: dict) -> Any:
        """Keep a dead letter too large for the topic whole in the database, and send a record that
        points at it (empty original; the key too when it is long), acknowledged."""
        from hub.adapters.dead_letter_store import pointer

        store, calls = self._dead_letter_store()
        row_id = await with_database_retry(lambda: calls.run(store.add, record), "keeping a dead letter too large for its topic")
        size = len(record["original_value"])
        key = record["original_key"]
        log.warning("dead letter of %s bytes (reason=%s) too large for the dead-letter topic: kept whole in the database as dead letter %s",
                    size, record["reason"], row_id)
        headers = record.get("original_headers") or []
        header_bytes = sum(len(h["key"].encode()) + len(h["value"] or b"") for h in headers)
        kept_headers = header_bytes <= KEPT_HEADER_BYTES
        short = dict(record, original_value=b"", location=pointer(row_id),
                     original_key=key if key is None or len(key) <= KEPT_KEY_BYTES else None,
                     original_headers=headers if kept_headers else [],
                     message=f"{record['message']} [the original ({size} bytes) is too large for the dead-letter topic and is kept "
                             f"whole in the hub database: hub dead-letters show {row_id}"
                             + ("" if kept_headers else f"; its {len(headers)} header(s) ({header_bytes} bytes) are not kept") + "]")
        return await (await self.publish(names.DEAD_LETTERS, "DeadLetter", short, key=short["original_key"]))

    def _dead_letter_store(self):
        """The dead-letter store on the hub database (HUB_DATABASE_URL) and where its calls run, made on first use."""
        if self.dead_letter_store is None:
            from hub.adapters.database import create_engine
            from hub.adapters.dead_letter_store import DeadLetterStore

            self.dead_letter_store = DeadLetterStore(create_engine(self.settings.resolved_database_url()))
        if self._dead_letter_calls is None:
            from hub.adapters.database import DatabaseCalls

            self._dead_letter_calls = DatabaseCalls(self.dead_letter_store.engine, "dead-letters")
        return self.dead_letter_store, self._dead_letter_calls

    def dead_lettered_already(self, msg) -> bool:
        """Whether `msg` was dead-lettered before in the batch being handled (a narrowed-down batch is
        handled again in parts): its dead letter is not sent, nor counted, twice."""
        memo = dead_lettered.get()
        return memo is not None and (msg.topic, msg.partition, msg.offset) in memo

    async def dead_letter_message(self, msg, reason: str, message: str) -> Any:
        """`dead_letter` for a consumed message: its bytes, key, topic, partition and offset. In a batch
        consumer's handling a record is dead-lettered once however often its batch is narrowed down
        (`hub.adapters.kafka.consumer.dead_lettered`): the first dead letter's future is returned again."""
        memo = dead_lettered.get()
        where = (msg.topic, msg.partition, msg.offset)
        if memo is not None and where in memo:
            return memo[where]
        sent = await self.dead_letter(msg.value, reason, message, original_topic=msg.topic, partition=msg.partition, offset=msg.offset,
                                      original_key=msg.key, original_headers=list(getattr(msg, "headers", None) or ()))
        if memo is not None:
            memo[where] = sent
        return sent

    async def dead_letter_acked(self, msg, reason: str, message: str, sends: list | None = None) -> None:
        """`dead_letter_message`, then: with `sends`, its future added there; without, awaited until
        the dead letter exists, sent again after a pause (1 s doubling to 30 s) while that fails
        with an outage."""
        if sends is not None:
            sends.append(await self.dead_letter_message(msg, reason, message))
            return
        failures = 0
        while True:
            try:
                await (await self.dead_letter_message(msg, reason, message))
                return
            except Exception as exc:  # noqa: BLE001 - an outage is waited out; anything else is a bug to see
                if not is_outage(exc):
                    raise
                failures += 1
                log.warning("dead letter of %s[%s]@%s not kept (%s); trying again in %.0f s", msg.topic, msg.partition, msg.offset,
                            type(exc).__name__, retry_pause(failures))
                await asyncio.sleep(retry_pause(failures))



def _headers(name: str, record: dict) -> list[tuple[str, bytes]]:

    return cloudevent_headers(name, record)
