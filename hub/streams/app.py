"""The hub's faust app (lifecycle, timers, services) and HubApp: the app, the batch consumers that
read the hub's topics, and the producer of its timers. Publishing, signing and dead-lettering are the
publisher's (`hub.adapters.kafka.publisher`), the check of who published a record the publisher
check's (`hub.adapters.kafka.publisher_check`); the composition root (`hub.streams.pipeline.hub_app`)
makes both and gives them to HubApp, which hands them out.

Values on every topic are raw bytes in the Confluent wire format, written and read only through
`hub.schemas.codec`: consumers decode themselves so that a record that fails to decode goes to the
dead-letter topic with its original bytes.

Every stream is read by a batch consumer (`hub.adapters.kafka.consumer`) and everything is sent
through producers the hub makes itself (`hub.adapters.kafka.producer.new_producer`): one per batch
consumer, one for the timers and the relay. faust starts neither its consumer nor its producer
(`_Boot`). With an identity configuration (`HUB_PUBLISHERS`) consumers pass every record of an input
topic through the publisher check (`PublisherCheck.refuse`) first, and the hub signs what it publishes with its own key.
"""

from __future__ import annotations

import logging
from typing import Sequence

import faust
from faust.app import BootStrategy

from hub import metrics
from hub.adapters.kafka.consumer import CO_PARTITIONED, BatchConsumer
from hub.adapters.kafka.errors import failure_reason
from hub.adapters.kafka.publisher import Publisher
from hub.adapters.kafka.publisher_check import PublisherCheck
from hub.adapters.kafka.producer import new_producer
from hub.adapters.kafka.security import bootstrap_servers, faust_credentials, kafka_client_options
from hub.config import Settings
from hub.schemas.codec import Codec
from hub.streams.gc_tuning import tune_gc
from hub.streams.switch_interval import set_switch_interval

log = logging.getLogger(__name__)



def consumed_record(event):
    """The consumed Kafka record of a faust event, or the record itself (batch consumers,
    `hub.adapters.kafka.consumer`, hand out records)."""
    return getattr(event, "message", event)


class _Boot(BootStrategy):
    """What faust starts with the app: its sensors, agents manager, timers and services, never its
    producer (the hub publishes through its own), and its consumer only while a faust agent is
    declared (the hub declares none: its streams are read by batch consumers). Without agents
    faust's consumer would still start and join the group `<app id>` with nothing subscribed. A
    deployment grants neither that group nor faust's leader topic (hub/deploy/acls.py, topics.py):
    a faust agent needs them added there."""

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
    hub_switch_interval_ms = 0.0  # HubApp sets HUB_SWITCH_INTERVAL_MS

    async def on_start(self) -> None:
        await super().on_start()
        # everything built so far lives as long as the worker: frozen out of the collector's walks
        tune_gc(self.hub_gc_threshold)
        # the database threads' round trips wait for the GIL at most this long (hub.streams.switch_interval)
        set_switch_interval(self.hub_switch_interval_ms)
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
    """The hub's faust app with its batch consumers and the producer of its timers. `publisher`
    (`hub.adapters.kafka.publisher`: publish, sign, dead-letter, make topics) and `publisher_check`
    (`hub.adapters.kafka.publisher_check`) are used directly by whoever publishes or checks; both are
    made by the composition root (`hub.streams.pipeline.hub_app`), the publisher sending outside a
    batch consumer through this app's producer (`producer`)."""

    def __init__(self, settings: Settings, kafka_url: str, codec: Codec, *, publisher: Publisher, publisher_check: PublisherCheck):
        self.settings = settings
        self.codec = codec
        self.kafka_url = kafka_url
        self.publisher = publisher
        self.publisher_check = publisher_check
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
        self.app.hub_switch_interval_ms = settings.switch_interval_ms  # hub.streams.switch_interval, when the app starts
        # the producer of the timers and the relay (a batch consumer's handler publishes through its own)
        self.app.hub_new_producer = lambda: new_producer(settings, kafka_url, f"{settings.app_id}-hub")
        self.app.batch_consumers = []  # every stream the hub reads (hub.adapters.kafka.consumer)

    @staticmethod
    def _faust_datadir(settings: Settings):
        path = settings.data_dir / "faust" / settings.app_id
        path.parent.mkdir(parents=True, exist_ok=True)  # faust makes the last level only
        return path

    def batch_group(self, name: str) -> str:
        """The consumer group of the batch consumer `name` (the hub's ACLs allow `<app id>.*`)."""
        return f"{self.settings.app_id}.{name}"

    def batch_consumer(self, name: str, topic: str | Sequence[str], handle, max_records: int, *, co_partitioned: bool = False) -> BatchConsumer:
        """Read `topic` (or several topics) in batches of up to `max_records` with plain aiokafka (`hub.adapters.kafka.consumer`):
        `handle(records)` returns when the batch is done, then its offsets are committed. The consumer
        starts and stops with the app, in its own group `batch_group(name)`, with the group timings of
        HUB_KAFKA_*; while records flow it fetches with the pipeline's short wait
        (HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS), after a quiet second with the worker's (HUB_KAFKA_FETCH_MAX_WAIT_MS).
        What `handle` publishes goes through the consumer's own producer.

        `co_partitioned`: the topics are keyed alike with one partition count, and partition i of each
        goes to the same member of the group (`hub.adapters.kafka.consumer.CO_PARTITIONED`), so that
        one member reads all records of a key, from every topic, in order."""
        s = self.settings
        read = [topic] if isinstance(topic, str) else list(topic)
        self.publisher.declared.update(read)  # `Publisher.ensure_topics` creates them with HUB_TOPIC_PARTITIONS
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
        if co_partitioned:
            options["partition_assignment_strategy"] = CO_PARTITIONED
        service = BatchConsumer(name=name, topics=read, group_id=self.batch_group(name), handle=handle, consumer_options=options,
                                max_records=max_records, busy_fetch_wait_ms=s.pipeline_fetch_max_wait_ms, new_producer=lambda: new_producer(s, self.kafka_url, f"{s.app_id}-{name}"),
                                isolate=lambda record, exc: self.isolate(name, record, exc))
        self.app.service(service)  # processing starts after the app's producer and consumer, stops before them
        self.app.batch_consumers.append(service)
        return service

    async def isolate(self, name: str, record, exc: Exception) -> None:
        """A batch consumer's record whose handling failed alone (`BatchConsumer._narrow`): dead-lettered
        (`unprocessable` or `internal_error`, the error's type named, never its text) and counted;
        returns once the dead letter exists (an outage raises: the batch is read again)."""
        sent = await self.publisher.dead_letter_message(record, failure_reason(exc),
                                                        f"{name} failed with {type(exc).__name__} on this record alone; the rest of its batch was "
                                                        "processed; the record is kept for replay after a fix")
        await sent
        metrics.events_consumed.labels(record.topic, "dead_letter").inc()

    @property
    def batch_consumers(self) -> list[BatchConsumer]:
        return self.app.batch_consumers

    @property
    def producer(self):
        """The producer of the timers and the relay while the app runs (`hub.adapters.kafka.producer.new_producer`), else None."""
        return self.app.hub_producer
