"""In-memory fakes of the services' ports (`hub.services.ports`) for unit tests: no broker, no
database. Each fake writes what happens to a shared `journal`, so a test can check the order of
sends, acknowledgements and writes."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from hub.consent.model import GRANTED, Assessment, ConsentRecord
from hub.domain.clock import iso_utc
from hub.services.ports import Failures

T0 = dt.datetime(2025, 6, 20, 12, tzinfo=dt.timezone.utc)


class Outage(ConnectionError):
    """The fakes' outage: the broker or the database did not answer."""


class TooLarge(ValueError):
    """The fakes' refusal of one record for its own sake."""


FAILURES = Failures(is_outage=lambda exc: isinstance(exc, (ConnectionError, TimeoutError)),
                    reason=lambda exc: "unprocessable" if isinstance(exc, ValueError) else "internal_error")


class Clock:
    """A clock a test sets; each call returns the current time."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class FakePublisher:
    """Sends nowhere: `sent` holds (topic, name, record, key); an acknowledgement fails with the
    error `fails(topic, record, key)` returns (None: acknowledged). `refuses` makes the send itself raise."""

    def __init__(self, journal: list, fails: Callable[[str, dict, str], BaseException | None] | None = None,
                 refuses: Callable[[str, dict, str], BaseException | None] | None = None) -> None:
        self.journal = journal
        self.sent: list[tuple[str, str, dict, str]] = []
        self.fails = fails or (lambda topic, record, key: None)
        self.refuses = refuses or (lambda topic, record, key: None)

    async def publish(self, topic: str, name: str, record: dict, key: str) -> Any:
        refused = self.refuses(topic, record, key)
        if refused is not None:
            raise refused
        self.sent.append((topic, name, record, key))
        self.journal.append(("sent", name, record["event_id"]))
        error = self.fails(topic, record, key)

        async def ack():
            await asyncio.sleep(0)
            if error is not None:
                raise error
            self.journal.append(("acked", name, record["event_id"]))

        return ack()


class FakeDeadLetters:
    """Keeps one batch's dead letters in `sent` (source, reason, message), each source once."""

    def __init__(self, journal: list, fails: BaseException | None = None) -> None:
        self.journal = journal
        self.sent: list[tuple[Any, str, str]] = []
        self.fails = fails

    async def send(self, source, reason: str, message: str) -> None:
        if any(s is source for s, _, _ in self.sent):
            return
        self.sent.append((source, reason, message))
        self.journal.append(("dead_letter", source, reason))

    async def kept(self) -> None:
        if self.fails is not None and self.sent:
            raise self.fails
        self.journal.append(("dead_letters_kept", len(self.sent)))

    @property
    def reasons(self) -> list[tuple[Any, str]]:
        return [(s, r) for s, r, _ in self.sent]


class MemoryStates:
    """Person states in a dict; `write` is one transaction (all or nothing)."""

    def __init__(self, journal: list, states: dict[str, str] | None = None, fails: BaseException | None = None) -> None:
        self.journal = journal
        self.states = dict(states or {})
        self.fails = fails

    async def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        return {k: self.states[k] for k in keys if k in self.states}

    async def write(self, changes: Mapping[str, str | None]) -> None:
        if self.fails is not None:
            raise self.fails
        for key, state in changes.items():
            if state is None:
                self.states.pop(key, None)
            else:
                self.states[key] = state
        self.journal.append(("states_written", sorted(changes)))


class MemoryCircumstances:
    """Routing's per-person circumstances in a dict (`StoredCircumstances` rows); `write` is one transaction."""

    def __init__(self, journal: list, rows: dict | None = None, fails: BaseException | None = None) -> None:
        self.journal = journal
        self.rows = dict(rows or {})
        self.fails = fails

    async def get_many(self, keys: Iterable[str]) -> dict:
        return {k: self.rows[k] for k in keys if k in self.rows}

    async def write(self, rows: Mapping, now: dt.datetime) -> None:
        if self.fails is not None:
            raise self.fails
        self.rows.update(rows)
        self.journal.append(("circumstances_written", sorted(rows)))


