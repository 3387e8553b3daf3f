"""Corrections to faust's worker: its fetch wait, which offsets it may commit, and a fixed pause at start.

**Fetch wait.** faust creates its worker consumer with `fetch_max_wait_ms=1500` and no setting to
change it. A fetch on partitions with nothing new is held that long at the broker; on the embedded
broker a record that arrives meanwhile does not end the wait, so at low load each hop of the
pipeline (population change -> newcomer -> referral) added up to 1.5 s (bench/RESULTS.md). The
wrapped factory gives an app with `hub_fetch_max_wait_ms` set that wait instead.

**Safe commits.** faust commits, per partition, the end of the first run of consecutive acknowledged
offsets. Its check that the run starts where the last commit ended is off by one and is skipped
when the committed offset is 0 or unknown (`Consumer._new_offset`: `if committed_offset:` ...
`min(acked) - committed_offset > 1`), so with offset C still unacknowledged and C+1 acknowledged it
commits C+2. Offsets are acknowledged out of order when faust drops a fetched record without
processing it (a stream skips records fetched while flow control is suspended or in an older
rebalance generation) and when the same record is fetched twice around a rebalance. The crash soak
lost one assessment and left one referral unmarked that way (docs/reliability.md). Here:

- the *base* of a partition is where its processing starts: the committed offset, or the earliest
  offset when the group has committed nothing (faust turns a committed 0 into "unknown");
- a commit never passes an offset that was not acknowledged in this process, counting from the
  base (acknowledged offsets are de-duplicated; faust's gap records for offsets that do not exist,
  e.g. on compacted topics, still count as acknowledged, and the first offset after the base is now
  one of them);
- an offset that stays unacknowledged while later ones are, and no record at that offset is in
  processing, was dropped: it is logged, and commits of that partition wait (its records are
  processed again after the next restart or rebalance, and deduplicated by event id) instead of
  silently skipping it.

**Start.** faust's table manager sleeps a fixed second before it starts table recovery (so that
tables declared after the app started are included). The hub declares its tables before the app
starts (`hub.streams.pipeline.build`), so an app with `hub_tables_declared_first` set skips the
pause: the worker consumes about a second sooner (bench/RESULTS.md).

`apply()` patches the classes once, on import.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

DROPPED_AFTER = 10.0  # seconds an offset may stay missing below acknowledged ones before it is reported


def _base_offsets(committed: dict, earliest: dict) -> dict:
    """The base of each partition: its committed offset (0 included), else its earliest offset."""
    out = {}
    for tp, offset in committed.items():
        if offset is not None and offset >= 0:
            out[tp] = offset
        elif earliest.get(tp) is not None:
            out[tp] = earliest[tp]
        else:
            out[tp] = None
    return out


def safe_new_offset(consumer: Any, tp: Any) -> int | None:
    """The offset to commit for `tp` (the end of the acknowledged run that starts at the base), or
    None. Consumes the run from the consumer's acknowledged list, as faust's own method does."""
    acked = consumer._acked[tp]
    if not acked:
        return None
    gaps = consumer._gap[tp]
    if gaps:  # offsets the fetch skipped (they do not exist) count as acknowledged; faust's own merge
        top = max(acked)
        candidates = sorted(gaps.overlap(0, top), key=lambda iv: iv.begin)
        if candidates:
            filled = [o for iv in candidates for o in range(iv.begin, iv.end)]
            acked.extend(filled)
            gaps.chop(0, max(filled[-1], top + 1))
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
    dropped by faust. Report a drop once it has lasted DROPPED_AFTER seconds with none in processing."""
    in_flight = any(m.tp == tp and base <= m.offset < first_acked and not m.acked for m in list(consumer._unacked_messages))
    missing = consumer._hub_missing
    if in_flight:
        missing.pop(tp, None)
        return
    since = missing.setdefault(tp, [base, time.monotonic(), False])
    if since[0] != base:
        missing[tp] = since = [base, time.monotonic(), False]
    if not since[2] and time.monotonic() - since[1] >= DROPPED_AFTER:
        since[2] = True
        log.warning(
            "%s[%s]: offsets %s..%s were fetched but never processed (faust dropped them around a rebalance) while later ones were; "
            "this partition's offsets are not committed past them, so they are processed after the next restart or rebalance",
            tp.topic, tp.partition, base, first_acked - 1)


async def perform_seek(consumer: Any) -> None:
    """faust's seek to the committed offsets, and a base for every partition the agents acknowledge:
    a committed 0 stays 0, and where nothing is committed the base is the earliest offset. Other
    partitions (table changelogs, faust's own) are left as faust leaves them."""
    from faust.types import TP

    committed = {TP(tp.topic, tp.partition): offset for tp, offset in (await consumer.seek_to_committed()).items()}
    acking = consumer.app.topics.acks_enabled_for
    for tp, offset in committed.items():
        if not acking(tp.topic):  # faust's own perform_seek
            consumer._read_offset[tp] = offset if offset is not None and offset >= 0 else None
            if offset:
                consumer._committed_offset[tp] = offset
    committed = {tp: offset for tp, offset in committed.items() if acking(tp.topic)}
    fresh = [tp for tp, offset in committed.items() if offset is None or offset < 0]
    earliest = {}
    if fresh:
        earliest = {TP(tp.topic, tp.partition): offset for tp, offset in (await consumer.earliest_offsets(*fresh)).items()}
    for tp, base in _base_offsets(committed, earliest).items():
        # the fetch loop records offsets between the read offset and the next record it gets as a
        # gap (offsets that do not exist): with base - 1 that includes the base itself
        consumer._read_offset[tp] = base - 1 if base is not None and base >= 2 else None
        if base is None:
            consumer._committed_offset.pop(tp, None)
        else:
            consumer._committed_offset[tp] = base
        consumer._hub_missing.pop(tp, None)


async def add_gap(consumer: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """faust's gap record, without its off-by-one at the committed offset (which is not yet processed)."""
    import asyncio

    committed = consumer._committed_offset[tp]
    gap_for_tp = consumer._gap[tp]
    if committed is not None:
        offset_from = max(offset_from, committed)
    if offset_from <= offset_to:
        gap_for_tp.addi(offset_from, offset_to + 1)
        await asyncio.sleep(0)
        gap_for_tp.merge_overlaps()


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

    Consumer._hub_missing = None

    original_init = Consumer.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._hub_missing = {}  # tp -> [base, since (monotonic), reported]

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
    import os
    skip = os.environ.get("HUB_BISECT", "")
    if "n" not in skip: Consumer._new_offset = safe_new_offset
    if "p" not in skip: Consumer.perform_seek = perform_seek
    if "g" not in skip: Consumer._add_gap = add_gap


apply()
