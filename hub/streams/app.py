"""The faust app of the hub: built once from Settings, with its topics and the publish helpers.

Values on every topic are raw bytes in the Confluent wire format, written and read only through
`hub.schemas.codec`: agents decode themselves so that a record that fails to decode goes to the
dead-letter topic with its original bytes instead of being dropped inside faust.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import faust

from hub import metrics
from hub.adapters.kafka_security import faust_credentials, kafka_client_options
from hub.config import Settings
from hub.schemas.codec import Codec, CodecError, default_codec
from hub.streams import topics as names

log = logging.getLogger(__name__)

CE_TYPE_PREFIX = "fi.integrationhub."


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def envelope(source: str, occurred_at: dt.datetime | None = None, event_id: str | None = None) -> dict:
    """The common envelope fields of every event."""
    now = utcnow()
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "occurred_at": occurred_at or now,
        "recorded_at": now,
        "source": source,
        "schema_version": 1,
    }


def cloudevent_headers(name: str, record: dict) -> list[tuple[str, bytes]]:
    """CloudEvents Kafka binary-mode attributes for an encoded hub event."""
    occurred = record.get("occurred_at") or utcnow()
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(record["event_id"]).encode()),
        ("ce_type", f"{CE_TYPE_PREFIX}{name}.v1".encode()),
        ("ce_source", str(record.get("source") or "hub").encode()),
        ("ce_time", occurred.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z").encode()),
        ("content-type", b"application/avro"),
    ]


def dead_letter_record(
    original_value: bytes,
    reason: str,
    message: str,
    *,
    original_topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    original_key: bytes | None = None,
    location: str | None = None,
    event_id: str | None = None,
    source: str = "hub",
) -> dict:
    """The DeadLetter record for a record that could not be processed (bytes unchanged)."""
    record = envelope(source, event_id=event_id)
    record.update(
        original_topic=original_topic,
        original_partition=partition,
        original_offset=offset,
        original_key=original_key,
        original_value=bytes(original_value or b""),
        location=location,
        reason=reason,
        message=message,
    )
    return record


class HubApp:
    """One faust.App with the hub's topics declared once, and helpers to publish events."""

    def __init__(self, settings: Settings, kafka_url: str, codec: Codec | None = None):
        self.settings = settings
        self.codec = codec or default_codec()
        self.kafka_url = kafka_url
        self.app = faust.App(
            settings.app_id,
            broker=kafka_url,
            broker_credentials=faust_credentials(settings),
            store="memory://",
            web_enabled=False,
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=1,
            broker_session_timeout=settings.session_timeout,
            broker_rebalance_timeout=settings.rebalance_timeout,
            broker_heartbeat_interval=settings.heartbeat_interval,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            key_serializer="raw",
            value_serializer="raw",
            table_cleanup_interval=60.0,
        )
        self._topics: dict[str, faust.TopicT] = {}
        for name in names.FIXED_TOPICS:
            self.topic(name)

    def ensure_topics(self) -> list[str]:
        """Create the hub's fixed topics (and any declared so far) with the configured partitions."""
        from hub.adapters.kafka_admin import ensure_topics

        return ensure_topics(self.kafka_url, sorted(self._topics), self.settings.topic_partitions, **kafka_client_options(self.settings))

    def topic(self, name: str) -> faust.TopicT:
        """The faust topic for a name (declared once, cached)."""
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = self.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        return t

    async def publish(self, topic: str, name: str, record: dict, key: str | bytes | None = None) -> Any:
        """Encode through the codec, add CloudEvents headers, and send. Returns the send future."""
        value = self.codec.encode(name, record)
        if isinstance(key, str):
            key = key.encode()
        return await self.topic(topic).send(key=key, value=value, headers=cloudevent_headers(name, record))

    async def publish_acked(self, topic: str, name: str, record: dict, key: str | bytes | None = None) -> Any:
        """Publish and wait until the broker acknowledged the record (before state moves on)."""
        return await (await self.publish(topic, name, record, key))

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
    ) -> Any:
        """Send a record that could not be processed to the dead-letter topic, bytes unchanged."""
        record = dead_letter_record(
            original_value, reason, message, original_topic=original_topic, partition=partition, offset=offset, original_key=original_key, location=location
        )
        log.warning("dead letter: reason=%s topic=%s location=%s: %s", reason, original_topic, location, message)
        metrics.dead_letters.labels(reason).inc()
        return await self.publish(names.DEAD_LETTERS, "DeadLetter", record, key=original_key)

    async def handle_safely(self, event, handler, what: str) -> Any:
        """Run `handler(event)`; an unexpected error dead-letters the record instead of killing the agent.

        The message names the error type only (exception texts may quote personal data).
        """
        try:
            return await handler(event)
        except Exception as exc:  # noqa: BLE001 - a worker must survive any single record
            msg = event.message
            log.error("%s failed with %s on %s[%s]@%s; record sent to dead letters", what, type(exc).__name__, msg.topic, msg.partition, msg.offset)
            await self.dead_letter(
                msg.value, "internal_error", f"{what} failed with {type(exc).__name__}; the record is kept for replay after a fix",
                original_topic=msg.topic, partition=msg.partition, offset=msg.offset, original_key=msg.key,
            )
            return None

    async def decode_or_dead_letter(self, event, expect: str | tuple[str, ...]):
        """Decode a faust event's value; on failure dead-letter it and return None."""
        msg = event.message
        try:
            return self.codec.decode(msg.value, expect)
        except CodecError as exc:
            await self.dead_letter(
                msg.value, exc.reason, exc.detail, original_topic=msg.topic, partition=msg.partition, offset=msg.offset, original_key=msg.key
            )
            return None
