"""At-least-once batch consumption on plain aiokafka, started and stopped with the faust app: every
stream the hub reads goes through it.

The contract (docs/reliability.md):

- records are read in batches (`getmany`: what has been fetched, up to `max_records`, without
  waiting for a batch to fill) and handed to `handle(records)`, which returns when every record of
  the batch is done: its outputs acknowledged by the broker, its state written, a bad record
  dead-lettered (and that acknowledged);
- then the batch's offsets are committed (the next offset of each partition), in the background:
  the next batch is fetched and handled while the broker records the commit. Commits go out in
  batch order, one at a time; a rebalance and a stop wait for the last one. A crash before a commit
  reads its batch again: outputs carry derived event ids and are deduplicated downstream;
- a `handle` that raises an outage (`hub.adapters.kafka.errors.is_outage`: the database or the broker
  unreachable, a timeout) commits nothing: the worker logs it, counts it (`hub_consumer_rereads_total`), seeks
  the batch's partitions back to its first offsets and reads it again after a pause that doubles
  with each failure in a row (1 s up to 30 s); the worker lives on;
- a `handle` that raises anything else failed because of a record (a value the database refuses,
  an output too large for the producer, a bug that one record triggers): the batch is narrowed
  down (`_narrow`: its halves handled in order, a failing half halved again) until the failing
  record is alone; that record goes to `isolate` (the hub dead-letters it, reason `unprocessable`
  or `internal_error`, and waits for the dead letter to exist) and every other record of the batch
  is handled, in offset order, before the batch is committed. An outage met while narrowing reads
  the whole batch again as above (what was handled is handled again: outputs carry derived event
  ids, dead letters of this batch are not sent twice, `dead_lettered`);
- a rebalance waits for the batch in processing (`on_partitions_revoked`), so a partition moves to
  another worker between batches, with its offsets committed; records of a partition revoked
  between the fetch and the processing are left to the new owner;
- while records flow, fetches wait `busy_fetch_wait_ms` at most; after a quiet second, the
  consumer's own (longer) wait again (`_pace`);
- `handle` publishes through a producer of the consumer's own (`new_producer`, `stream_producer`):
  aiokafka keeps one produce request in flight per broker and producer, so the streams' sends do
  not queue behind each other;
- the consumer group is `<app id>.<name>`, one per stream; a fresh group starts at the earliest offset;
- a consumer of co-partitioned topics (`CO_PARTITIONED`: routing reads a person's newcomers and
  routing facts) has partition i of each topic assigned to one member.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Any, Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, KafkaError
from mode import Service

from hub import metrics
from hub.adapters.kafka.errors import RETRY_PAUSE, is_outage, retry_pause

log = logging.getLogger(__name__)

IDLE_AFTER = 1.0  # seconds without a record after which a consumer with a busy fetch wait goes back to its idle wait

# The assignment strategies of a consumer of co-partitioned topics (`partition_assignment_strategy`):
# the range assignor gives partition i of every topic to the same member when the topics have one
# partition count. Round robin (aiokafka's default) follows only so that a member joins a group whose
# older members know nothing else (a rolling update); once every member offers range, the group uses it.
CO_PARTITIONED = (RangePartitionAssignor, RoundRobinPartitionAssignor)

# The producer of the batch consumer whose `handle` is running, None anywhere else (timers, the
# relay): Publisher.publish sends through it. Set in the consumer's own task, so it is seen only there.
stream_producer: contextvars.ContextVar = contextvars.ContextVar("stream_producer", default=None)
# (topic, partition, offset) -> the dead letter's future, for the records dead-lettered while the
# batch in processing is handled (narrowing handles a record more than once): Publisher.dead_letter_message
# sends a record's dead letter once per batch. None outside a batch consumer's handling.
dead_lettered: contextvars.ContextVar = contextvars.ContextVar("dead_lettered", default=None)


class BatchConsumer(Service):
    """One topic, one consumer group, batches handed to `handle` and committed after it returns."""

    def __init__(self, *, name: str, topics: Sequence[str], group_id: str, handle: Callable[[list[ConsumerRecord]], Awaitable[None]],
                 consumer_options: dict[str, Any], max_records: int = 200, stop_timeout: float = 30.0, busy_fetch_wait_ms: int | None = None,
                 idle_after: float = IDLE_AFTER, clock: Callable[[], float] = time.monotonic, new_producer: Callable[[], Any] | None = None,
                 isolate: Callable[[ConsumerRecord, Exception], Awaitable[None]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.topics = tuple(topics)
        self.group_id = group_id
        self.handle = handle
        # dead-letters a record whose handling fails alone and returns once the dead letter exists;
        # None: every failed batch is read again whole (as an outage)
        self.isolate = isolate
        self.max_records = max_records
        self.stop_timeout = stop_timeout
        self._options = consumer_options
        # the fetch wait: `consumer_options`' fetch_max_wait_ms while the topic is quiet, `busy_fetch_wait_ms` while records flow (`_pace`)
        self.idle_fetch_wait_ms = consumer_options.get("fetch_max_wait_ms", 500)  # aiokafka's default
        self.busy_fetch_wait_ms = busy_fetch_wait_ms
        self.idle_after = idle_after
        self._clock = clock
        self._new_producer = new_producer  # makes the (not yet started) aiokafka producer `handle` publishes through
        self.producer = None  # started with the consumer's processing, stopped after its last commit
        self._last_records = float("-inf")  # clock() of the last fetch that returned records
        self._busy = asyncio.Lock()  # held while a batch is handled and its commit started
        self._committing: asyncio.Future | None = None  # the last batch's commit, in the background
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.consumer: AIOKafkaConsumer | None = None
        self.retries = 0  # batches read again after a failure (tests)
        self.failures = 0  # failed tries of the batch in processing in a row (the pause before the next)
        self.isolated = 0  # records dead-lettered because their handling failed alone (tests)

    @property
    def label(self) -> str:  # mode's name in logs
        return f"BatchConsumer[{self.name}]"

    async def connect(self) -> None:
        """Start the consumer and ask for partitions; the group join goes on in the background.
        Called early (when the app starts: a join takes seconds, and the app's other services
        start meanwhile), then again by `on_start` (a no-op by then)."""
        if self.consumer is not None:
            return
        self.consumer = AIOKafkaConsumer(group_id=self.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                                         max_poll_records=self.max_records, **self._options)
        await self.consumer.start()  # before subscribe: with a subscription, start() waits for the assignment
        self.consumer.subscribe(list(self.topics), listener=_FinishBatchFirst(self))

    async def close(self) -> None:
        """Leave the group and close the consumer (idempotent)."""
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await consumer.stop()

    @property
    def processing(self) -> bool:
        """True once `on_start` ran: from then on the service's stop closes the consumer."""
        return self._task is not None

    @property
    def alive(self) -> bool:
        """True while its processing task runs: started, and neither stopped nor ended by an error."""
        return self._task is not None and not self._task.done()

    async def on_start(self) -> None:
        await self.connect()
        if self._new_producer is not None and self.producer is None:
            producer = self._new_producer()
            await producer.start()
            self.producer = producer
        self._task = asyncio.ensure_future(self._run())

    async def on_stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            # the batch in processing finishes and commits; a batch stuck longer is read again by the next owner
            done, _ = await asyncio.wait({self._task}, timeout=self.stop_timeout)
            if not done:
                log.warning("%s: the batch in processing did not finish within %.0f s at stop; it will be read again", self.name, self.stop_timeout)
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._committing is not None:  # the last batch's commit goes out before the consumer closes
            done, _ = await asyncio.wait({self._committing}, timeout=self.stop_timeout)
            if not done:
                log.warning("%s: the last commit did not finish within %.0f s at stop; its batch will be read again", self.name, self.stop_timeout)
        await self.close()
        producer, self.producer = self.producer, None
        if producer is not None:  # every send of a handled batch was acknowledged before its commit
            await producer.stop()

    async def _run(self) -> None:
        consumer = self.consumer
        stream_producer.set(self.producer)  # this task's context only: what `handle` publishes goes through it
        while not self._stopping:
            try:
                fetched = await consumer.getmany(timeout_ms=100, max_records=self.max_records)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                log.warning("%s: fetch failed (%s); retrying", self.name, type(exc).__name__)
                await asyncio.sleep(RETRY_PAUSE)
                continue
            self._pace(bool(fetched))
            if not fetched:
                continue
            if not await self._handle(fetched):
                await asyncio.sleep(retry_pause(self.failures))  # outside the lock: a rebalance need not wait for it

    def _pace(self, got_records: bool) -> None:
        """The fetch wait for the next fetches: short while records flow, long once the topic has been
        quiet for `idle_after` seconds.

        Why: the embedded broker holds a fetch that found nothing for about half its wait, and a record
        that arrives meanwhile does not end it, so each hop of the pipeline pays up to half the wait in
        latency; a short wait all the time costs an idle worker and broker CPU in empty fetches. Apache
        Kafka answers a waiting fetch as soon as a record arrives: there the busy wait only makes the
        fetches of a busy topic a little more frequent. aiokafka reads the wait from its fetcher for
        each fetch request it builds (pinned 0.14.0)."""
        if self.busy_fetch_wait_ms is None:
            return
        now = self._clock()
        if got_records:
            self._last_records = now
        wait = self.busy_fetch_wait_ms if now - self._last_records < self.idle_after else self.idle_fetch_wait_ms
        fetcher = getattr(self.consumer, "_fetcher", None)
        if fetcher is not None and fetcher._fetch_max_wait_ms != wait:
            fetcher._fetch_max_wait_ms = wait

    @property
    def fetch_wait_ms(self) -> int | None:
        """The wait of the consumer's next fetch request (None before it started)."""
        fetcher = getattr(self.consumer, "_fetcher", None)
        return None if fetcher is None else fetcher._fetch_max_wait_ms

    async def _handle(self, fetched: dict) -> bool:
        """Handle one fetched batch and start its commit; False when it failed (sought back, to be read again)."""
        async with self._busy:
            owned = self.consumer.assignment()  # a rebalance may have run between the fetch and here
            records = [r for tp, rs in fetched.items() if tp in owned for r in rs]
            if not records:
                return True
            memo = dead_lettered.set({})
            try:
                await self.handle(records)
            except Exception as exc:  # noqa: BLE001 - an outage: nothing committed, the batch is read again; else narrowed down
                try:
                    if self.isolate is None or is_outage(exc):
                        raise
                    await self._narrow(records, exc)
                except Exception as failed:  # noqa: BLE001
                    self._read_again(fetched, owned, failed)
                    return False
            finally:
                dead_lettered.reset(memo)
            self.failures = 0
            previous = self._committing
            self._committing = asyncio.ensure_future(self._commit_after(previous, {tp: rs[-1].offset + 1 for tp, rs in fetched.items() if tp in owned}))
            return True

    async def _narrow(self, records: list, exc: Exception) -> None:
        """`records` failed together with `exc`, not an outage: handle its halves in order, halve a
        failing half again, and hand a record that fails alone to `isolate`. Returns when every
        record is handled or isolated; raises an outage (the caller reads the batch again)."""
        log.warning("%s: a batch of %d records failed with %s (not an outage); narrowing it down to the failing record",
                    self.name, len(records), type(exc).__name__)
        if len(records) == 1:
            await self._isolate(records[0], exc)
            return
        middle = len(records) // 2
        for part in (records[:middle], records[middle:]):
            try:
                await self.handle(part)
            except Exception as failed:  # noqa: BLE001 - narrowed further, or an outage raised
                if is_outage(failed):
                    raise
                await self._narrow(part, failed)

    async def _isolate(self, record: ConsumerRecord, exc: Exception) -> None:
        log.error("%s: %s[%s]@%s failed alone with %s; dead-lettering it, the rest of its batch goes on", self.name,
                  record.topic, record.partition, record.offset, type(exc).__name__)
        await self.isolate(record, exc)
        self.isolated += 1

    def _read_again(self, fetched: dict, owned: set, exc: Exception) -> None:
        self.retries += 1
        self.failures += 1
        log.error("%s: a batch of %d records failed with %s; nothing committed, reading it again in %.0f s", self.name,
                  sum(len(rs) for rs in fetched.values()), type(exc).__name__, retry_pause(self.failures))
        for tp, rs in fetched.items():
            if tp in owned:
                metrics.consumer_rereads.labels(tp.topic).inc()
                self.consumer.seek(tp, rs[0].offset)

    async def _commit_after(self, previous: asyncio.Future | None, offsets: dict[TopicPartition, int]) -> None:
        """Commit `offsets` once the previous batch's commit is done: commits reach the broker in order."""
        if previous is not None:
            await asyncio.wait({previous})  # its own outcome is logged by it
        await self._commit(offsets)

    async def committed(self) -> None:
        """Return when the offsets of every handled batch have been committed (or refused: see `_commit`)."""
        if self._committing is not None:
            await asyncio.wait({self._committing})

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the group moved on (this member was too slow, or lost its partitions): the records are
            # read again by their owner and deduplicated there
            log.warning("%s: commit refused (%s); the batch will be read again by the partitions' owner", self.name, type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - a broker error, or any other: nobody awaits a background commit's result
            log.warning("%s: commit failed (%s); a later commit covers it, a crash before then reads the batch again", self.name, type(exc).__name__)

    async def finish_batch(self) -> None:
        """Return when no batch is in processing and every handled batch is committed."""
        async with self._busy:
            await self.committed()

    async def lag(self) -> dict[str, int]:
        """Records behind per topic for the partitions this member owns: end offset minus the
        committed offset (the earliest offset when nothing is committed)."""
        consumer = self.consumer
        tps = sorted(consumer.assignment()) if consumer is not None else []
        if not tps:
            return {}
        end = await consumer.end_offsets(tps)
        lag: dict[str, int] = {}
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                committed = (await consumer.beginning_offsets([tp]))[tp]
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end[tp] - committed)
        return lag


class _FinishBatchFirst(ConsumerRebalanceListener):
    """Partitions are taken away only between batches: the one in processing is finished and committed first."""

    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked) -> None:
        await self.owner.finish_batch()

    async def on_partitions_assigned(self, assigned) -> None:
        if assigned:
            log.info("%s: assigned %s", self.owner.name, ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)))
