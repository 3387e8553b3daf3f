"""`hub resend` and `hub gaps`: a recipient's per-recipient streams, each numbered by `sequence`
(hub.schemas.topics.STREAMS): referrals (with their withdrawals) from the referral ledger, plan
requests and notices from the outbox.

A subscriber that finds a gap in `sequence` asks for it again. The records are the stored ones,
with their original event ids (ce_id), so a subscriber that has some of them drops the repeats.
- referrals: the ledger does not keep the identity code (the routing ledger's data-minimisation
  choice), so a resent referral has `person_id` null; the recipient has the person_key and referral_id.
- plan requests and notices: the outbox row's bytes and CloudEvents headers as the relay sent them
  (signed again when the hub signs). The relay numbers a row when it sends it, so a plan request
  withdrawn before it was sent has no number; one withdrawn after a failed send gave its number
  back or passed it to a later record (hub.adapters.outbox.release_number), so the number stands
  for the record sent with it. A number that is not sent again is said why (`Resent.skipped`): not
  sent yet (numbered, its send failed: the relay sends it), parked, withdrawn while later numbers
  were given and no unsent record could take its number (it stays unused), or a plan request whose
  consent or legal basis no longer holds (it is not disclosed again). Rows that retention removed
  are no longer there.

`read_sequences` is the recipient's side: the sequence numbers on its own topic of a stream, which
`gaps` turns into the missing ranges (what `hub gaps` prints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy.orm import sessionmaker

from hub.domain.clock import utcnow
from hub.adapters import outbox
from hub.adapters.kafka.producer import EventProducer
from hub.adapters.kafka.security import bootstrap_servers
from hub.adapters.referral_ledger import ReferralLedger
from hub.schemas.codec import Codec, CodecError, default_codec
from hub.schemas.topics import referral_topic, stream_topic

QUIET_MS = 700  # a partition with nothing for two polls this long, at or past its listed end, is read to its end

NOT_SENT_YET = "not sent yet (the outbox relay sends it)"


async def resend(
    ledger: ReferralLedger,
    kafka_url: str,
    recipient: str,
    from_sequence: int,
    to_sequence: int | None = None,
    topic_for: Callable[[str], str] = referral_topic,
    security: dict | None = None,
) -> list[int]:
    """Republish (referrals and withdrawals, in sequence order) and wait for the broker's acks;
    returns the sequence numbers sent."""
    topic = topic_for(recipient)  # raises ValueError for a malformed authority id
    records = ledger.published_from(recipient, from_sequence, to_sequence)
    async with EventProducer(kafka_url, ledger.codec, security) as producer:
        for name, record in records:
            await producer.send_event(topic, name, record, key=record["person_key"])
    return [r["sequence"] for _, r in records]


@dataclass
class Resent:
    """What `resend_outbox` did: the numbers sent again, and why the others in the range were not."""

    topic: str
    sent: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # sequence -> why it was not sent again


def outbox_to_resend(sessions: sessionmaker, recipient: str, stream: str, from_sequence: int, to_sequence: int | None = None, *,
                     why_not: Callable[[dict], str | None] | None = None, codec: Codec | None = None) -> tuple[list[outbox.OutboxMessage], dict[int, str]]:
    """The recipient's sent rows of `stream` (plan-requests or notices) in the range, in sequence order,
    and the reason of each row in the range that is not to be sent again. `why_not(plan)`: whether a
    plan request may still be disclosed (hub.adapters.disclosure_check.DisclosureCheck.why_not)."""
    codec = codec or default_codec()
    with sessions() as s:
        rows = outbox.sent_in_stream(s, recipient, stream, from_sequence, to_sequence)
        s.expunge_all()
    out, skipped = [], {}
    for row in rows:
        if row.sent_at is None and row.parked_at is not None:
            kept = row.parked_reason in outbox.UNSENDABLE
            skipped[row.sequence] = (f"parked ({row.parked_reason}): `hub outbox retry {row.id}` after the cause is fixed" if kept
                                     else f"withdrawn before it was sent ({row.parked_reason}): never sent; later numbers were given first and "
                                          "no unsent record could take its number, so it stays unused")
            continue
        if row.sent_at is None:
            skipped[row.sequence] = NOT_SENT_YET
            continue
        if row.schema_name == "PlanRequest" and why_not is not None:
            try:
                reason = why_not(codec.decode(row.value, "PlanRequest").record)
            except CodecError as exc:
                reason = f"undecodable ({exc.reason})"
            if reason is not None:
                skipped[row.sequence] = f"not disclosed again: its consent or legal basis no longer holds ({reason})"
                continue
        out.append(row)
    return out, skipped


async def resend_outbox(sessions: sessionmaker, kafka_url: str, recipient: str, stream: str, from_sequence: int, to_sequence: int | None = None, *,
                        why_not: Callable[[dict], str | None] | None = None, sign: Callable[[list, bytes], list] | None = None,
                        topic_for: Callable[[str, str], str] = stream_topic, security: dict | None = None) -> Resent:
    """Republish the recipient's plan requests or notices from the outbox, in sequence order, and wait
    for the broker's acks (bytes, key and headers as the relay sent them; `sign` signs them again)."""
    topic = topic_for(stream, recipient)  # raises ValueError for an unknown stream or a malformed authority id
    rows, skipped = outbox_to_resend(sessions, recipient, stream, from_sequence, to_sequence, why_not=why_not)
    result = Resent(topic, skipped=skipped)
    if rows:
        async with EventProducer(kafka_url, security=security) as producer:
            for row in rows:
                headers = row.header_list()
                if sign is not None:
                    headers = sign(headers, row.value)
                await producer.send_raw(topic, row.key, row.value, headers)
                result.sent.append(row.sequence)
    return result


