"""`hub replay`: reprocess a range of a topic by republishing its records onto the same topic.

The records go back unchanged (key, value bytes, headers incl. ce_id) with one more header,
`hub_replay_of` = "<topic>/<partition>/<offset>", so the hub's processors consume them again.
Every processor is idempotent by event id (the routing ledger's processed_events, the newcomer
detector's per-person seen ids), so a replay re-does what was lost and duplicates nothing: a
newcomer routed before makes no second referral; a referral recorded but never published is
published now (the ledger's outbox).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from hub.adapters.kafka_admin import bootstrap_of

REPLAY_HEADER = "hub_replay_of"
QUIET_MS = 700
UNBOUNDED = 2**63


@dataclass(frozen=True)
class Range:
    """Offsets are inclusive and per partition; times select records whose timestamp is in [from, to]."""

    from_offset: int | None = None
    from_time: dt.datetime | None = None
    to_offset: int | None = None
    to_time: dt.datetime | None = None

    def __post_init__(self):
        if (self.from_offset is None) == (self.from_time is None):
            raise ValueError("give exactly one start: --from-offset N or --from-time T")
        if self.to_offset is not None and self.to_time is not None:
            raise ValueError("give at most one end: --to-offset M or --to-time T")
        if self.from_offset is not None and self.from_offset < 0:
            raise ValueError("--from-offset must be 0 or more")
        if self.from_offset is not None and self.to_offset is not None and self.to_offset < self.from_offset:
            raise ValueError(f"--to-offset {self.to_offset} is before --from-offset {self.from_offset}")
        if self.from_time is not None and self.to_time is not None and self.to_time < self.from_time:
            raise ValueError("--to-time is before --from-time")


@dataclass
class ReplayResult:
    topic: str
    target: str
    republished: int = 0
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> [first, last] offsets replayed


def _ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


async def replay(kafka_url: str, topic: str, window: Range, *, partitions: list[int] | None = None, target: str | None = None,
                 security: dict | None = None) -> ReplayResult:
    """Republish the records of `topic` in `window` onto `target` (default: the same topic)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from hub.adapters.kafka_producer import EventProducer

    result = ReplayResult(topic, target or topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_of(kafka_url), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                                **(security or {}))
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            raise LookupError(f"topic {topic!r} does not exist on the broker; check the name (hub asyncapi lists the hub's topics)")
        known = sorted(consumer.partitions_for_topic(topic) or ())
        chosen = known if partitions is None else [p for p in partitions if p in known]
        if partitions is not None and len(chosen) != len(partitions):
            raise LookupError(f"topic {topic!r} has partitions {known}; --partition {sorted(set(partitions) - set(known))} does not exist")
        tps = [TopicPartition(topic, p) for p in chosen]
        consumer.assign(tps)
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        starts: dict = {}
        stops: dict = {}
        by_time = await consumer.offsets_for_times({tp: _ms(window.from_time) for tp in tps}) if window.from_time else {}
        until = await consumer.offsets_for_times({tp: _ms(window.to_time) + 1 for tp in tps}) if window.to_time else {}
        for tp in tps:
            if window.from_time is not None:
                found = by_time.get(tp)
                start = end[tp] if found is None else found.offset
            else:
                start = max(window.from_offset, begin[tp])
            stop = UNBOUNDED
            if window.to_offset is not None:
                stop = window.to_offset + 1
            if window.to_time is not None and until.get(tp) is not None:
                stop = min(stop, until[tp].offset)
            if start < stop and (window.from_time is None or by_time.get(tp) is not None):
                starts[tp], stops[tp] = start, stop
        if starts:  # only the partitions with something to replay
            consumer.assign(list(starts))
            for tp, start in starts.items():
                consumer.seek(tp, start)
        # read the whole range first, then republish: the range's end is fixed before anything is
        # appended. The end is found by reading until the partition is quiet, not from the listed
        # end offsets alone (the embedded broker under-reports them for batched records).
        picked = []
        now_ms = _ms(dt.datetime.now(dt.timezone.utc))  # "the end of the topic now": later appends are not chased
        remaining = set(starts)
        quiet: dict = {}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=QUIET_MS)
            for tp in list(remaining):
                messages = batch.get(tp, [])
                picked += [m for m in messages if m.offset < stops[tp] and m.timestamp <= now_ms]
                if messages and (messages[-1].offset >= stops[tp] - 1 or messages[-1].timestamp > now_ms):
                    remaining.discard(tp)
                elif not messages:
                    quiet[tp] = quiet.get(tp, 0) + 1
                    if quiet[tp] >= 2 and await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
                else:
                    quiet[tp] = 0
        async with EventProducer(kafka_url, security=security) as producer:
            for m in picked:
                headers = [(k, v) for k, v in (m.headers or ()) if k != REPLAY_HEADER]
                headers.append((REPLAY_HEADER, f"{topic}/{m.partition}/{m.offset}".encode()))
                await producer.send_raw(result.target, m.key, m.value, headers)
                first, _ = result.ranges.get(m.partition, (m.offset, m.offset))
                result.ranges[m.partition] = (first, m.offset)
                result.republished += 1
    finally:
        await consumer.stop()
    return result
