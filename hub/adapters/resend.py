"""`hub resend`: republish a recipient's referrals and withdrawals from the ledger, from a sequence number on.

A subscriber that finds a gap in `sequence` asks for it again. The records are the stored ones,
with their original event ids (ce_id), so a subscriber that has some of them drops the repeats.
The ledger does not keep the identity code (the routing ledger's data-minimisation choice), so a
resent referral has `person_id` null; the recipient has the person_key and referral_id.
"""

from __future__ import annotations

from typing import Callable

from hub.adapters.kafka.producer import EventProducer
from hub.adapters.referral_ledger import ReferralLedger
from hub.schemas.topics import referral_topic


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