async def read_sequences(kafka_url: str, topic: str, *, codec: Codec | None = None, security: dict | None = None) -> tuple[list[int], int, bool]:
    """The `sequence` of every record on `topic` now, from its start (the recipient's own view); how
    many records had none (written before the stream was numbered, or undecodable); and whether the
    topic's start was removed (retention: its first offset is past 0). LookupError when the topic
    does not exist."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    codec = codec or default_codec()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(kafka_url), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                                **(security or {}))
    await consumer.start()
    sequences, unnumbered = [], 0
    try:
        if topic not in await consumer.topics():
            raise LookupError(f"topic {topic!r} does not exist on the broker (nothing was sent to this recipient on this stream yet, or check the id)")
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        trimmed = any(offset > 0 for offset in begin.values())
        now_ms = int(utcnow().timestamp() * 1000)
        remaining, quiet = set(tps), {}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=QUIET_MS)
            for tp in list(remaining):
                messages = batch.get(tp, [])
                for m in messages:
                    if m.timestamp > now_ms:
                        continue  # appended after the check began: not chased
                    try:
                        sequence = codec.decode(m.value).record.get("sequence")
                    except CodecError:
                        sequence = None
                    if sequence:
                        sequences.append(sequence)
                    else:
                        unnumbered += 1
                if messages and messages[-1].timestamp > now_ms:
                    remaining.discard(tp)
                elif not messages:
                    # the end is found by reading until quiet, not from the listed end alone (the embedded
                    # broker under-reports it for batched records)
                    quiet[tp] = quiet.get(tp, 0) + 1
                    if quiet[tp] >= 2 and await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
                else:
                    quiet[tp] = 0
    finally:
        await consumer.stop()
    return sequences, unnumbered, trimmed


def gaps(sequences, first: int = 1) -> list[tuple[int, int]]:
    """Missing ranges (inclusive) in a recipient's received sequence numbers, counting from `first`.

    What a subscriber runs to decide `hub resend --from-seq`; repeats are harmless.
    """
    have = sorted(set(sequences))
    out, expected = [], first
    for n in have:
        if n > expected:
            out.append((expected, n - 1))
        expected = max(expected, n + 1)
    return out
