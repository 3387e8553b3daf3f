"""The hub's faust app (lifecycle, timers, services) and HubApp: topics declared once, the batch
consumers that read them, and the helpers to publish, sign and dead-letter events.

Values on every topic are raw bytes in the Confluent wire format, written and read only through
`hub.schemas.codec`: consumers decode themselves so that a record that fails to decode goes to the
dead-letter topic with its original bytes.

Every stream is read by a batch consumer (`hub.adapters.batch_consumer`) and everything is sent
through producers the hub makes itself (`hub.adapters.kafka_producer.new_producer`): one per batch
consumer, one for the timers and the relay. faust starts neither its consumer nor its producer
(`_Boot`). With an identity configuration (`HUB_PUBLISHERS`) consumers pass every record of an input
topic through the publisher check (`refuse`) first, and the hub signs what it publishes with its own key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any

import faust
from faust.app import BootStrategy

from hub import metrics
from hub.domain import publishers as identity
from hub.adapters.batch_consumer import BatchConsumer, dead_lettered, failure_reason, is_outage, retry_pause, stream_producer, too_large
from hub.adapters.database import with_database_retry
from hub.adapters.kafka_producer import new_producer
from hub.adapters.kafka_security import bootstrap_servers, faust_credentials, kafka_client_options
from hub.config import Settings
from hub.schemas.codec import Codec, CodecError, default_codec
from hub.streams import topics as names
from hub.streams.gc_tuning import tune_gc

log = logging.getLogger(__name__)

CE_TYPE_PREFIX = "fi.integrationhub."

KEPT_KEY_BYTES = 1024  # a longer original key stays in the database only, not on the pointing dead-letter record

# topics other organisations' systems write to: their records must be signed when identity is configured
INPUT_TOPICS = (names.POPULATION_CHANGES, names.ASSESSMENTS, names.CONSENTS, names.REFERRAL_STATUS)


def consumed_record(event):
    """The consumed Kafka record of a faust event, or the record itself (batch consumers,
    `hub.adapters.batch_consumer`, hand out records)."""
    return getattr(event, "message", event)


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


class _Boot(BootStrategy):
    """What faust starts with the app: its sensors, agents manager, timers and services, never its
    producer (the hub publishes through its own), and its consumer only while a faust agent is
    declared (the hub declares none: its streams are read by batch consumers). Without agents
    faust's consumer would still start and join the group `<app id>` with nothing subscribed."""

    enable_kafka_producer = False

    @property
    def enable_kafka_consumer(self) -> bool:  # read when the app starts, after every agent is declared
        return bool(self.app.agents)


class _App(faust.App):
    """faust.App that starts the hub's producer and connects its batch consumers when it starts."""

    BootStrategy = _Boot
    batch_consumers: tuple | list = ()  # HubApp sets a list per app (HubApp.batch_consumer): they join their groups when the app starts
    hub_new_producer = None  # HubApp sets what makes the producer of timers and the relay: made and started here
    hub_producer = None  # that producer while the app runs; stopped after every service and timer
    hub_gc_threshold = 0  # HubApp sets HUB_GC_THRESHOLD

    async def on_start(self) -> None:
        await super().on_start()
        # everything built so far lives as long as the worker: frozen out of the collector's walks
        tune_gc(self.hub_gc_threshold)
        if self.hub_new_producer is not None and self.hub_producer is None:
            producer = self.hub_new_producer()  # an aiokafka client is made inside the running loop
            await producer.start()
            self.hub_producer = producer
        # the batch consumers' group joins (seconds each) go on in the background; their processing
        # starts with the app's extra services
        for service in self.batch_consumers:
            await service.connect()

    async def on_stop(self) -> None:
        await super().on_stop()
        for service in self.batch_consumers:
            if not service.processing:  # the app stopped before its extra services started: only joined
                await service.close()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        producer, self.hub_producer = self.hub_producer, None
        if producer is not None:  # after the services and timers that publish through it
            await producer.stop()


