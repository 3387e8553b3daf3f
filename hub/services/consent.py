"""Use cases of the consent registry, each in ONE database transaction: record a consent event,
handle a completed assessment, sweep for expiries and consents that became valid.

Everything a use case sends (plan requests, notices, consent events) goes into the outbox in the
same transaction as the state change and the audit row; the outbox relay publishes it afterwards.
The transaction is a unit of work (`hub.services.ports.ConsentUnitOfWork`): the hub database's
(hub.adapters.consent_uow) in the worker and the CLI, an in-memory one in unit tests.
The agents (hub.streams.consent_agents) and the CLI (hub.commands.consent) both call these.

Plan requests and notices are numbered per recipient and stream (`sequence`, 1, 2, ... for each
recipient's plan requests and, apart, its notices), so a recipient can find a gap and ask for it
again (`hub gaps`, `hub resend`). A use case collects what it sends and puts it into the outbox at
the end of its transaction (`_send`), in the order it made them, each numbered one with its
recipient and stream; the outbox relay gives it its number when it sends it
(hub.adapters.outbox.number), so a plan request withdrawn before it was sent takes none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from hub.consent import model, records
from hub.domain import hetu
from hub.domain.clock import iso_utc, utcnow
from hub.schemas import topics
from hub.schemas.codec import Codec, default_codec
from hub.schemas.envelope import cloudevent_headers
from hub.services.ports import ConsentUnitOfWork

# what the registry sends numbered per recipient: schema -> stream (hub.schemas.topics.STREAMS)
NUMBERED = {name: topics.STREAM_OF_SCHEMA[name] for name in ("PlanRequest", "Notice")}
CONSUMER_CONSENTS = "consent-registry"
CONSUMER_ASSESSMENTS = "consent-assessments"
HUB = "integration-hub"  # the default HUB_APP_ID: recorded_by of what the registry records itself (an expiry found by the sweep)


@dataclass
class Outcome:
    """What one use case did (for metrics, the CLI's reply and tests)."""

    duplicate: bool = False
    disclosed: list[tuple[str, tuple[str, ...], dt.datetime]] = field(default_factory=list)  # recipient, categories, assessed at
    own_plans: list[tuple[str, dt.datetime]] = field(default_factory=list)  # plan requests to the assessor itself (no disclosure): recipient, assessed at
    held: list[str] = field(default_factory=list)  # hold reasons
    released: int = 0
    notices: list[tuple[str, str]] = field(default_factory=list)  # notice type, recipient
    recorded: list[str] = field(default_factory=list)  # consent event actions recorded
    already_ended: model.ConsentRecord | None = None  # an end of a consent that had ended: the record that ended it


@dataclass
class _Message:
    """A record the use case sends; `then(outbox_id)` runs once it is in the outbox."""

    topic: str
    name: str
    record: dict
    key: str | None
    now: dt.datetime
    then: Callable[[int], None] | None = None


class _Tx:
    """One transaction of a use case: its unit of work, and the messages it sends, put into the outbox
    (numbered) when it commits (`ConsentRegistry._commit`). The audit row of a plan request is added
    with its outbox row, then: no step of a use case reads it back in the same transaction."""

    def __init__(self, uow: ConsentUnitOfWork):
        self.uow = uow
        self.consents, self.audit, self.processed = uow.consents, uow.audit, uow.processed
        self.messages: list[_Message] = []


class ConsentRegistry:
    """The consent registry's use cases over units of work (`units()` starts one transaction) and the codec."""

    def __init__(self, units: Callable[[], ConsentUnitOfWork], *, legal_bases: Sequence[model.LegalBasis] = (), person_key_secret: str,
                 codec: Codec | None = None, clock: Callable[[], dt.datetime] = utcnow, recorded_by: str = HUB):
        self.units = units
        self.recorded_by = recorded_by  # the hub's app id: who the records the registry makes itself (expiries) are recorded by
        self.legal_bases = tuple(legal_bases)
        self.person_key_secret = person_key_secret
        self.codec = codec or default_codec()
        self.clock = clock

    # -- use cases ---------------------------------------------------------------------------
    def record_consent(self, rec: model.ConsentRecord, *, publish: bool = False) -> Outcome:
        """Append a consent event; a grant releases the held items it covers (in order), a revocation or
        expiry notifies each earlier recipient under that consent. `publish` also puts the Consent
        event on hub.consents.v1 (the CLI's path; the agent consumed it from there already).

        A consent is this person's consent with this id. A second grant of it raises InvalidConsent
        (`consent_ended` once it was revoked or expired, else `consent_id_in_use`): its scope is the
        first grant's, and an ended consent stays ended. A second end (revocation or expiry) of an ended
        consent appends nothing: it is a duplicate with `already_ended` set to the record that ended it.
        Events of a consent whose history retention removed meet its tombstone: a grant raises
        `consent_ended`, an end is a duplicate."""
        now = self.clock()
        out = Outcome()
        refusal = None
        key = self._person_key(rec.person_id)
        with self._applying(CONSUMER_CONSENTS, rec.event_id, key, out) as uow:
            if uow is None:
                return out
            # a refusal commits the event's mark (and the tombstone's last_seen_at) and nothing else: it is final
            tombstone = uow.consents.tombstone(key, rec.consent_id, now)
            known = model.current_consents(uow.consents.history(key)).get(rec.consent_id) if tombstone is None else None
            if tombstone is not None and rec.action != model.GRANTED:
                out.duplicate = True
            elif tombstone is not None:
                refusal = model.InvalidConsent("consent_ended", _ended_message(rec.consent_id, tombstone))
            elif rec.action == model.GRANTED and known is not None and known.ended_by is not None:
                refusal = model.InvalidConsent("consent_ended", _ended_message(rec.consent_id, known.ended_by.action))
            elif rec.action != model.GRANTED and known is not None and known.ended_by is not None:
                out.duplicate, out.already_ended = True, known.ended_by  # its recipients were told when it ended
            elif rec.action == model.GRANTED and known is not None:
                refusal = model.InvalidConsent("consent_id_in_use", f"consent {rec.consent_id} of this person is recorded already "
                                               "(a consent's scope is its first grant's); a new or wider consent needs a new consent id")
            else:
                self._append(uow, rec, key, now, publish, out)
        if refusal is not None:
            raise refusal
        return out

    def handle_assessment(self, assessment: model.Assessment, encoded: bytes) -> Outcome:
        """Disclose (plan request + audit row) or hold (held item + consent-required notice to the assessor).
        When the assessor makes the plan itself nothing is disclosed: the plan request goes to it, and
        its row in the plan-request ledger says it was no disclosure (`hub audit` does not list it).
        An assessment whose person_key is not its person_id's key raises InvalidConsent `person_key_mismatch`."""
        records.check_person_key(assessment.person_id, assessment.person_key, self.person_key_secret)
        now = self.clock()
        out = Outcome()
        key = self._person_key(assessment.person_id)
        with self._applying(CONSUMER_ASSESSMENTS, assessment.event_id, key, out) as uow:
            if uow is None:
                return out
            decision = model.decide(assessment, uow.consents.history(key), self.legal_bases, now)
            if isinstance(decision, (model.Disclose, model.OwnPlan)):
                self._disclose(uow, assessment, decision, now, out)
                self._hold_consent_only(uow, assessment, encoded, decision, key, now, out)
            else:
                self._hold(uow, assessment, encoded, decision, key, now, out)
        return out

    def sweep(self) -> Outcome:
        """Record the expiry of consents whose valid_until passed (notices to earlier recipients) and
        release held items that a consent which has become valid now covers, and the items held before
        a plan request to the assessor itself needed no consent. Run periodically."""
        now = self.clock()
        total = Outcome()
        with self.units() as uow:
            persons = uow.consents.due(now)
            own_held = uow.consents.own_held()
        for key in own_held:
            with self.units() as unit:
                uow = _Tx(unit)
                uow.consents.lock(key)
                self._release(uow, key, self.clock(), total)
                self._commit(uow)
        for person_id in persons:
            key = self._person_key(person_id)
            with self.units() as uow:
                uow.consents.lock(key)
                hist = uow.consents.history(key)
                expiries = model.due_expiries(hist, now)
                ended = [
                    model.ConsentRecord(
                        event_id=records.derived_id("expired", key, c.consent_id), consent_id=c.consent_id, person_id=person_id,
                        action=model.EXPIRED, recorded_by=self.recorded_by, recorded_at=c.grant.valid_until,
                        purpose=c.grant.purpose,
                    )
                    for c in expiries
                ]
                uow.commit()
            for rec in ended:
                o = self.record_consent(rec, publish=True)
                total.recorded += o.recorded
                total.notices += o.notices
            with self.units() as unit:
                uow = _Tx(unit)
                uow.consents.lock(key)
                self._release(uow, key, self.clock(), total)
                self._commit(uow)
        return total

    # -- reading -------------------------------------------------------------------------------
    def held_count(self) -> int:
        with self.units() as uow:
            return uow.consents.held_count()

    def holders(self, consent_id: str) -> dict[str, model.ConsentRecord]:
        """Person id -> the first event of that person's consent `consent_id` (persons may share a consent id)."""
        with self.units() as uow:
            return uow.consents.first_events(consent_id)

    def person_view(self, person_id: str, now: dt.datetime | None = None) -> dict:
        """Current consents (derived) and the full history of one person, for `hub consent show`."""
        now = now or self.clock()
        key = self._person_key(person_id)
        with self.units() as uow:
            hist = uow.consents.history(key)
            held = uow.consents.held(key)
        current = model.current_consents(hist)
        return {
            "consents": [
                {
                    "consent_id": c.consent_id, "status": c.status(now), "purpose": c.grant.purpose,
                    "data_categories": list(model.ordered(c.grant.data_categories)), "recipients": sorted(c.grant.recipients),
                    "valid_from": _iso(c.grant.valid_from), "valid_until": _iso(c.grant.valid_until), "evidence": c.grant.evidence,
                    "recorded_by": c.grant.recorded_by,
                }
                for c in current.values()
            ],
            "history": [
                {"recorded_at": _iso(r.recorded_at), "action": r.action, "consent_id": r.consent_id, "recorded_by": r.recorded_by, "event_id": r.event_id}
                for r in hist
            ],
            "held_items": [{"assessment_id": h.assessment_id, "recipient": h.recipient, "reason": h.reason, "held_at": _iso(h.held_at)} for h in held],
        }

    def audit(self, person_id: str) -> list[dict]:
        """The person's disclosures, each with `withdrawn`: the withdrawals of its plan request (empty when it went out)."""
        with self.units() as uow:
            rows = [d.as_dict() for d in uow.audit.of_person(self._person_key(person_id))]
            found = uow.audit.withdrawals([r["request_id"] for r in rows])
        return [{**r, "withdrawn": found.get(r["request_id"], [])} for r in rows]

    # -- steps inside a transaction -------------------------------------------------------------
    @contextlib.contextmanager
    def _applying(self, consumer: str, event_id: str, person_key: str, out: Outcome) -> Iterator[_Tx | None]:
        """One transaction for one event of one person, committed when the block ends without an
        error; None (and out.duplicate) when the event was applied before."""
        with self.units() as unit:
            uow = _Tx(unit)
            uow.consents.lock(person_key)
            if uow.processed.first_time(consumer, event_id):
                yield uow
            else:
                out.duplicate = True
                yield None
            self._commit(uow)

    def _commit(self, uow: _Tx) -> None:
        self._send(uow)
        uow.uow.commit()

    def _send(self, uow: _Tx) -> None:
        """Put the transaction's messages into the outbox in the order made; a plan request or notice
        with its recipient and stream (`NUMBERED`): the relay gives it its number when it sends it."""
        messages, uow.messages = uow.messages, []
        for m in messages:
            where = {"recipient": m.record["to"], "stream": NUMBERED[m.name]} if m.name in NUMBERED else {}
            value = self.codec.encode(m.name, m.record)
            outbox_id = uow.uow.outbox.enqueue(m.topic, m.name, str(m.record["event_id"]), value, m.key, cloudevent_headers(m.name, m.record), m.now,
                                               **where)
            if m.then is not None:
                m.then(outbox_id)

    def _append(self, uow: _Tx, rec: model.ConsentRecord, key: str, now: dt.datetime, publish: bool, out: Outcome) -> None:
        uow.consents.add(rec, key, now)
        out.recorded.append(rec.action)
        if publish:
            self._enqueue(uow, topics.CONSENTS, "Consent", records.consent_to_avro(rec), key, now)
        if rec.action == model.GRANTED:
            self._release(uow, key, now, out)
        else:
            self._notify_ended(uow, rec, key, now, out)

    def _person_key(self, person_id: str) -> str:
        return hetu.person_key(person_id, self.person_key_secret)

    def _enqueue(self, uow: _Tx, topic: str, name: str, record: dict, key: str | None, now: dt.datetime,
                 then: Callable[[int], None] | None = None) -> None:
        """Send `record` when the transaction commits (`_send`); `then(outbox_id)` once it is in the outbox."""
        uow.messages.append(_Message(topic, name, record, key, now, then))

    def _disclose(self, uow: _Tx, assessment: model.Assessment, decision: model.Disclose | model.OwnPlan, now: dt.datetime,
                  out: Outcome) -> str:
        """The plan request in the outbox and its ledger row: an audit row of a disclosure, or (`OwnPlan`)
        a row that says the plan request disclosed nothing."""
        plan = records.plan_request(assessment, decision, now)
        own = isinstance(decision, model.OwnPlan)
        person_key = self._person_key(assessment.person_id)
        self._enqueue(uow, topics.plan_request_topic(decision.recipient), "PlanRequest", plan, assessment.person_key, now,
                      then=lambda outbox_id: uow.audit.add(plan, person_key, outbox_id, now, disclosed=not own))
        if own:
            out.own_plans.append((decision.recipient, assessment.occurred_at))
        else:
            out.disclosed.append((decision.recipient, decision.categories, assessment.occurred_at))
        return plan["request_id"]

    def _hold(self, uow: _Tx, assessment: model.Assessment, encoded: bytes, decision: model.Hold, key: str, now: dt.datetime,
              out: Outcome) -> None:
        """Keep the item until a consent covers it; tell the assessor what is missing."""
        uow.consents.hold(assessment, key, encoded, decision.reason, now)
        out.held.append(decision.reason)
        notice = records.consent_required_notice(assessment, decision, now)
        self._enqueue(uow, topics.notice_topic(notice["to"]), "Notice", notice, assessment.person_key, now)
        out.notices.append(("consent_required", assessment.assessor))

    def _hold_consent_only(self, uow: _Tx, assessment: model.Assessment, encoded: bytes, decision: model.Decision, key: str,
                           now: dt.datetime, out: Outcome) -> None:
        """Health data a disclosure left out (no consent in force covers it) is not dropped: it becomes an
        item of its own, disclosed at once when another consent covers it, else held (with a notice)
        until one does."""
        withheld = model.consent_only_withheld(decision)
        if not withheld:
            return
        rec = records.remainder_record(self.codec.decode(encoded, "AssessmentCompleted", check_bounds=False).record, withheld)
        part = records.assessment_from_avro(rec)
        part_encoded = self.codec.encode("AssessmentCompleted", rec)
        second = model.decide(part, uow.consents.history(key), self.legal_bases, now)
        if isinstance(second, model.Hold):
            self._hold(uow, part, part_encoded, second, key, now, out)
        else:
            self._disclose(uow, part, second, now, out)

    def _release(self, uow: _Tx, person_key: str, now: dt.datetime, out: Outcome) -> None:
        items = uow.consents.held(person_key)
        if not items:
            return
        hist = uow.consents.history(person_key)
        pairs = []
        for item in items:
            try:
                pairs.append((item.id, records.assessment_from_avro(self.codec.decode(item.assessment, "AssessmentCompleted", check_bounds=False).record,
                                                                   person_key_secret=self.person_key_secret)))
            except model.InvalidConsent:
                continue  # held before keys were checked, keyed to another person: never released
        encoded = {item.id: item.assessment for item in items}
        for item_id, assessment, decision in model.releases(pairs, hist, self.legal_bases, now):
            request_id = self._disclose(uow, assessment, decision, now, out)
            uow.consents.release(item_id, request_id, now)
            out.released += 1
            self._hold_consent_only(uow, assessment, encoded[item_id], decision, person_key, now, out)

    def _notify_ended(self, uow: _Tx, rec: model.ConsentRecord, person_key: str, now: dt.datetime, out: Outcome) -> None:
        consent = model.current_consents(uow.consents.history(person_key)).get(rec.consent_id)
        if consent is None or consent.ended_by is None or consent.ended_by.event_id != rec.event_id:
            return  # an end of a consent this person never had: nobody received anything under it
        rows = uow.audit.of_person(person_key)
        keys = {d.recipient: d.person_key for d in rows}
        for recipient in model.revocation_recipients(rec.consent_id, [(d.recipient, d.consent_id) for d in rows]):
            notice = records.ended_notice(rec, recipient, keys[recipient], now)
            self._enqueue(uow, topics.notice_topic(notice["to"]), "Notice", notice, keys[recipient], now)
            out.notices.append((notice["notice_type"], recipient))


def _ended_message(consent_id: str, action: str) -> str:
    return f"consent {consent_id} of this person was {action} and stays so; a renewed consent needs a new consent id"


def _iso(value: dt.datetime | None) -> str | None:
    return iso_utc(value) if value else None
