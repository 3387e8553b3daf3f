"""Route newcomers to the authorities responsible for them, and apply the authorities' referral statuses.

Routing a batch: each newcomer is checked and routed by the pure engine (`hub.routing.engine.route`),
the batch's decisions recorded in the ledger in one transaction (idempotent: a newcomer seen before
is a duplicate and creates nothing), every referral to publish sent, and the ledger told they are
published only after the broker acknowledged them all. A crash anywhere reads the batch again and
the ledger sends again exactly what was not marked published: referrals, withdrawals of the
referrals an update superseded, and due-date updates of the open referrals it kept (ReferralUpdated).

With a circumstances port, routing also keeps each person's circumstances (`hub.routing.circumstances`):
the facts other authorities report (RoutingFact records, read with the newcomers) and the person's
last Newcomer. A Newcomer is routed with the stored facts laid over its own; a fact updates the
person's facts and, once the person's Newcomer is known, routes the person again (change
`circumstances`); before that, the fact waits for the Newcomer. A batch's records are taken in
order: a later record sees what the earlier ones changed. The batch's circumstances are written
while its referrals are recorded (two transactions, both done before anything is published); a
crash or a failure of either redoes both (facts are taken in order-free, a routing event's referrals
are recorded once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Sequence

from hub.domain.clock import FutureDate, check_not_future
from hub.routing import circumstances as person_circumstances
from hub.routing.engine import route
from hub.routing.model import InputError, RoutingInput
from hub.routing.reference import Reference, default_reference
from hub.routing.rules import Rules, default_rules
from hub.services.ports import Clock, Consumed, DeadLetters, Ledger, PersonCircumstances, Publisher, StoredCircumstances
from hub.schemas import topics


@dataclass
class Routed:
    """What routing a batch did."""

    routed: int = 0  # newcomers recorded in the ledger, duplicates included
    duplicates: int = 0  # newcomers the ledger had recorded before
    published: int = 0  # referrals sent and marked published
    withdrawn: int = 0  # withdrawals of superseded referrals sent and marked published
    updated: int = 0  # due-date updates of open referrals sent and marked published
    created: list[dict] = field(default_factory=list)  # referrals created by this batch
    withdrawals: list[dict] = field(default_factory=list)  # withdrawals of referrals this batch superseded
    updates: list[dict] = field(default_factory=list)  # due-date updates of open referrals this batch made
    waits: list[float] = field(default_factory=list)  # seconds from registration to referral, per newcomer with new referrals
    changed: set[str] = field(default_factory=set)  # authorities whose open/overdue counts changed
    facts_routed: int = 0  # RoutingFacts that routed their person again, duplicates included (not in `routed`)
    facts_duplicates: int = 0  # of those, the routing events the ledger had recorded before
    facts_kept: int = 0  # RoutingFacts kept until their person's Newcomer arrives


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
                 reference: Reference | None = None, topic_for: Callable[[str], str] = topics.referral_topic,
                 circumstances: PersonCircumstances | None = None) -> None:
        self.ledger = ledger
        self.circumstances = circumstances  # None: newcomers are routed as they are, no RoutingFact is taken
        self.publisher = publisher
        self.clock = clock
        self.skew = skew
        self.rules = rules or default_rules()
        self.reference = reference or default_reference()
        self.topic_for = topic_for

    async def route_batch(self, newcomers: Sequence[Consumed], dead_letters: DeadLetters) -> Routed:
        """Route `newcomers` (decoded Newcomer records and, with a circumstances port, RoutingFact
        records, `Consumed.name`, in the order read); a record that cannot be routed is dead-lettered
        with its reason code. Returns once every referral and dead letter exists and the ledger says so."""
        now = self.clock()
        people = _People(self.circumstances, await self._stored(newcomers))
        routed = []  # (person_id, routing input, decisions, from a fact) in order
        out = Routed()
        for item in newcomers:
            seen = None  # the Newcomer as it came, kept as the person's snapshot once routed
            try:  # plain calls per record; a coroutine only for a dead letter
                if item.name == ROUTING_FACT:
                    newcomer = people.fact(item.record, now, self.skew)
                    if newcomer is None:
                        out.facts_kept += 1
                        continue
                else:
                    seen = RoutingInput.from_record(item.record)
                    check_not_future(seen.occurred_at, now, skew=self.skew)
                    if not seen.person_key:
                        raise InputError("missing_person_key", "the Newcomer has an empty person_key; the detector must set the pseudonymous key")
                    newcomer = people.merged(seen)
                decisions = route(newcomer, self.rules, self.reference)
            except InputError as exc:
                await dead_letters.send(item.source, exc.reason, exc.message if item.name != ROUTING_FACT else f"RoutingFact: {exc.message}")
                continue
            except FutureDate as exc:
                await dead_letters.send(item.source, exc.reason, f"{item.name or 'Newcomer'}: {exc.message}")
                continue
            if seen is not None:
                people.keep(seen)
            routed.append((item.record.get("person_id"), newcomer, decisions, item.name == ROUTING_FACT))
        await dead_letters.kept()
        if not routed:
            await people.write(now)
            return out
        # the circumstances and the referrals at once (other tables, other connections): returns when
        # both are done, raising the first failure; a crash or a failure of either redoes both
        written, done = await asyncio.gather(people.write(now), self.ledger.record_many([(n, d) for _, n, d, _ in routed], now),
                                             return_exceptions=True)
        for result in (written, done):
            if isinstance(result, BaseException):
                raise result
        acks, published = [], []
        for (person_id, newcomer, _, _), recorded in zip(routed, done):
            for referral in recorded.to_publish:
                # the identity code is stored nowhere in the ledger; it travels from the newcomer or the fact
                referral = dict(referral, person_id=person_id)
                acks.append(await self.publisher.publish(self.topic_for(referral["to"]), "Referral", referral, newcomer.person_key))
                published.append(referral["referral_id"])
            for withdrawal in recorded.withdrawals:  # after the referrals: each took a later sequence number of its recipient
                acks.append(await self.publisher.publish(self.topic_for(withdrawal["to"]), "ReferralWithdrawn", withdrawal, withdrawal["person_key"]))
                published.append(withdrawal["event_id"])
                out.withdrawn += 1
            for update in recorded.updates:  # after the withdrawals, in the same order of sequence numbers
                acks.append(await self.publisher.publish(self.topic_for(update["to"]), "ReferralUpdated", update, update["person_key"]))
                published.append(update["event_id"])
                out.updated += 1
        await asyncio.gather(*acks)  # delivered (acks=all) before the ledger says so
        await self.ledger.mark_published(published, now)
        out.published = len(published) - out.withdrawn - out.updated
        for (_, newcomer, _, from_fact), recorded in zip(routed, done):
            if from_fact:
                out.facts_routed += 1
                out.facts_duplicates += recorded.duplicate
            else:
                out.routed += 1
                out.duplicates += recorded.duplicate
                if recorded.created and newcomer.occurred_at is not None:
                    out.waits.append(max(0.0, (now - newcomer.occurred_at).total_seconds()))
            out.created.extend(recorded.created)
            if not recorded.duplicate:
                out.withdrawals.extend(recorded.withdrawals)
                out.updates.extend(recorded.updates)
            out.changed.update(r["to"] for r in recorded.created)
            out.changed.update(recorded.superseded_authorities)
        return out

    async def _stored(self, items: Sequence[Consumed]) -> dict[str, StoredCircumstances]:
        if self.circumstances is None:
            return {}
        keys = {k for item in items for name in ("person_key", "previous_person_key") if isinstance(k := item.record.get(name), str) and k}
        return await self.circumstances.get_many(sorted(keys)) if keys else {}

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


ROUTING_FACT = "RoutingFact"


class _People:
    """The circumstances of one batch's persons: what was stored, and what the batch changed so far
    (a later record of the batch sees the earlier ones' changes)."""

    def __init__(self, store: PersonCircumstances | None, stored: dict[str, StoredCircumstances]) -> None:
        self.store = store
        self.stored = stored
        self.pending: dict[str, StoredCircumstances] = {}

    def _row(self, key: str) -> StoredCircumstances | None:
        return self.pending.get(key) or self.stored.get(key)

    def fact(self, record: dict, now, skew) -> RoutingInput | None:
        """Take in one RoutingFact: the person's routing input to route again, or None while the
        person's Newcomer is not known (the fact is kept). Raises InputError, FutureDate."""
        if self.store is None:
            raise InputError("unexpected_schema", "this routing takes no RoutingFact (no circumstances store); route newcomers only")
        fact = person_circumstances.Fact.from_record(record)
        check_not_future(fact.occurred_at, now, skew=skew)
        if not isinstance(record.get("person_id"), str):
            raise InputError("invalid_person_id", "the RoutingFact has no person_id; the fact intake copies it from the input record")
        row = self._row(fact.person_key)
        facts = person_circumstances.apply(person_circumstances.decode(row.facts if row else None), fact)
        snapshot = row.newcomer if row else None
        self.pending[fact.person_key] = StoredCircumstances(person_circumstances.encode(facts), snapshot)
        if snapshot is None:
            return None
        return person_circumstances.circumstances_input(person_circumstances.decode_newcomer(snapshot), facts, fact)

    def _facts(self, newcomer: RoutingInput) -> person_circumstances.Circumstances:
        """The person's stored facts; after an identity-code correction, joined with those kept
        under the replaced code's key."""
        row = self._row(newcomer.person_key)
        facts = person_circumstances.decode(row.facts if row else None)
        old_key = newcomer.previous_person_key
        if old_key and old_key != newcomer.person_key and (old := self._row(old_key)) is not None:
            facts = person_circumstances.combine(facts, person_circumstances.decode(old.facts))
        return facts

    def merged(self, newcomer: RoutingInput) -> RoutingInput:
        """The Newcomer with the person's stored facts laid over its own."""
        if self.store is None:
            return newcomer
        return person_circumstances.merge(newcomer, self._facts(newcomer))

    def keep(self, newcomer: RoutingInput) -> None:
        """Keep the routed Newcomer (as it came, without the facts) as the person's snapshot. After an
        identity-code correction the facts move to the corrected code's key: the replaced key's row is
        emptied (no facts, no snapshot), so a late fact under the replaced code waits there and routes
        nobody again under a code no longer in use."""
        if self.store is None:
            return
        facts = person_circumstances.encode(self._facts(newcomer))
        old_key = newcomer.previous_person_key
        if old_key and old_key != newcomer.person_key and self._row(old_key) is not None:
            self.pending[old_key] = StoredCircumstances(person_circumstances.encode(person_circumstances.Circumstances()), None)
        self.pending[newcomer.person_key] = StoredCircumstances(facts, person_circumstances.encode_newcomer(newcomer))

    async def write(self, now) -> None:
        if self.store is not None and self.pending:
            await self.store.write(self.pending, now)


def _seconds_between(start: dt.datetime, end: dt.datetime) -> float:
    # SQLite gives back naive datetimes: the ledger writes UTC
    start, end = (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc) for t in (start, end))
    return max(0.0, (end - start).total_seconds())
