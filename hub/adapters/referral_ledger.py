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
from hub.adapters.idempotency import first_time
from hub.adapters.newcomer_facts import record_newcomer
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


class _Rejected(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.outcome = StatusOutcome(code, message)


class ReferralLedger:
    """The referrals table and its history, behind a small interface."""

    def __init__(self, engine: sa.Engine, codec: Codec | None = None):
        self.engine = engine
        self.Session = session_factory(engine)
        self.codec = codec or default_codec()

    # -- routing -----------------------------------------------------------------------------
    def record(self, newcomer: RoutingInput, decisions: list[Decision], now: dt.datetime, attempts: int = 3) -> Recorded:
        """Store the referrals of one newcomer event, each once. Safe to call again for the same event."""
        for attempt in range(attempts):
            try:
                with self.Session.begin() as s:
                    return self._record(s, newcomer, decisions, now)
            except IntegrityError:  # a concurrent worker took the same sequence row or referral id
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _record(self, s: Session, newcomer: RoutingInput, decisions: list[Decision], now: dt.datetime) -> Recorded:
        out = Recorded()
        if not first_time(s, ROUTING_CONSUMER, newcomer.event_id):
            out.duplicate = True
        else:
            record_newcomer(s, newcomer, now)  # the facts `hub report` counts by (no identity code)
            for decision in decisions:
                rid = referral_id(newcomer.person_key, decision)
                if s.get(ReferralRow, rid) is not None:
                    continue  # made earlier (same person, recipient and purpose): never twice
                sequence = self._next_sequence(s, decision.authority)
                record = referral_record(newcomer, decision, sequence=sequence, person_id=None, now=now)
                s.add(
                    ReferralRow(
                        referral_id=rid,
                        authority=decision.authority,
                        purpose=decision.purpose,
                        rule=decision.rule,
                        rules_version=decision.rules_version,
                        person_key=newcomer.person_key,
                        newcomer_event_id=newcomer.event_id,
                        due=decision.due,
                        created_at=now,
                        updated_at=now,
                        state=SENT,
                        sequence=sequence,
                        turvakielto=newcomer.turvakielto,
                        payload=self.codec.to_json("Referral", record),
                    )
                )
                s.flush()
                s.add(ReferralEventRow(referral_id=rid, event_id=newcomer.event_id, state=SENT, reason=decision.rule, reported_by="hub", occurred_at=now, recorded_at=now))
                out.created.append(record)
            if newcomer.change == "moved":
                rows = self._supersede_elsewhere(s, newcomer, {d.authority for d in decisions}, now)
                out.superseded = [r.referral_id for r in rows]
                out.superseded_authorities = sorted({r.authority for r in rows})
        # the outbox: everything of this event not yet published (after a crash between commit and send)
        rows = s.scalars(
            sa.select(ReferralRow).where(ReferralRow.newcomer_event_id == newcomer.event_id, ReferralRow.published_at.is_(None)).order_by(ReferralRow.authority, ReferralRow.sequence)
        ).all()
        out.to_publish = [self.codec.from_json("Referral", row.payload) for row in rows]
        return out

    def _next_sequence(self, s: Session, authority: str) -> int:
        row = s.scalars(sa.select(ReferralSequenceRow).where(ReferralSequenceRow.authority == authority).with_for_update()).first()
        if row is None:
            row = ReferralSequenceRow(authority=authority, last_sequence=0)
            s.add(row)
        row.last_sequence += 1
        s.flush()
        return row.last_sequence

    def _supersede_elsewhere(self, s: Session, newcomer: RoutingInput, authorities: set[str], now: dt.datetime) -> list[ReferralRow]:
        """After a move: open referrals to authorities no longer responsible are superseded."""
        rows = s.scalars(
            sa.select(ReferralRow).where(ReferralRow.person_key == newcomer.person_key, ReferralRow.state.not_in(CLOSED), ReferralRow.authority.not_in(authorities))
        ).all()
        for row in rows:
            row.state, row.updated_at = "superseded", now
            s.add(ReferralEventRow(referral_id=row.referral_id, event_id=newcomer.event_id, state="superseded", reason="moved to another municipality", reported_by="hub", occurred_at=now, recorded_at=now))
        return list(rows)

    def mark_published(self, referral_ids: list[str], now: dt.datetime) -> None:
        if not referral_ids:
            return
        with self.Session.begin() as s:
            s.execute(sa.update(ReferralRow).where(ReferralRow.referral_id.in_(referral_ids)).values(published_at=now))

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
            raise _Rejected(exc.code, str(exc)) from None
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


def refresh_gauges(ledger: ReferralLedger, today: dt.date, authorities: set[str] | None = None) -> None:
    """Set hub_referrals_open / hub_referrals_overdue per authority from the ledger (all, or those given)."""
    from hub import metrics

    for authority, (open_count, overdue_count) in ledger.counts_by_authority(today, authorities).items():
        metrics.open_referrals.labels(authority).set(open_count)
        metrics.overdue_referrals.labels(authority).set(overdue_count)
