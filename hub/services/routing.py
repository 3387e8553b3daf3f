"""Route newcomers to the authorities responsible for them, and apply the authorities' referral statuses.

Routing a batch: each newcomer is checked and routed by the pure engine (`hub.routing.engine.route`),
the batch's decisions recorded in the ledger in one transaction (idempotent: a newcomer seen before
is a duplicate and creates nothing), every referral to publish sent, and the ledger told they are
published only after the broker acknowledged them all. A crash anywhere reads the batch again and
the ledger sends again exactly what was not marked published. A referral the batch superseded is
withdrawn: its old recipient gets a ReferralWithdrawn on the same topic, after the event's referrals.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Sequence

from hub.domain.clock import FutureDate, check_not_future
from hub.routing.engine import route
from hub.routing.model import InputError, RoutingInput
from hub.routing.reference import Reference, default_reference
from hub.routing.rules import Rules, default_rules
from hub.services.ports import Clock, Consumed, DeadLetters, Ledger, Publisher
from hub.schemas import topics


@dataclass
class Routed:
    """What routing a batch did."""

    routed: int = 0  # newcomers recorded in the ledger, duplicates included
    duplicates: int = 0  # newcomers the ledger had recorded before
    published: int = 0  # referrals sent and marked published
    withdrawn: int = 0  # withdrawals of superseded referrals sent and marked published
    created: list[dict] = field(default_factory=list)  # referrals created by this batch
    withdrawals: list[dict] = field(default_factory=list)  # withdrawals of referrals this batch superseded
    waits: list[float] = field(default_factory=list)  # seconds from registration to referral, per newcomer with new referrals
    changed: set[str] = field(default_factory=set)  # authorities whose open/overdue counts changed


@dataclass(frozen=True)
class StatusApplied:
    """What applying one referral status did: `code` is applied or duplicate, or the reason its dead letter carries."""

    code: str
    message: str = ""
    changed: str | None = None  # the authority whose open/overdue counts changed
    assessment_seconds: float | None = None  # referral to completed initial assessment, when this status completed one

    @property
    def accepted(self) -> bool:
        return self.code in ("applied", "duplicate")


class Routing:
    """The use cases "route a batch of newcomers" and "apply a referral status" over their ports."""

    def __init__(self, ledger: Ledger, publisher: Publisher, *, clock: Clock, skew: dt.timedelta, rules: Rules | None = None,
                 reference: Reference | None = None, topic_for: Callable[[str], str] = topics.referral_topic) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.clock = clock
        self.skew = skew
        self.rules = rules or default_rules()
        self.reference = reference or default_reference()
        self.topic_for = topic_for

    async def route_batch(self, newcomers: Sequence[Consumed], dead_letters: DeadLetters) -> Routed:
        """Route `newcomers` (decoded Newcomer records, in offset order); a newcomer the engine
        cannot route is dead-lettered with its reason code. Returns once every referral and dead
        letter exists and the ledger says so."""
        now = self.clock()
        routed = []  # (record, newcomer, decisions) in offset order
        for item in newcomers:
            try:  # plain calls per record; a coroutine only for a dead letter
                newcomer = RoutingInput.from_record(item.record)
                check_not_future(newcomer.occurred_at, now, skew=self.skew)
                if not newcomer.person_key:
                    raise InputError("missing_person_key", "the Newcomer has an empty person_key; the detector must set the pseudonymous key")
                decisions = route(newcomer, self.rules, self.reference)
            except InputError as exc:
                await dead_letters.send(item.source, exc.reason, exc.message)
                continue
            except FutureDate as exc:
                await dead_letters.send(item.source, exc.reason, f"Newcomer: {exc.message}")
                continue
            routed.append((item.record, newcomer, decisions))
        await dead_letters.kept()
        out = Routed()
        if not routed:
            return out
        done = await self.ledger.record_many([(n, d) for _, n, d in routed], now)
        acks, published = [], []
        for (record, newcomer, _), recorded in zip(routed, done):
            for referral in recorded.to_publish:
                # the identity code is stored nowhere in the ledger; it travels from the newcomer
                referral = dict(referral, person_id=record.get("person_id"))
                acks.append(await self.publisher.publish(self.topic_for(referral["to"]), "Referral", referral, newcomer.person_key))
                published.append(referral["referral_id"])
            for withdrawal in recorded.withdrawals:  # after the referrals: each took a later sequence number of its recipient
                acks.append(await self.publisher.publish(self.topic_for(withdrawal["to"]), "ReferralWithdrawn", withdrawal, withdrawal["person_key"]))
                published.append(withdrawal["event_id"])
                out.withdrawn += 1
        await asyncio.gather(*acks)  # delivered (acks=all) before the ledger says so
        await self.ledger.mark_published(published, now)
        out.routed, out.published = len(routed), len(published) - out.withdrawn
        for (_, newcomer, _), recorded in zip(routed, done):
            out.created.extend(recorded.created)
            if not recorded.duplicate:
                out.withdrawals.extend(recorded.withdrawals)
            if recorded.created and newcomer.occurred_at is not None:
                out.waits.append(max(0.0, (now - newcomer.occurred_at).total_seconds()))
            out.duplicates += recorded.duplicate
            out.changed.update(r["to"] for r in recorded.created)
            out.changed.update(recorded.superseded_authorities)
        return out

    async def apply_status(self, status: Consumed, dead_letters: DeadLetters) -> StatusApplied:
        """Apply one decoded ReferralStatus to the ledger; a status it refuses (unknown referral, an
        authority not the referral's, a transition not allowed, a future date) is dead-lettered."""
        record = status.record
        applied = await self._apply(record)
        if not applied.accepted:
            await dead_letters.send(status.source, applied.code, applied.message)
        return applied

    async def _apply(self, record: dict) -> StatusApplied:
        now = self.clock()
        try:
            check_not_future(record.get("occurred_at"), now, skew=self.skew)
        except FutureDate as exc:
            return StatusApplied(exc.reason, f"ReferralStatus: {exc.message}")
        outcome = await self.ledger.apply_status(record, now)
        if not outcome.accepted or outcome.code != "applied":
            return StatusApplied(outcome.code, outcome.message)
        seconds = None
        if outcome.state == "completed" and outcome.purpose == "initial_assessment" and outcome.referral_created_at is not None:
            seconds = _seconds_between(outcome.referral_created_at, record.get("occurred_at") or now)
        return StatusApplied(outcome.code, outcome.message, changed=record["authority"], assessment_seconds=seconds)


def _seconds_between(start: dt.datetime, end: dt.datetime) -> float:
    # SQLite gives back naive datetimes: the ledger writes UTC
    start, end = (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc) for t in (start, end))
    return max(0.0, (end - start).total_seconds())