class JournalLedger:
    """A real referral ledger (`hub.adapters.referral_ledger.ReferralLedger`, SQLite in memory: its
    idempotency and supersession are simpler to use than to fake) behind the async port, its calls journaled."""

    def __init__(self, journal: list, ledger=None) -> None:
        from sqlalchemy.pool import StaticPool

        from hub.adapters import database
        from hub.adapters.referral_ledger import ReferralLedger

        if ledger is None:
            engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
            database.Base.metadata.create_all(engine)
            ledger = ReferralLedger(engine)
        self.ledger = ledger
        self.journal = journal

    async def record_many(self, items: list, now) -> list:
        done = self.ledger.record_many(items, now)
        self.journal.append(("recorded", len(items)))
        return done

    async def mark_published(self, referral_ids: list[str], now) -> None:
        self.ledger.mark_published(referral_ids, now)
        self.journal.append(("marked_published", list(referral_ids)))

    async def apply_status(self, status: dict, now) -> Any:
        outcome = self.ledger.apply_status(status, now)
        self.journal.append(("status", outcome.code))
        return outcome


# -- the consent registry's unit of work ---------------------------------------------------------
@dataclass
class MemoryHeld:
    id: int
    person_key: str
    assessment_id: str
    recipient: str
    reason: str
    held_at: dt.datetime
    assessment: bytes
    released: tuple[str, dt.datetime] | None = None  # request id, when
    assessor: str = ""


@dataclass
class MemoryDisclosure:
    plan: dict
    person_key: str
    outbox_id: int
    disclosed_at: dt.datetime
    disclosed: bool = True  # false: a plan request to the assessor itself

    request_id = property(lambda self: self.plan["request_id"])
    recipient = property(lambda self: self.plan["to"])
    consent_id = property(lambda self: self.plan["consent_id"])

    def as_dict(self) -> dict:
        p = self.plan
        return {"disclosed_at": iso_utc(self.disclosed_at), "recipient": p["to"], "data_categories": list(p["data_categories"]),
                "consent_id": p["consent_id"], "legal_basis": p["legal_basis"], "request_id": p["request_id"],
                "assessor": p["assessor"], "assessment_id": p["assessment_id"]}


@dataclass
class ConsentState:
    """What the consent registry has committed: a test reads it, or sets it up."""

    events: list[tuple[str, ConsentRecord]] = field(default_factory=list)  # (person key, record), in the order stored
    tombstones: dict[tuple[str, str], list] = field(default_factory=dict)  # (person key, consent id) -> [ended action, last seen]
    held: list[MemoryHeld] = field(default_factory=list)
    outbox: list[tuple[str, str, str, bytes, str | None]] = field(default_factory=list)  # topic, schema name, event id, value, key
    numbered: dict[int, tuple[str, str]] = field(default_factory=dict)  # outbox id (1-based) -> recipient, stream (the relay numbers it)
    marks: set[tuple[str, str]] = field(default_factory=set)  # (consumer, event id)
    disclosures: list[MemoryDisclosure] = field(default_factory=list)
    withdrawals: dict[str, list[dict]] = field(default_factory=dict)  # request id -> withdrawals


