"""The faust app of the hub: built once from Settings, with its topics and the publish helpers.

Values on every topic are raw bytes in the Confluent wire format, written and read only through
`hub.schemas.codec`: agents decode themselves so that a record that fails to decode goes to the
dead-letter topic with its original bytes instead of being dropped inside faust.

With an identity configuration (`HUB_PUBLISHERS`) every record on an input topic passes the
publisher check (`hub.domain.publishers`) before any agent sees it, and the hub signs what it
publishes with its own key.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from hub.adapters import aiokafka_metadata  # noqa: F401 - producers keep tracking every topic they send to
from hub.adapters import faust_consumer  # noqa: F401 - the worker consumer's fetch wait is a setting
from faust.exceptions import Skip

from hub import metrics
from hub.domain import publishers as identity
from hub.adapters.batch_consumer import BatchConsumer, dead_lettered, failure_reason, is_outage, retry_pause, stream_producer, too_large
from hub.adapters.database import with_database_retry
from hub.adapters.kafka_producer import KeyPartitioner
from hub.adapters.kafka_security import bootstrap_servers, faust_credentials, kafka_client_options
from hub.config import Settings
from hub.schemas.codec import Codec, CodecError, default_codec
from hub.schemas import topics as names
from hub.schemas.envelope import cloudevent_headers, dead_letter_record
from hub.schemas.topics import INPUT_TOPICS
from hub.streams.gc_tuning import tune_gc

log = logging.getLogger(__name__)

KEPT_KEY_BYTES = 1024  # a longer original key stays in the database only, not on the pointing dead-letter record


def consumed_record(event):
    """The consumed Kafka record of a faust event, or the record itself (batch consumers,
    `hub.adapters.batch_consumer`, hand out records)."""
    return getattr(event, "message", event)


class _App(faust.App):
    """faust.App whose streams first run the hub's publisher check (when one is set)."""

    publisher_check = None  # async (stream, value) -> value, raising Skip for a refused record
    batch_consumers: tuple | list = ()  # HubApp sets a list per app (HubApp.batch_consumer): they join their groups when the app starts

    hub_gc_threshold = 0  # HubApp sets HUB_GC_THRESHOLD

    async def on_start(self) -> None:
        await super().on_start()
        # everything built so far lives as long as the worker: frozen out of the collector's walks
        tune_gc(self.hub_gc_threshold)
        # the batch consumers' group joins (seconds each) go on while faust's consumer joins its
        # group; their processing starts with the app's extra services, after the producer
        for service in self.batch_consumers:
            await service.connect()

    async def on_stop(self) -> None:
        await super().on_stop()
        for service in self.batch_consumers:
            if not service.processing:  # the app stopped before its extra services started: only joined
                await service.close()

    def stream(self, channel, beacon=None, **kwargs):
        s = super().stream(channel, beacon=beacon, **kwargs)
        check = self.publisher_check
        if check is not None:
            s.add_processor(lambda value: check(s, value))
        return s