class HubApp:
    """One faust.App with the hub's topics declared once, its batch consumers, and helpers to publish events.

    `signed_topics`: the topics whose records must be signed when `settings.publishers` is set
    (the input topics; tests name their own)."""

    def __init__(self, settings: Settings, kafka_url: str, codec: Codec | None = None, *, signed_topics: tuple[str, ...] = INPUT_TOPICS):
        self.settings = settings
        self.codec = codec or default_codec()
        self.kafka_url = kafka_url
        self.publishers = settings.publishers
        self.signing_key = settings.signing_key()
        self.signed_topics = frozenset(signed_topics)
        self.app = _App(
            settings.app_id,
            broker=kafka_url,
            broker_credentials=faust_credentials(settings),
            store="memory://",
            # faust's own data directory (it makes it at start): under HUB_DATA_DIR instead of faust's
            # `<app id>-data` in the working directory
            datadir=str(self._faust_datadir(settings)),
            web_enabled=False,
            # faust's consumer starts only for a faust agent (`_Boot`): then it joins its group with the
            # batch consumers' timings (HUB_KAFKA_SESSION_TIMEOUT etc.) instead of faust's minute
            broker_session_timeout=settings.session_timeout,
            broker_rebalance_timeout=settings.rebalance_timeout,
            broker_heartbeat_interval=settings.heartbeat_interval,
        )
        self.app.hub_gc_threshold = settings.gc_threshold  # hub.streams.gc_tuning, when the app starts
        # the producer of the timers and the relay (a batch consumer's handler publishes through its own)
        self.app.hub_new_producer = lambda: new_producer(settings, kafka_url, f"{settings.app_id}-hub")
        self._topics: dict[str, faust.TopicT] = {}  # declared for faust agents (tests); created by ensure_topics
        self._declared: set[str] = set()  # every topic the hub reads or always writes: ensure_topics creates them
        self._existing: set[str] = set()  # topics known to exist on the broker (created or found by ensure_topics)
        self.dead_letter_store = None  # hub.adapters.dead_letter_store.DeadLetterStore, made on first use (or set by a test)
        self._dead_letter_calls = None
        self.app.batch_consumers = []  # every stream the hub reads (hub.adapters.batch_consumer)
        self._declared.update(names.FIXED_TOPICS)

    @staticmethod
    def _faust_datadir(settings: Settings):
        path = settings.data_dir / "faust" / settings.app_id
        path.parent.mkdir(parents=True, exist_ok=True)  # faust makes the last level only
        return path

    def batch_group(self, name: str) -> str:
        """The consumer group of the batch consumer `name` (the hub's ACLs allow `<app id>.*`)."""
        return f"{self.settings.app_id}.{name}"

    def batch_consumer(self, name: str, topic: str, handle, max_records: int) -> BatchConsumer:
        """Read `topic` in batches of up to `max_records` with plain aiokafka (`hub.adapters.batch_consumer`):
        `handle(records)` returns when the batch is done, then its offsets are committed. The consumer
        starts and stops with the app, in its own group `batch_group(name)`, with the group timings of
        HUB_KAFKA_*; while records flow it fetches with the pipeline's short wait
        (HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS), after a quiet second with the worker's (HUB_KAFKA_FETCH_MAX_WAIT_MS).
        What `handle` publishes goes through the consumer's own producer."""
        s = self.settings
        self._declared.add(topic)  # `ensure_topics` creates it with HUB_TOPIC_PARTITIONS
        options = dict(
            bootstrap_servers=bootstrap_servers(self.kafka_url),
            client_id=f"{s.app_id}-{name}",
            session_timeout_ms=int(s.session_timeout * 1000),
            rebalance_timeout_ms=int(s.rebalance_timeout * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval * 1000),
            fetch_max_wait_ms=s.fetch_max_wait_ms,  # while the topic is quiet; HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS while records flow
            max_partition_fetch_bytes=s.max_fetch_bytes,
            **kafka_client_options(s),
        )
        service = BatchConsumer(name=name, topics=[topic], group_id=self.batch_group(name), handle=handle, consumer_options=options,
                                max_records=max_records, busy_fetch_wait_ms=s.pipeline_fetch_max_wait_ms, new_producer=lambda: new_producer(s, self.kafka_url, f"{s.app_id}-{name}"),
                                isolate=lambda record, exc: self.isolate(name, record, exc))
        self.app.service(service)  # processing starts after the app's producer and consumer, stops before them
        self.app.batch_consumers.append(service)
        return service

    async def isolate(self, name: str, record, exc: Exception) -> None:
        """A batch consumer's record whose handling failed alone (`BatchConsumer._narrow`): dead-lettered
        (`unprocessable` or `internal_error`, the error's type named, never its text) and counted;
        returns once the dead letter exists (an outage raises: the batch is read again)."""
        sent = await self.dead_letter_message(record, failure_reason(exc),
                                              f"{name} failed with {type(exc).__name__} on this record alone; the rest of its batch was "
                                              "processed; the record is kept for replay after a fix")
        await sent
        metrics.events_consumed.labels(record.topic, "dead_letter").inc()

    @property
    def batch_consumers(self) -> list[BatchConsumer]:
        return self.app.batch_consumers

    def ensure_topics(self) -> list[str]:
        """Create the hub's fixed topics (and any declared so far) with the configured partitions, and
        remember every topic already on the broker: the per-recipient topics a deployment made
        (`hub topics --create`, Strimzi's KafkaTopic resources) then need no admin round trip
        before their first record (`ensure_exists`)."""
        from hub.adapters.kafka_admin import ensure_topics

        declared = sorted(self._declared | set(self._topics))
        on_broker: set[str] = set()
        created = ensure_topics(self.kafka_url, declared, self.settings.topic_partitions, seen=on_broker, **kafka_client_options(self.settings))
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
        from hub.adapters.kafka_admin import ensure_topics

        try:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: ensure_topics(self.kafka_url, [topic], self.settings.topic_partitions, **kafka_client_options(self.settings)))
        except Exception as exc:  # noqa: BLE001 - not allowed or not reachable: the produce says more
            log.warning("could not make sure topic %s exists (%s); sending anyway", topic, type(exc).__name__)
        self._existing.add(topic)

    def topic(self, name: str) -> faust.TopicT:
        """The faust topic for a name, for a faust agent (declared once, cached). The hub's own streams
        use batch consumers; an agent makes the app start faust's consumer (`_Boot`)."""
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = self.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        return t

    @property
    def producer(self):
        """The producer of the timers and the relay while the app runs (`hub.adapters.kafka_producer.new_producer`), else None."""
        return self.app.hub_producer

    def producer_here(self):
        """The producer to send through here: in a batch consumer's handler its own, else the hub's."""
        producer = stream_producer.get() or self.app.hub_producer
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
        headers = self.signed(cloudevent_headers(name, record), value)
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
    ) -> asyncio.Future:
        """Send a record that could not be processed to the dead-letter topic, bytes unchanged.

        Returns a future done once the dead letter exists: acknowledged by the broker, or, when the
        record is too large for the producer or the broker, kept whole in the database
        (`hub.adapters.dead_letter_store`) with a record on the topic pointing at it. Only then is it
        counted in `hub_dead_letters_total`; a failure to keep it (an outage) is the future's error."""
        record = dead_letter_record(
            original_value, reason, message, original_topic=original_topic, partition=partition, offset=offset, original_key=original_key, location=location
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
        short = dict(record, original_value=b"", location=pointer(row_id),
                     original_key=key if key is None or len(key) <= KEPT_KEY_BYTES else None,
                     message=f"{record['message']} [the original ({size} bytes) is too large for the dead-letter topic and is kept "
                             f"whole in the hub database: hub dead-letters show {row_id}]")
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
        (`hub.adapters.batch_consumer.dead_lettered`): the first dead letter's future is returned again."""
        memo = dead_lettered.get()
        where = (msg.topic, msg.partition, msg.offset)
        if memo is not None and where in memo:
            return memo[where]
        sent = await self.dead_letter(msg.value, reason, message, original_topic=msg.topic, partition=msg.partition, offset=msg.offset,
                                      original_key=msg.key)
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

    def checks_publishers(self, topic: str) -> bool:
        """Whether records of `topic` go through `refuse` (a signed topic with publishers configured);
        a batch consumer skips the call for the others."""
        return self.publishers is not None and topic in self.signed_topics

    async def refuse(self, msg) -> Any:
        """The publisher check of one consumed record: on a signed topic a record that is unsigned,
        badly signed, or whose identity fields its signer may not use goes to dead letters (reason
        `forbidden` etc.); returns that dead letter's send future, None when the record may be
        processed. A signed record that does not decode passes: its consumer dead-letters it with
        the codec's reason."""
        if not self.checks_publishers(msg.topic):
            return None
        raw = msg.value if isinstance(msg.value, (bytes, bytearray)) else b""
        verdict = identity.authenticate(msg.headers, raw, self.publishers)
        if verdict.allowed:
            try:
                decoded = self.codec.decode(raw)
            except CodecError:
                return None
            verdict = identity.authorize(self.publishers.by_id[verdict.publisher], decoded.name, decoded.record,
                                         identity.header(msg.headers, identity.EVENT_ID_HEADER))
            if verdict.allowed:
                return None
        sends: list = []
        first = not self.dead_lettered_already(msg)
        await self.dead_letter_acked(msg, verdict.reason, verdict.message, sends)
        if first:
            metrics.events_consumed.labels(msg.topic, "dead_letter").inc()
        return sends[0]