class _MemoryConsents:
    def __init__(self, state: ConsentState):
        self.s = state

    def lock(self, person_key: str) -> None:
        pass  # one thread: nothing to serialise

    def history(self, person_key: str) -> list[ConsentRecord]:
        return [rec for key, rec in self.s.events if key == person_key]

    def add(self, rec: ConsentRecord, person_key: str, now: dt.datetime) -> None:
        if any(r.event_id == rec.event_id for _, r in self.s.events):
            raise ValueError(f"event id {rec.event_id} stored already")  # the table's unique constraint
        self.s.events.append((person_key, rec))

    def tombstone(self, person_key: str, consent_id: str, now: dt.datetime) -> str | None:
        stone = self.s.tombstones.get((person_key, consent_id))
        if stone is None:
            return None
        stone[1] = now
        return stone[0]

    def first_events(self, consent_id: str) -> dict[str, ConsentRecord]:
        out: dict[str, ConsentRecord] = {}
        for _, rec in self.s.events:
            if rec.consent_id == consent_id:
                out.setdefault(rec.person_id, rec)
        return out

    def due(self, now: dt.datetime) -> list[str]:
        ended = {(key, r.consent_id) for key, r in self.s.events if r.action != GRANTED}
        holding = {h.person_key for h in self.s.held if h.released is None}
        grants = [(key, r) for key, r in self.s.events if r.action == GRANTED]
        expiring = {r.person_id for key, r in grants if r.valid_until and r.valid_until <= now and (key, r.consent_id) not in ended}
        starting = {r.person_id for key, r in grants if r.valid_from and r.valid_from <= now and key in holding}
        return sorted(expiring | starting)

    def own_held(self) -> list[str]:
        return sorted({h.person_key for h in self.s.held if h.released is None and h.assessor == h.recipient})

    def held(self, person_key: str) -> list[MemoryHeld]:
        return [h for h in self.s.held if h.person_key == person_key and h.released is None]

    def hold(self, assessment: Assessment, person_key: str, encoded: bytes, reason: str, now: dt.datetime) -> None:
        self.s.held.append(MemoryHeld(len(self.s.held) + 1, person_key, assessment.assessment_id, assessment.plan_authority, reason, now, encoded,
                                      assessor=assessment.assessor))

    def release(self, item_id: int, request_id: str, now: dt.datetime) -> None:
        [item] = [h for h in self.s.held if h.id == item_id]
        if item.released is None:
            item.released = (request_id, now)

    def held_count(self) -> int:
        return sum(1 for h in self.s.held if h.released is None)


class _MemoryOutbox:
    def __init__(self, state: ConsentState):
        self.s = state

    def enqueue(self, topic: str, name: str, event_id: str, value: bytes, key: str | None, headers, now: dt.datetime, *,
                recipient: str | None = None, stream: str | None = None) -> int:
        self.s.outbox.append((topic, name, event_id, value, key))
        if stream is not None:
            self.s.numbered[len(self.s.outbox)] = (recipient, stream)
        return len(self.s.outbox)


class _MemoryMarks:
    def __init__(self, state: ConsentState):
        self.s = state

    def first_time(self, consumer: str, event_id: str) -> bool:
        if (consumer, event_id) in self.s.marks:
            return False
        self.s.marks.add((consumer, event_id))
        return True


class _MemoryAudit:
    def __init__(self, state: ConsentState):
        self.s = state

    def add(self, plan: dict, person_key: str, outbox_id: int, now: dt.datetime, disclosed: bool = True) -> None:
        self.s.disclosures.append(MemoryDisclosure(plan, person_key, outbox_id, now, disclosed))

    def of_person(self, person_key: str) -> list[MemoryDisclosure]:
        return [d for d in self.s.disclosures if d.person_key == person_key and d.disclosed]

    def withdrawals(self, request_ids: Iterable[str]) -> dict[str, list[dict]]:
        return {r: self.s.withdrawals[r] for r in request_ids if r in self.s.withdrawals}


class MemoryConsentUnitOfWork:
    """Works on a copy of the committed state; `commit()` makes the copy the committed state, leaving
    the block without it throws the copy away (a rollback)."""

    def __init__(self, units: MemoryConsentUnits):
        self.units = units

    def __enter__(self) -> MemoryConsentUnitOfWork:
        self.state = copy.deepcopy(self.units.state)
        self.consents, self.outbox = _MemoryConsents(self.state), _MemoryOutbox(self.state)
        self.processed, self.audit = _MemoryMarks(self.state), _MemoryAudit(self.state)
        return self

    def __exit__(self, *exc: object) -> None:
        self.state = None

    def commit(self) -> None:
        if self.units.fails is not None:
            raise self.units.fails
        self.units.state = copy.deepcopy(self.state)
        self.units.commits += 1


class MemoryConsentUnits:
    """A `ConsentRegistry`'s units of work in memory: `state` is what is committed, `commits` how many
    transactions committed; `fails` makes every commit raise (an outage)."""

    def __init__(self, state: ConsentState | None = None) -> None:
        self.state = state or ConsentState()
        self.commits = 0
        self.fails: BaseException | None = None

    def __call__(self) -> MemoryConsentUnitOfWork:
        return MemoryConsentUnitOfWork(self)