class HubApp:
    """One faust.App with the hub's topics declared once, and helpers to publish events.

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
            # faust's own data directory (table stores; it makes `<datadir>/v1/tables` at start):
            # under HUB_DATA_DIR instead of faust's `<app id>-data` in the working directory
            datadir=str(self._faust_datadir(settings)),
            web_enabled=False,
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=1,
            broker_session_timeout=settings.session_timeout,
            broker_rebalance_timeout=settings.rebalance_timeout,
            broker_heartbeat_interval=settings.heartbeat_interval,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            # a record the broker has not acknowledged after this long fails (the caller retries or
            # dead-letters it) instead of waiting faust's default 20 minutes, e.g. for a partition
            # leader the producer's metadata lost
            producer_request_timeout=settings.producer_timeout,
            # no linger by default: the batch consumers send a whole batch's records before they yield,
            # so those go in one produce request anyway; 5 ms (the default until session 8) added ~10 ms
            # to the median latency and no throughput (bench/RESULTS.md, session 8)
            producer_linger=settings.producer_linger_ms / 1000.0,
            producer_partitioner=KeyPartitioner(),  # no murmur2 for one-partition topics
            # Fairness between topics: aiokafka hands out a partition's fetched records until they
            # are used up before it looks at another partition, so with its default fetch (1 MB per
            # partition, ~5,000 population changes) routing waited seconds for its newcomers while
            # detection worked through a backlog. Smaller fetches and polls take turns more often.
            broker_max_poll_records=settings.max_poll_records,
            consumer_max_fetch_size=settings.max_fetch_bytes,
            key_serializer="raw",
            value_serializer="raw",
            table_cleanup_interval=60.0,
            # The check guards a persistent local store (RocksDB) against a changelog topic that was
            # recreated. The hub's store is in memory: its persisted offset is this process's own last
            # acknowledged changelog write, and in a rebalance the broker's high watermark was seen one
            # behind it (4974 > 4973 in a crash soak), which crashed the worker (ConsistencyError).
            recovery_consistency_check=False,
        )
        self.app.hub_fetch_max_wait_ms = settings.fetch_max_wait_ms  # hub.adapters.faust_consumer
        self.app.hub_gc_threshold = settings.gc_threshold  # hub.streams.gc_tuning, when the app starts
        # no table is declared after the app starts (the hub declares none: detection's states are in the
        # database): no 1 s pause before table recovery (hub.adapters.faust_consumer)
        self.app.hub_tables_declared_first = True
        if self.publishers is not None:
            self.app.publisher_check = self._check_publisher
        self._topics: dict[str, faust.TopicT] = {}
        self._existing: set[str] = set()  # topics known to exist on the broker (created or found by ensure_topics)
        self.dead_letter_store = None  # hub.adapters.dead_letter_store.DeadLetterStore, made on first use (or set by a test)
        self._dead_letter_calls = None
        self.app.batch_consumers = []  # streams read without faust's agents (hub.adapters.batch_consumer)
        for name in names.FIXED_TOPICS:
            self.topic(name)

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
        starts and stops with the app, in its own group `batch_group(name)`, with the worker
        consumer's settings (HUB_KAFKA_*); while records flow it fetches with the pipeline's short wait
        (HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS), after a quiet second with the worker's (HUB_KAFKA_FETCH_MAX_WAIT_MS)."""
        s = self.settings
        self.topic(topic)  # declared like an agent's: `ensure_topics` creates it with HUB_TOPIC_PARTITIONS
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
                                max_records=max_records, busy_fetch_wait_ms=s.pipeline_fetch_max_wait_ms, new_producer=lambda: self._new_producer(name),
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

    def _new_producer(self, name: str):
        """A plain aiokafka producer configured like the app's own (faust's, above): its acks, linger,
        request timeout and partitioner, no idempotence (the embedded broker refuses it; consumers
        dedupe by event id), the hub's TLS/SASL."""
        from aiokafka import AIOKafkaProducer

        conf = self.app.conf
        return AIOKafkaProducer(bootstrap_servers=bootstrap_servers(self.kafka_url), client_id=f"{self.settings.app_id}-{name}",
                                acks=conf.producer_acks, enable_idempotence=False, linger_ms=int(conf.producer_linger * 1000),
                                request_timeout_ms=int(conf.producer_request_timeout * 1000), partitioner=conf.producer_partitioner,
                                **kafka_client_options(self.settings))

    @property
    def batch_consumers(self) -> list[BatchConsumer]:
        return self.app.batch_consumers

    def ensure_topics(self) -> list[str]:
        """Create the hub's fixed topics (and any declared so far) with the configured partitions, and
        remember every topic already on the broker: the per-recipient topics a deployment made
        (`hub topics --create`, Strimzi's KafkaTopic resources) then need no admin round trip
        before their first record (`ensure_exists`)."""
        from hub.adapters.kafka_admin import ensure_topics

        declared = sorted(self._topics)
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
        await self.ensure_exists(topic)
        headers = self.signed(cloudevent_headers(name, record), value)
        producer = stream_producer.get()
        if producer is not None:  # in a batch consumer's handler: its own producer (hub.adapters.batch_consumer)
            return await producer.send(topic, value, key=key, headers=headers)
        # straight to the app's producer (the aiokafka producer faust started): faust's Topic.send
        # adds a FutureMessage, callbacks and sensors per record the hub does not use (session 6)
        return await self.app.producer.send(topic, key, value, None, None, headers)

    def signed(self, headers: list[tuple[str, bytes]], value: bytes) -> list[tuple[str, bytes]]:
        """`headers` with the hub's signature when it has a key of its own (id = HUB_APP_ID), else as given."""
        if self.signing_key is None:
            return headers
        return identity.sign_headers(headers, value, self.settings.app_id, self.signing_key)

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

    async def handle_safely(self, event, handler, what: str, sends: list | None = None) -> Any:
        """Run `handler(event)` for one record of a faust agent; the agent goes on whatever happens.

        An outage (`hub.adapters.batch_consumer.is_outage`: the database or the broker unreachable)
        is waited out: the handler is run again after a pause (1 s doubling to 30 s), nothing is
        dropped. Any other error is the record's own: the record is dead-lettered (`internal_error`,
        `unprocessable` for a value the database or the producer refused), its dead letter awaited
        until it exists (added to `sends` instead when given). The message names the error type
        only (exception texts may quote personal data)."""
        failures = 0
        while True:
            try:
                return await handler(event)
            except Exception as exc:  # noqa: BLE001 - a worker must survive any single record
                if not is_outage(exc):
                    await self.internal_error(event, what, exc, sends)
                    return None
                failures += 1
                msg = consumed_record(event)
                log.warning("%s: %s on %s[%s]@%s, an outage; trying again in %.0f s", what, type(exc).__name__, msg.topic, msg.partition,
                            msg.offset, retry_pause(failures))
                await asyncio.sleep(retry_pause(failures))

    async def internal_error(self, event, what: str, exc: Exception, sends: list | None = None) -> None:
        """`handle_safely`'s side of an error that is not an outage (an outage is raised again, for the
        caller to retry): the record goes to dead letters (reason `unprocessable` for a value the
        database or the producer refused, else `internal_error`; the error's type named, never its
        text). Its send future goes to `sends` when given; else it is awaited, and sent again after
        a pause while the broker is unreachable."""
        if is_outage(exc):
            raise exc
        msg = consumed_record(event)
        log.error("%s failed with %s on %s[%s]@%s; record sent to dead letters", what, type(exc).__name__, msg.topic, msg.partition, msg.offset)
        await self.dead_letter_acked(msg, failure_reason(exc), f"{what} failed with {type(exc).__name__}; the record is kept for replay after a fix", sends)

    async def dead_letter_acked(self, msg, reason: str, message: str, sends: list | None = None) -> None:
        """`dead_letter_message`, then: with `sends`, its future added there; without, awaited until
        the dead letter exists, sent again after a pause (1 s doubling to 30 s) while that fails
        with an outage (a faust agent acknowledges its record when it takes the next one)."""
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

    async def _check_publisher(self, stream, value):
        """faust's side of `refuse`: a refused record is skipped (and acknowledged) before any agent decodes it."""
        event = stream.current_event
        if event is None:
            return value
        if await self.refuse(event.message, acked=True) is not None:  # returns once the dead letter exists
            raise Skip()
        return value

    def checks_publishers(self, topic: str) -> bool:
        """Whether records of `topic` go through `refuse` (a signed topic with publishers configured);
        a batch consumer skips the call for the others."""
        return self.publishers is not None and topic in self.signed_topics

    async def refuse(self, msg, *, acked: bool = False) -> Any:
        """The publisher check of one consumed record: on a signed topic a record that is unsigned,
        badly signed, or whose identity fields its signer may not use goes to dead letters (reason
        `forbidden` etc.); returns that dead letter's send future (`acked`: a done future, returned
        once the dead letter exists, `dead_letter_acked`), None when the record may be processed. A
        signed record that does not decode passes: its consumer dead-letters it with the codec's reason."""
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
        await self.dead_letter_acked(msg, verdict.reason, verdict.message, None if acked else sends)
        if first:
            metrics.events_consumed.labels(msg.topic, "dead_letter").inc()
        if sends:
            return sends[0]
        kept = asyncio.get_running_loop().create_future()
        kept.set_result(None)
        return kept
