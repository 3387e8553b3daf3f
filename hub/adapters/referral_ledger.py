"""The coordination ledger of referrals (SQL): each referral once, its state, its history.

`record()` stores the referrals of one routed newcomer event in one transaction with the
event's idempotency mark, numbering them per recipient; it is also the outbox: a referral is
published after the commit and marked published, and a redelivered event re-sends what was not.
`apply_status()` moves a referral through its lifecycle (hub.routing.referrals.transition).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.adapters.database import Base, session_factory
from hub.adapters.idempotency import ProcessedEvent, first_time
from hub.adapters.newcomer_facts import record_newcomers
from hub.domain.errors import Rejected
from hub.routing.model import Decision, RoutingInput
from hub.routing.referrals import CLOSED, SENT, TransitionError, referral_id, referral_record, transition
from hub.schemas.codec import Codec, default_codec

ROUTING_CONSUMER = "routing"
STATUS_CONSUMER = "referral-status"


class ReferralRow(Base):
    __tablename__ = "referrals"
    __table_args__ = (
        sa.UniqueConstraint("authority", "sequence", name="uq_referrals_authority_sequence"),
        sa.Index("ix_referrals_authority_state", "authority", "state"),
        sa.Index("ix_referrals_person_key", "person_key"),
        sa.Index("ix_referrals_newcomer_event_id", "newcomer_event_id"),
    )
    referral_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    authority: Mapped[str] = mapped_column(sa.String(64))
    purpose: Mapped[str] = mapped_column(sa.String(40))
    rule: Mapped[str] = mapped_column(sa.String(80))
    rules_version: Mapped[str] = mapped_column(sa.String(40))
    person_key: Mapped[str] = mapped_column(sa.String(128))
    newcomer_event_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    due: Mapped[dt.date | None] = mapped_column(sa.Date(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    state: Mapped[str] = mapped_column(sa.String(32))
    sequence: Mapped[int] = mapped_column(sa.BigInteger())
    turvakielto: Mapped[bool] = mapped_column(sa.Boolean())
    payload: Mapped[str] = mapped_column(sa.Text())  # the Referral event, JSON form, without person_id
    published_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class ReferralEventRow(Base):
    __tablename__ = "referral_events"
    __table_args__ = (sa.Index("ix_referral_events_referral_id", "referral_id"),)
    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    referral_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("referrals.referral_id"))
    event_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    state: Mapped[str] = mapped_column(sa.String(32))
    reason: Mapped[str | None] = mapped_column(sa.Text(), nullable=True)
    reported_by: Mapped[str] = mapped_column(sa.String(64))
    occurred_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    recorded_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class ReferralSequenceRow(Base):
    __tablename__ = "referral_sequences"
    authority: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(sa.BigInteger())


@dataclass
class Recorded:
    """What `record()` did: the referrals to publish now, and which of them are new."""

    duplicate: bool = False
    to_publish: list[dict] = field(default_factory=list)  # Referral records (person_id not set)
    created: list[dict] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    superseded_authorities: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StatusOutcome:
    code: str  # applied, duplicate, or a dead-letter reason: unknown_referral, forbidden, invalid_status, invalid_transition
    message: str = ""
    state: str | None = None
    purpose: str | None = None  # of the referral, when applied (metrics of the step durations)
    referral_created_at: dt.datetime | None = None

    @property
    def accepted(self) -> bool:
        return self.code in ("applied", "duplicate")


@dataclass(frozen=True)
class OpenReferral:
    referral_id: str
    authority: str
    purpose: str
    state: str
    due: dt.date | None
    sequence: int
    person_key: str | None = None


class _Rejected(Rejected):
    """A status report the ledger refuses: raised inside the transaction, so nothing is recorded."""

    @property
    def outcome(self) -> StatusOutcome:
        return StatusOutcome(self.reason, self.message)


class ReferralLedger:
    """The referrals table and its history, behind a small interface."""

    def __init__(self, engine: sa.Engine, codec: Codec | None = None):
        self.engine = engine
        self.Session = session_factory(engine)
        self.codec = codec or default_codec()

    # -- routing ---------------------------------------------------------------------------
    def record(self, newcomer: RoutingInput, decisions: list[Decision], now: dt.datetime, attempts: int = 3) -> Recorded:
        """Store the referrals of one newcomer event, each once. Safe to call again for the same event."""
        return self.record_many([(newcomer, decisions)], now, attempts)[0]

    def record_many(self, items: list[tuple[RoutingInput, list[Decision]]], now: dt.datetime, attempts: int = 3) -> list[Recorded]:
        """`record()` for a batch of newcomer events, in order, in one transaction: what each event
        must publish now and which referrals are new. Safe to call again with any of the events."""
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    return _Batch(conn, self.codec, now).run(items)
            except IntegrityError:  # a concurrent worker took the same sequence row or referral id
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def mark_published(self, referral_ids: list[str], now: dt.datetime) -> None:
        if not referral_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(_MARK_PUBLISHED, {"ids": referral_ids, "now": now})

    # -- lifecycle ---------------------------------------------------------------------------
    def apply_status(self, status: dict, now: dt.datetime) -> StatusOutcome:
        """Apply one ReferralStatus event (Avro record dict); idempotent by its event_id.

        A rejected status (unknown referral, not the recipient, impossible transition) changes
        nothing and is not marked processed, so its redelivery is rejected the same way.
        """
        try:
            with self.Session.begin() as s:
                return self._apply_status(s, status, now)
        except _Rejected as rejected:  # the transaction rolled back: nothing recorded
            return rejected.outcome

    def _apply_status(self, s: Session, status: dict, now: dt.datetime) -> StatusOutcome:
        if not first_time(s, STATUS_CONSUMER, str(status["event_id"])):
            return StatusOutcome("duplicate")
        row = s.get(ReferralRow, status["referral_id"])
        if row is None:
            raise _Rejected("unknown_referral", "no referral with this referral_id in the ledger; check the id against the Referral event")
        if status["authority"] != row.authority:
            raise _Rejected("forbidden", f"{status['authority']} reported a status for a referral addressed to another authority; only the recipient may report")
        try:
            new_state = transition(row.state, status["status"], status.get("reason"))
        except TransitionError as exc:
            raise _Rejected(exc.reason, exc.message) from None
        row.state, row.updated_at = new_state, now
        s.add(
            ReferralEventRow(
                referral_id=row.referral_id,
                event_id=str(status["event_id"]),
                state=new_state,
                reason=status.get("reason"),
                reported_by=status["authority"],
                occurred_at=status.get("occurred_at") or now,
                recorded_at=now,
            )
        )
        return StatusOutcome("applied", state=new_state, purpose=row.purpose, referral_created_at=row.created_at)

    # -- queries -----------------------------------------------------------------------------
    def open_referrals(self, authority: str | None = None) -> list[OpenReferral]:
        q = sa.select(ReferralRow).where(ReferralRow.state.not_in(CLOSED)).order_by(ReferralRow.authority, ReferralRow.sequence)
        if authority is not None:
            q = q.where(ReferralRow.authority == authority)
        with self.Session() as s:
            return [OpenReferral(r.referral_id, r.authority, r.purpose, r.state, r.due, r.sequence, r.person_key) for r in s.scalars(q)]

    def overdue_referrals(self, today: dt.date, authority: str | None = None) -> list[OpenReferral]:
        """Open referrals whose due date has passed (due today is not overdue yet)."""
        return [r for r in self.open_referrals(authority) if r.due is not None and r.due < today]

    def counts_by_authority(self, today: dt.date, authorities: set[str] | None = None) -> dict[str, tuple[int, int]]:
        """authority -> (open, overdue), for every authority that has had a referral (or those given)."""
        open_ = sa.func.sum(sa.case((ReferralRow.state.not_in(CLOSED), 1), else_=0))
        overdue = sa.func.sum(sa.case((sa.and_(ReferralRow.state.not_in(CLOSED), ReferralRow.due < today), 1), else_=0))
        q = sa.select(ReferralRow.authority, open_, overdue).group_by(ReferralRow.authority)
        if authorities is not None:
            q = q.where(ReferralRow.authority.in_(authorities))
        with self.Session() as s:
            rows = s.execute(q).all()
        return {a: (int(o or 0), int(d or 0)) for a, o, d in rows}

    def published_from(self, authority: str, from_sequence: int, to_sequence: int | None = None) -> list[dict]:
        """A recipient's published referrals with sequence >= from_sequence (<= to_sequence), in order,
        as Referral records from the stored payload (which never holds the identity code)."""
        q = sa.select(ReferralRow).where(ReferralRow.authority == authority, ReferralRow.sequence >= from_sequence, ReferralRow.published_at.is_not(None))
        if to_sequence is not None:
            q = q.where(ReferralRow.sequence <= to_sequence)
        with self.Session() as s:
            return [self.codec.from_json("Referral", row.payload) for row in s.scalars(q.order_by(ReferralRow.sequence))]

    def history(self, referral_id_: str) -> list[tuple[str, str, str | None]]:
        """(state, reported_by, reason) of a referral, oldest first."""
        with self.Session() as s:
            q = sa.select(ReferralEventRow).where(ReferralEventRow.referral_id == referral_id_).order_by(ReferralEventRow.id)
            return [(e.state, e.reported_by, e.reason) for e in s.scalars(q)]

    def state(self, referral_id_: str) -> str | None:
        with self.Session() as s:
            row = s.get(ReferralRow, referral_id_)
            return None if row is None else row.state

    def count(self) -> int:
        with self.Session() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(ReferralRow)) or 0


_REFERRALS = ReferralRow.__table__
_PROCESSED = ProcessedEvent.__table__
_SEQUENCES = ReferralSequenceRow.__table__
# the statements of the routing path, built once (expanding IN lists): building them per batch, and
# running them through an ORM session, was a large share of the ledger thread's time
_SEEN = sa.select(_PROCESSED.c.event_id).where(_PROCESSED.c.consumer == ROUTING_CONSUMER, _PROCESSED.c.event_id.in_(sa.bindparam("ids", expanding=True)))
_EXISTING = sa.select(_REFERRALS.c.referral_id).where(_REFERRALS.c.referral_id.in_(sa.bindparam("ids", expanding=True)))
_LOCK_SEQUENCES = (sa.select(_SEQUENCES.c.authority, _SEQUENCES.c.last_sequence).where(_SEQUENCES.c.authority.in_(sa.bindparam("authorities", expanding=True)))
                   .order_by(_SEQUENCES.c.authority).with_for_update())
_MARK_PUBLISHED = _REFERRALS.update().where(_REFERRALS.c.referral_id.in_(sa.bindparam("ids", expanding=True))).values(published_at=sa.bindparam("now"))
_UPDATE_SEQUENCE = _SEQUENCES.update().where(_SEQUENCES.c.authority == sa.bindparam("a")).values(last_sequence=sa.bindparam("n"))


class _Batch:
    """One transaction of `record_many`, in Core statements on a connection: a few round trips per
    batch rather than about ten ORM round trips per newcomer (the ORM's per-object work dominated the
    worker's time). Inserts name the tables, not the mapped classes: the ORM's bulk insert path costs
    more than the insert itself."""

    def __init__(self, s: sa.Connection, codec: Codec, now: dt.datetime):
        self.s, self.codec, self.now = s, codec, now
        self.referrals: list[dict] = []  # rows to insert
        self.events: list[dict] = []
        self.stored: dict[str, int] = {}  # authority -> last sequence in the table (locked)
        self.sequences: dict[str, int] = {}  # authority -> last sequence given in this batch

    def run(self, items: list[tuple[RoutingInput, list[Decision]]]) -> list[Recorded]:
        s, now = self.s, self.now
        ids = [str(n.event_id) for n, _ in items]
        seen = set(s.scalars(_SEEN, {"ids": sorted(set(ids))}))
        out = [Recorded() for _ in items]
        first: list[int] = []
        for i, event_id in enumerate(ids):
            if event_id in seen:
                out[i].duplicate = True
            else:
                seen.add(event_id)
                first.append(i)
        if first:
            s.execute(_PROCESSED.insert(), [{"consumer": ROUTING_CONSUMER, "event_id": ids[i], "processed_at": now} for i in first])
            record_newcomers(s, [items[i][0] for i in first], now)  # the facts `hub report` counts by (no identity code)
            planned = {i: [(d, referral_id(items[i][0].person_key, d)) for d in items[i][1]] for i in first}
            candidates = {rid for pairs in planned.values() for _, rid in pairs}
            existing = set(s.scalars(_EXISTING, {"ids": sorted(candidates)})) if candidates else set()
            authorities = sorted({d.authority for pairs in planned.values() for d, _ in pairs})
            if authorities:  # locked in one order by every worker (PostgreSQL): no deadlock between batches
                self.stored = dict(s.execute(_LOCK_SEQUENCES, {"authorities": authorities}).all())
            for i in first:
                newcomer, decisions = items[i]
                for decision, rid in planned[i]:
                    if rid in existing:
                        continue  # made earlier (same person, recipient and purpose): never twice
                    existing.add(rid)
                    out[i].created.append(self._add(newcomer, decision, rid))
                if newcomer.change == "moved":
                    self._flush()  # the move supersedes what this batch made before it, too
                    rows = _supersede_elsewhere(s, newcomer, {d.authority for d in decisions}, now)
                    out[i].superseded = [rid for rid, _ in rows]
                    out[i].superseded_authorities = sorted({authority for _, authority in rows})
            self._flush()
            self._save_sequences()
            for i in first:  # the outbox of a first-time event: exactly what it created
                out[i].to_publish = sorted(out[i].created, key=lambda r: (r["to"], r["sequence"]))
        fresh = {ids[i] for i in first}  # their referrals go out with their first occurrence in this batch
        again = [i for i in range(len(items)) if out[i].duplicate and ids[i] not in fresh]
        if again:  # the outbox: what a redelivered event has not published yet (a crash between commit and send)
            r = _REFERRALS.c
            q = (sa.select(r.newcomer_event_id, r.payload)
                 .where(r.newcomer_event_id.in_({ids[i] for i in again}), r.published_at.is_(None))
                 .order_by(r.authority, r.sequence))
            pending: dict[str, list[dict]] = {}
            for event_id, payload in s.execute(q):
                pending.setdefault(event_id, []).append(self.codec.from_json("Referral", payload))
            for i in again:
                out[i].to_publish = list(pending.get(ids[i], ()))
                pending.pop(ids[i], None)  # the same event twice in a batch sends once
        return out

    def _add(self, newcomer: RoutingInput, decision: Decision, rid: str) -> dict:
        authority = decision.authority
        self.sequences[authority] = sequence = self.sequences.get(authority, self.stored.get(authority, 0)) + 1
        now = self.now
        record = referral_record(newcomer, decision, sequence=sequence, person_id=None, now=now)
        self.referrals.append({
            "referral_id": rid, "authority": decision.authority, "purpose": decision.purpose, "rule": decision.rule,
            "rules_version": decision.rules_version, "person_key": newcomer.person_key, "newcomer_event_id": newcomer.event_id,
            "due": decision.due, "created_at": now, "updated_at": now, "state": SENT, "sequence": sequence,
            "turvakielto": newcomer.turvakielto, "payload": self.codec.to_json("Referral", record), "published_at": None,
        })
        self.events.append({"referral_id": rid, "event_id": newcomer.event_id, "state": SENT, "reason": decision.rule, "reported_by": "hub",
                            "occurred_at": now, "recorded_at": now})
        return record

    def _flush(self) -> None:
        if self.referrals:
            self.s.execute(_REFERRALS.insert(), self.referrals)
            self.s.execute(ReferralEventRow.__table__.insert(), self.events)
            self.referrals, self.events = [], []

    def _save_sequences(self) -> None:
        new = [{"authority": a, "last_sequence": n} for a, n in sorted(self.sequences.items()) if a not in self.stored]
        old = [{"a": a, "n": n} for a, n in sorted(self.sequences.items()) if a in self.stored]
        if new:
            self.s.execute(_SEQUENCES.insert(), new)
        if old:
            self.s.execute(_UPDATE_SEQUENCE, old)


def _supersede_elsewhere(s: sa.Connection, newcomer: RoutingInput, authorities: set[str], now: dt.datetime) -> list[tuple[str, str]]:
    """After a move: open referrals to authorities no longer responsible are superseded. (id, authority) of each."""
    r = _REFERRALS.c
    rows = s.execute(
        sa.select(r.referral_id, r.authority).where(r.person_key == newcomer.person_key, r.state.not_in(CLOSED), r.authority.not_in(authorities))
    ).all()
    if rows:
        ids = [rid for rid, _ in rows]
        s.execute(_REFERRALS.update().where(r.referral_id.in_(ids)).values(state="superseded", updated_at=now))
        s.execute(sa.insert(ReferralEventRow.__table__), [{"referral_id": rid, "event_id": newcomer.event_id, "state": "superseded", "reason": "moved to another municipality",
                                                 "reported_by": "hub", "occurred_at": now, "recorded_at": now} for rid in ids])
    return [(rid, authority) for rid, authority in rows]


def refresh_gauges(ledger: ReferralLedger, today: dt.date, authorities: set[str] | None = None) -> None:
    """Set hub_referrals_open / hub_referrals_overdue per authority from the ledger (all, or those given)."""
    from hub import metrics

    for authority, (open_count, overdue_count) in ledger.counts_by_authority(today, authorities).items():
        metrics.open_referrals.labels(authority).set(open_count)
        metrics.overdue_referrals.labels(authority).set(overdue_count)
