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

`replay_dead_letters` (`hub dead-letters replay`) puts dead letters back on the topics they came from: each
original record's key, value bytes and Kafka headers as they came (the DeadLetter's `original_headers`),
with `hub_replay_of` naming where the original was.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Callable

from hub.domain.clock import utcnow
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


async def _read_range(consumer, topic: str, window: Range, partitions: list[int] | None) -> list:
    """The records of `topic` in `window` (the consumer started, not subscribed), in partition order."""
    from aiokafka import TopicPartition

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
    now_ms = _ms(utcnow())  # "the end of the topic now": later appends are not chased
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
    return picked


def _consumer(kafka_url: str, security: dict | None):
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(kafka_url), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                            **(security or {}))


DEFAULT_MAX_REQUEST = 1024 * 1024  # aiokafka's max_request_size


def _sized(security: dict | None, records) -> dict:
    """Producer options for republishing `records` ((key, value, headers) each): a request may be as large as
    the largest of them (they were on a topic before; the broker's own limit still applies)."""
    largest = max((len(k or b"") + len(v or b"") + sum(len(hk) + len(hv or b"") for hk, hv in h) for k, v, h in records), default=0)
    options = dict(security or {})
    options["max_request_size"] = max(DEFAULT_MAX_REQUEST, largest + 64 * 1024)
    return options


def replayed_headers(headers, replay_of: str) -> list[tuple[str, bytes | None]]:
    """`headers` as they came (order, repeats, values), an earlier `hub_replay_of` replaced by this one."""
    out = [(k, v) for k, v in (headers or ()) if k != REPLAY_HEADER]
    out.append((REPLAY_HEADER, replay_of.encode()))
    return out


async def replay(kafka_url: str, topic: str, window: Range, *, partitions: list[int] | None = None, target: str | None = None,
                 security: dict | None = None) -> ReplayResult:
    """Republish the records of `topic` in `window` onto `target` (default: the same topic).
    Raises ReplayRefused for a disclosing topic (source or target) before connecting."""
    check_replayable(topic)
    if target is not None:
        check_replayable(target, "target")

    from hub.adapters.kafka.producer import EventProducer

    result = ReplayResult(topic, target or topic)
    consumer = _consumer(kafka_url, security)
    await consumer.start()
    try:
        picked = await _read_range(consumer, topic, window, partitions)
        sized = _sized(security, [(m.key, m.value, m.headers or ()) for m in picked])
        async with EventProducer(kafka_url, security=sized) as producer:
            for m in picked:
                await producer.send_raw(result.target, m.key, m.value, replayed_headers(m.headers, f"{topic}/{m.partition}/{m.offset}"))
                first, _ = result.ranges.get(m.partition, (m.offset, m.offset))
                result.ranges[m.partition] = (first, m.offset)
                result.republished += 1
    finally:
        await consumer.stop()
    return result


@dataclass
class DeadLetterReplay:
    """What `replay_dead_letters` did: records put back per original topic, and dead letters left, per why."""

    read: int = 0
    republished: dict[str, int] = field(default_factory=dict)  # original topic -> records put back
    skipped: dict[str, int] = field(default_factory=dict)  # why -> dead letters not replayed

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


# why a dead letter in the range is not replayed (DeadLetterReplay.skipped)
NOT_SELECTED = "not_selected"  # another reason or original topic than asked for
NO_TOPIC = "no_topic"  # from a file or a DVV page: fix the data and ingest it again
DISCLOSING = "disclosing_topic"  # from a topic the hub discloses on: refused like `hub replay`
IN_DATABASE = "kept_in_database"  # its original is in the hub database, which was not given
UNDECODABLE = "not_a_dead_letter"  # a record on the dead-letter topic that is no DeadLetter


async def replay_dead_letters(kafka_url: str, window: Range, codec, *, partitions: list[int] | None = None, reason: str | None = None,
                              original_topic: str | None = None, kept: Callable[[int], dict | None] | None = None,
                              security: dict | None = None, dead_letters_topic: str | None = None) -> DeadLetterReplay:
    """Put the dead letters of hub.dead-letters.v1 in `window` back on the topics they came from: each original
    record's key, value bytes and Kafka headers as they came (`original_headers`, in order), with
    `hub_replay_of` = <original topic>/<partition>/<offset>, so the hub's processors handle it again after a
    fix (idempotent by event id, as `hub replay`). Only dead letters of `reason` / from `original_topic` when
    given. A dead letter whose original was too large for the topic is read back through `kept(row id)`
    (`hub.adapters.dead_letter_store.DeadLetterStore.get`); without it, it is skipped. Dead letters of files
    and of topics the hub discloses on are skipped, counted by why (`DeadLetterReplay.skipped`)."""
    from hub.adapters.dead_letter_store import row_id_of
    from hub.adapters.kafka.producer import EventProducer
    from hub.schemas import topics
    from hub.schemas.codec import CodecError
    from hub.schemas.envelope import kafka_headers

    source = dead_letters_topic or topics.DEAD_LETTERS
    result = DeadLetterReplay()
    consumer = _consumer(kafka_url, security)
    await consumer.start()
    try:
        picked = await _read_range(consumer, source, window, partitions)
    finally:
        await consumer.stop()
    sends = []
    for m in picked:
        result.read += 1
        try:
            dead = codec.decode(m.value, "DeadLetter", check_bounds=False).record
        except CodecError:
            result.skip(UNDECODABLE)
            continue
        topic = dead.get("original_topic")
        if (reason is not None and dead["reason"] != reason) or (original_topic is not None and topic != original_topic):
            result.skip(NOT_SELECTED)
            continue
        if not topic:
            result.skip(NO_TOPIC)
            continue
        try:
            check_replayable(topic, "target")
        except ReplayRefused:
            result.skip(DISCLOSING)
            continue
        key, value = dead.get("original_key"), dead["original_value"]
        row_id = row_id_of(dead.get("location"))
        if row_id is not None:
            row = kept(row_id) if kept is not None else None
            if row is None:
                result.skip(IN_DATABASE)
                continue
            key, value = row["original_key"], row["original_value"]
        where = f"{topic}/{dead.get('original_partition')}/{dead.get('original_offset')}"
        sends.append((topic, key, value, replayed_headers(kafka_headers(dead.get("original_headers")), where)))
    if sends:
        async with EventProducer(kafka_url, security=_sized(security, [(k, v, h) for _, k, v, h in sends])) as producer:
            for topic, key, value, headers in sends:
                await producer.send_raw(topic, key, value, headers)
                result.republished[topic] = result.republished.get(topic, 0) + 1
    return result
