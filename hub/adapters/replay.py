"""`hub replay`: reprocess a range of a topic by republishing its records onto the same topic.

The records go back unchanged (key, value bytes, headers incl. ce_id) with one more header,
`hub_replay_of` = "<topic>/<partition>/<offset>", so the hub's processors consume them again.
Every processor is idempotent by event id (the routing ledger's processed_events, the newcomer
detector's per-person seen ids), so a replay re-does what was lost and duplicates nothing: a
newcomer routed before makes no second referral; a referral recorded but never published is
published now (the ledger's outbox).

Only topics the hub consumes are replayed. The per-recipient topics (referrals, plan requests,
notices) are what the hub discloses: republishing them would disclose again with no decision and no
audit row, after a revocation too. `replay` refuses them (`ReplayRefused`, naming the topic and what
to do instead), as the source and as the target.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from hub.adapters.kafka.security import bootstrap_servers

REPLAY_HEADER = "hub_replay_of"
QUIET_MS = 700
UNBOUNDED = 2**63


# what to do instead, per kind of disclosing topic (hub.schemas.topics: hub.<kind>.<authority kind>.<code>.v1)
_DISCLOSING = re.compile(r"^hub\.(referrals|plan-requests|notices)(\.|$)")
_INSTEAD = {
    "referrals": "to fill a recipient's gap use `hub resend --recipient AUTHORITY --from-seq N` (from the ledger); "
                 "to redo routing replay hub.newcomers.v1",
    "plan-requests": "to redo consent decisions replay hub.assessments.v1 (each plan request is then decided against the consent "
                     "registry and audited); a plan request committed but not yet published is sent by the worker's outbox relay",
    "notices": "to redo consent decisions replay hub.assessments.v1 or hub.consents.v1; a notice committed but not yet published is "
               "sent by the worker's outbox relay",
}


class ReplayRefused(ValueError):
    """The topic is one the hub discloses on: a replay would disclose again without a decision or an audit row."""


def check_replayable(topic: str, role: str = "source") -> None:
    """Raise ReplayRefused when `topic` is a per-recipient (disclosing) topic."""
    m = _DISCLOSING.match(topic)
    if m:
        raise ReplayRefused(
            f"hub replay refuses {topic} as its {role}: it carries what the hub discloses to a recipient, and a replay would "
            f"disclose it again without a consent decision or an audit row; {_INSTEAD[m.group(1)]}"
        )


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


def _at_or_after(found, from_ms: int) -> bool:
    """Whether the broker's answer to "the first offset at or after this time" names a record. Kafka
    answers nothing for a time after the newest record; the embedded broker answers offset 0 with
    timestamp -1, which taken as is replayed the whole partition. An answer counts only when the
    record it names is not older than the time asked for. (Not checked against the listed end
    offset: the embedded broker under-reports it for batched records.)"""
    return found is not None and found.offset >= 0 and found.timestamp is not None and found.timestamp >= from_ms


async def replay(kafka_url: str, topic: str, window: Range, *, partitions: list[int] | None = None, target: str | None = None,
                 security: dict | None = None) -> ReplayResult:
    """Republish the records of `topic` in `window` onto `target` (default: the same topic).
    Raises ReplayRefused for a disclosing topic (source or target) before connecting."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    check_replayable(topic)
    if target is not None:
        check_replayable(target, "target")

    from hub.adapters.kafka.producer import EventProducer

    result = ReplayResult(topic, target or topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(kafka_url), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
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
        from_ms = _ms(window.from_time) if window.from_time is not None else None
        for tp in tps:
            if window.from_time is not None:
                found = by_time.get(tp)
                if not _at_or_after(found, from_ms):
                    continue  # no record at or after --from-time in this partition: nothing to replay
                start = found.offset
            else:
                start = max(window.from_offset, begin[tp])
            stop = UNBOUNDED
            if window.to_offset is not None:
                stop = window.to_offset + 1
            if window.to_time is not None and until.get(tp) is not None:
                stop = min(stop, until[tp].offset)
            if start < stop:
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
                picked += [m for m in messages if m.offset < stops[tp] and m.timestamp <= now_ms and (from_ms is None or m.timestamp >= from_ms)]
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
