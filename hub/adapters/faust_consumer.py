"""Corrections to faust's worker: its fetch wait, which offsets it may commit, and a fixed pause at start.

**Fetch wait.** faust creates its worker consumer with `fetch_max_wait_ms=1500` and no setting to
change it. A fetch on partitions with nothing new is held that long at the broker; on the embedded
broker a record that arrives meanwhile does not end the wait, so at low load each hop of the
pipeline (population change -> newcomer -> referral) added up to 1.5 s (bench/RESULTS.md). The
wrapped factory gives an app with `hub_fetch_max_wait_ms` set that wait instead.

**Safe commits.** A commit says "every record before this offset is done"; faust can commit past a
record that was never processed, and a crash then loses it. The crash soak lost records that way
(one assessment; then, with only the commit rule below, three consents and two newcomers). How:
after a rebalance faust seeks each partition back to its committed offset, but records fetched
before the seek are still being handed out; they bump the fetch loop's read offset past the seek
target, so (1) the loop records the offsets in between as a "gap" (offsets that do not exist, e.g.
on a compacted topic), which count as done, and (2) it drops the re-fetched records below the read
offset as duplicates; streams skip the stale records themselves (older rebalance generation). The
skipped records are never processed, yet counted as done. faust's own commit rule adds an off-by-one
(with offset C unacknowledged and C+1 done it commits C+2) and is switched off when the committed
offset is 0 or unknown. Here, for the topics agents acknowledge:

- the fetch loop neither drops records by its read offset nor records gaps: every fetched record
  reaches the stream (a re-fetched one is processed again and deduplicated by event id; a stale
  one is skipped by the stream and delivered again after the seek). The hub's topics have
  contiguous offsets (no compaction, no transactions), so no offset needs to count as done unseen;
- the *base* of a partition is where its processing starts: the committed offset (0 included;
  faust turns 0 into "unknown"), the earliest offset when nothing is committed or retention removed
  the committed one;
- a commit never passes an offset not acknowledged in this process, counting from the base
  (acknowledgements are de-duplicated);
- after every rebalance each of these partitions is read again from its base. faust asks aiokafka
  to seek to the committed offsets, and aiokafka does not seek a partition with nothing (or 0)
  committed: records fetched before the rebalance and skipped by the stream (older generation) were
  then never read again. Seen once in the short crash soak (offset 2 of a fresh group);
- an offset that stays unacknowledged while later ones are, with no record at that offset in
  processing, holds the partition's commits; after DROPPED_AFTER seconds it is logged, counted
  (`hub_consumer_rereads_total`) and the partition is read again from its base in this process
  (the records after it are processed again and deduplicated by event id).

Table changelogs and faust's own topics keep faust's behaviour (a changelog replayed out of order
would restore an older value).

**Start.** faust's table manager sleeps a fixed second before it starts table recovery (so that
tables declared after the app started are included). The hub declares none after the app starts
(none at all since detection's states moved to the database), so an app with
`hub_tables_declared_first` set skips the pause: the worker consumes about a second sooner
(bench/RESULTS.md).

`apply()` patches the classes once, on import.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hub import metrics

log = logging.getLogger(__name__)

DROPPED_AFTER = 10.0  # seconds an offset may stay missing below acknowledged ones before it is reported


def _base_offsets(committed: dict, earliest: dict) -> dict:
    """The base of each partition: its committed offset (0 included), or its earliest offset when
    nothing is committed or retention has removed the records from the committed offset on."""
    out = {}
    for tp, offset in committed.items():
        first = earliest.get(tp)
        if offset is None or offset < 0:
            out[tp] = first
        elif first is not None and first > offset:
            out[tp] = first
        else:
            out[tp] = offset
    return out


def safe_new_offset(consumer: Any, tp: Any) -> int | None:
    """The offset to commit for `tp` (the end of the acknowledged run that starts at the base), or
    None. Consumes the run from the consumer's acknowledged list, as faust's own method does."""
    acked = consumer._acked[tp]
    if not acked:
        return None
    unique = sorted(set(acked))  # a record fetched twice around a rebalance is acknowledged twice
    acked[:] = unique
    base = consumer._committed_offset[tp]
    if base is None:
        return None  # where processing starts is not known yet: commit nothing rather than guess
    if unique[0] > base:
        _note_missing(consumer, tp, base, unique[0])
        return None
    end = base
    i = 0
    for offset in unique:
        if offset < end:
            i += 1
            continue
        if offset != end:
            break
        end += 1
        i += 1
    consumer._hub_missing.pop(tp, None)
    del acked[:i]
    consumer._acked_index[tp].difference_update(range(base, end))
    return end if end > base else None


def _note_missing(consumer: Any, tp: Any, base: int, first_acked: int) -> None:
    """Offsets [base, first_acked) are not acknowledged while later ones are: in processing, or
    dropped by faust. Once a drop has lasted DROPPED_AFTER seconds with none in processing, report it
    (a warning the first time) and read the partition again from its base; again every DROPPED_AFTER
    seconds while it lasts."""
    in_flight = any(m.tp == tp and base <= m.offset < first_acked and not m.acked for m in list(consumer._unacked_messages))
    missing = consumer._hub_missing
    if in_flight:
        missing.pop(tp, None)
        return
    since = missing.setdefault(tp, [base, time.monotonic(), False])
    if since[0] != base:
        missing[tp] = since = [base, time.monotonic(), False]
    if time.monotonic() - since[1] < DROPPED_AFTER:
        return
    since[1] = time.monotonic()
    (log.info if since[2] else log.warning)(
        "%s[%s]: offsets %s..%s were fetched but never processed (faust dropped them around a rebalance) while later ones were; "
        "nothing is committed past them: reading the partition again from offset %s",
        tp.topic, tp.partition, base, first_acked - 1, base)
    since[2] = True
    metrics.consumer_rereads.labels(tp.topic).inc()
    _read_again(consumer, tp, base)


def _read_again(consumer: Any, tp: Any, offset: int) -> None:
    """Seek `tp` back to `offset` (in the background: called from faust's synchronous commit step)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop: not inside a running worker
        return
    task = loop.create_task(consumer.seek_wait({tp: offset}))
    tasks = consumer._hub_seeks
    tasks.add(task)

    def done(t: asyncio.Task) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.warning("%s[%s]: could not seek back to offset %s: %r", tp.topic, tp.partition, offset, t.exception())

    task.add_done_callback(done)


async def perform_seek(consumer: Any) -> None:
    """faust's seek to the committed offsets, and a base for every partition the agents acknowledge
    (see `_base_offsets`), from which that partition is read again: aiokafka's seek to the committed
    offsets leaves a partition with nothing or 0 committed where its fetches had got to. Other
    partitions are left as faust leaves them."""
    from faust.types import TP

    committed = {TP(tp.topic, tp.partition): offset for tp, offset in (await consumer.seek_to_committed()).items()}
    acking = consumer.app.topics.acks_enabled_for
    for tp, offset in committed.items():
        if not acking(tp.topic):  # faust's own perform_seek
            consumer._read_offset[tp] = offset if offset is not None and offset >= 0 else None
            if offset:
                consumer._committed_offset[tp] = offset
    committed = {tp: offset for tp, offset in committed.items() if acking(tp.topic)}
    earliest = {}
    if committed:
        earliest = {TP(tp.topic, tp.partition): offset for tp, offset in (await consumer.earliest_offsets(*committed)).items()}
    seek = {}
    for tp, base in _base_offsets(committed, earliest).items():
        if base is None:
            consumer._committed_offset.pop(tp, None)
        else:
            consumer._committed_offset[tp] = base
            if not committed[tp] or committed[tp] != base:  # aiokafka only sought to a committed offset > 0
                seek[tp] = base
        consumer._hub_missing.pop(tp, None)
    if seek:
        await consumer.seek_wait(seek)


async def add_gap(consumer: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """faust records offsets the fetch loop did not see as done; on the hub's topics no offset is done
    unless its record was processed (the loop no longer calls this for them: see _ReadOffsets)."""
    return None


class _ReadOffsets(dict):
    """faust's per-partition read offsets, except that the fetch loop reads None for the topics agents
    acknowledge: it then neither drops a record as a duplicate nor records a gap for them."""

    def __init__(self, acking) -> None:
        super().__init__()
        self._acking = acking

    def __getitem__(self, tp):
        if self._acking(tp.topic):
            return None
        return self.get(tp)


def apply() -> None:
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_hub_patched", False):
        return

    def _create_worker_consumer(self, transport):
        consumer = original(self, transport)
        wait = getattr(self.app, "hub_fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = int(wait)
        return consumer

    _create_worker_consumer._hub_patched = True
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer

    original_init = Consumer.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._hub_missing = {}  # tp -> [base, since (monotonic), reported]
        self._hub_seeks = set()  # seeks back to a base, running
        self._read_offset = _ReadOffsets(lambda topic: self.app.topics.acks_enabled_for(topic))

    Consumer.__init__ = __init__

    from faust.tables.manager import TableManager

    original_on_start = TableManager.on_start

    async def on_start(self) -> None:
        if not getattr(self.app, "hub_tables_declared_first", False):
            return await original_on_start(self)
        if not self.should_stop:  # faust's on_start without its `await self.sleep(1.0)`
            await self._update_channels()
            await self.recovery.start()

    TableManager.on_start = on_start
    Consumer._new_offset = safe_new_offset
    Consumer.perform_seek = perform_seek
    Consumer._add_gap = add_gap


apply()
