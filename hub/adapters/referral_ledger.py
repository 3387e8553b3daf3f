"""The coordination ledger of referrals (SQL): each referral once, its state, its history.

`record()` stores the referrals of one routed newcomer event in one transaction with the
event's idempotency mark, numbering them per recipient; it is also the outbox: a referral is
published after the commit and marked published, and a redelivered event re-sends what was not.
`apply_status()` moves a referral through its lifecycle (hub.routing.referrals.transition).

An update of a person (moved, circumstances, an identity-code correction) supersedes the open
referrals it no longer needs (hub.routing.referrals.supersessions) in the same transaction, and
each superseded referral gets a withdrawal (`referral_withdrawals`, a ReferralWithdrawn event) with
its recipient's next sequence number: the recipient's one numbering covers referrals and
withdrawals alike. Withdrawals are in the same outbox: published after the commit, marked
published, re-sent by a redelivered event, resent by `hub resend` (`published_from`).

An update that keeps an open referral whose decision now has another due date (the first residence
permit, from which the integration period counts, became known after the referral was made) moves the
referral's `due` and tells the recipient with a ReferralUpdated (`referral_updates`), numbered and
sent exactly like a withdrawal. The stored Referral payload stays as it was published at its
sequence: a resend replays the referral and then its updates.

The open and overdue counts per recipient (`referral_counts`, the gauges hub_referrals_open and
hub_referrals_overdue) are kept in the transactions that change them: a referral made, closed by a
status, superseded or given another due date adds its change to its recipient's row. Overdue counts
against one day, `referral_counts_day` (open referrals due before it); `move_counts_day()` moves that
day to today by counting only the referrals due in between, on the index of `due`. Nothing reads the
whole ledger to count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.adapters.database import Base, autocommit, session_factory
from hub.adapters.idempotency import ProcessedEvent, first_time
from hub.adapters.newcomer_facts import NewcomerFactRow, record_newcomers
from hub.domain.errors import Rejected
from hub.routing.model import Decision, RoutingInput
from hub.routing.referrals import (CLOSED, SENT, OpenRef, TransitionError, due_updates, referral_id, referral_record, reissued_id, supersessions,
                                   transition, update_record, withdrawal_record)
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
        sa.Index("ix_referrals_due", "due"),  # the referrals that fall due between two days (move_counts_day)
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


class ReferralWithdrawalRow(Base):
    """A superseded referral's withdrawal, as its old recipient is told (one per referral; no foreign
    key, so `hub retention` removes the referral and its withdrawal independently)."""

    __tablename__ = "referral_withdrawals"
    __table_args__ = (
        sa.UniqueConstraint("authority", "sequence", name="uq_referral_withdrawals_authority_sequence"),
        sa.Index("ix_referral_withdrawals_newcomer_event_id", "newcomer_event_id"),
    )
    referral_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(64), unique=True)  # the ReferralWithdrawn event id (derived from the referral id)
    authority: Mapped[str] = mapped_column(sa.String(64))
    sequence: Mapped[int] = mapped_column(sa.BigInteger())
    cause: Mapped[str] = mapped_column(sa.String(32))
    newcomer_event_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # the update that superseded it: its outbox
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    payload: Mapped[str] = mapped_column(sa.Text())  # the ReferralWithdrawn event, JSON form (no identity code)
    published_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class ReferralUpdateRow(Base):
    """A new due date of an open referral, as its recipient is told (several per referral; no foreign
    key, so `hub retention` removes the referral and its updates independently)."""

    __tablename__ = "referral_updates"
    __table_args__ = (
        sa.UniqueConstraint("authority", "sequence", name="uq_referral_updates_authority_sequence"),
        sa.Index("ix_referral_updates_referral_id", "referral_id"),
        sa.Index("ix_referral_updates_newcomer_event_id", "newcomer_event_id"),
    )
    event_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # the ReferralUpdated event id (referral and routing event)
    referral_id: Mapped[str] = mapped_column(sa.String(64))
    authority: Mapped[str] = mapped_column(sa.String(64))
    sequence: Mapped[int] = mapped_column(sa.BigInteger())
    due: Mapped[dt.date | None] = mapped_column(sa.Date(), nullable=True)
    previous_due: Mapped[dt.date | None] = mapped_column(sa.Date(), nullable=True)
    newcomer_event_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # the update that changed the due date: its outbox
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    payload: Mapped[str] = mapped_column(sa.Text())  # the ReferralUpdated event, JSON form (no identity code)
    published_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class ReferralSequenceRow(Base):
    __tablename__ = "referral_sequences"
    authority: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(sa.BigInteger())


class ReferralCountRow(Base):
    """A recipient's open referrals and, of them, those due before `referral_counts_day.day`; changed
    in the transaction that changes a referral (never recounted)."""

    __tablename__ = "referral_counts"
    authority: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    open_count: Mapped[int] = mapped_column(sa.BigInteger())
    overdue_count: Mapped[int] = mapped_column(sa.BigInteger())


class ReferralCountDayRow(Base):
    """The one day against which `referral_counts.overdue_count` counts (one row, id 1)."""

    __tablename__ = "referral_counts_day"
    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=False)
    day: Mapped[dt.date] = mapped_column(sa.Date())


@dataclass
class Recorded:
    """What `record()` did: the referrals, withdrawals and due-date updates to publish now, and which of them are new."""

    duplicate: bool = False
    to_publish: list[dict] = field(default_factory=list)  # Referral records (person_id not set)
    created: list[dict] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    superseded_authorities: list[str] = field(default_factory=list)
    withdrawals: list[dict] = field(default_factory=list)  # ReferralWithdrawn records to publish now, after `to_publish`
    updates: list[dict] = field(default_factory=list)  # ReferralUpdated records to publish now, after `withdrawals`


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
        self._autocommit = autocommit(engine)  # PostgreSQL: statements that are a transaction on their own
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

    def mark_published(self, ids: list[str], now: dt.datetime) -> None:
        """Mark published the referrals (by referral_id), withdrawals and updates (by their event_id) given."""
        if not ids:
            return
        if self.engine.dialect.name == "postgresql":
            # one statement (its three updates in data-modifying WITH clauses), in autocommit: one round
            # trip, where a transaction of three statements took five
            with self._autocommit.connect() as conn:
                conn.execute(_MARK_ALL_PUBLISHED, {"ids": list(ids), "now": now})
            return
        with self.engine.begin() as conn:
            conn.execute(_MARK_PUBLISHED, {"ids": ids, "now": now})
            conn.execute(_MARK_WITHDRAWALS_PUBLISHED, {"ids": ids, "now": now})
            conn.execute(_MARK_UPDATES_PUBLISHED, {"ids": ids, "now": now})

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
        was_open = row.state not in CLOSED
        row.state, row.updated_at = new_state, now
        if was_open != (new_state not in CLOSED):
            s.flush()  # the referral's row first: counts are changed after the rows they count (one lock order)
            _count(s.connection(), [(row.authority, row.due, -1 if was_open else 1)])
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
        """authority -> (open, overdue on `today`), for every authority that has had an open referral (or
        those given), from the counts table: one row per authority, plus the referrals that fall due
        between the counts' day and `today` when they differ (`move_counts_day()` moves it; this
        reads, never writes)."""
        c = _COUNTS.c
        q = sa.select(c.authority, c.open_count, c.overdue_count)
        if authorities is not None:
            q = q.where(c.authority.in_(sorted(authorities)))
        with self.engine.connect() as conn:
            day = conn.execute(_COUNTS_DAY_OF).scalar()
            counts = {a: [int(o), int(d)] for a, o, d in conn.execute(q)}
            for authority, n in _falling_due(conn, day, today, authorities).items():
                if authority in counts:
                    counts[authority][1] += n
        return {a: (o, d) for a, (o, d) in counts.items()}

    def move_counts_day(self, today: dt.date) -> bool:
        """Count overdue against `today` from now on: the open referrals due between the counts' day and
        `today` (an index range on `due`, those of the days between) move into or out of the overdue
        counts, in one transaction that waits for the writers counting against the old day. The daily
        step of the gauges; nothing to do (False) when the day is `today` already."""
        with self.engine.connect() as conn:
            if conn.execute(_COUNTS_DAY_OF).scalar() == today:
                return False
        with self.engine.begin() as conn:
            # the day's row locked first (a write: SQLite's write lock, PostgreSQL's row lock that the
            # writers' FOR SHARE waits for), then read again: another worker may have moved it
            locked = conn.execute(_COUNTS_DAY.update().where(_COUNTS_DAY.c.id == 1).values(day=_COUNTS_DAY.c.day)).rowcount
            day = conn.execute(_COUNTS_DAY_OF).scalar() if locked else None
            if day == today:
                return False
            changes = _falling_due(conn, day, today)
            if changes:
                _upsert_counts(conn, [{"authority": a, "open_count": 0, "overdue_count": n} for a, n in sorted(changes.items())])
            if locked:
                conn.execute(_COUNTS_DAY.update().where(_COUNTS_DAY.c.id == 1).values(day=today))
            else:
                conn.execute(_COUNTS_DAY.insert().values(id=1, day=today))
        return True

    def published_from(self, authority: str, from_sequence: int, to_sequence: int | None = None) -> list[tuple[str, dict]]:
        """A recipient's published records with sequence >= from_sequence (<= to_sequence), in sequence
        order, as (schema name, record): its referrals ("Referral"), withdrawals ("ReferralWithdrawn") and
        due-date updates ("ReferralUpdated"), from the stored payloads (which never hold the identity code)."""
        out = []
        with self.Session() as s:
            for name, row_type in (("Referral", ReferralRow), ("ReferralWithdrawn", ReferralWithdrawalRow), ("ReferralUpdated", ReferralUpdateRow)):
                q = sa.select(row_type.sequence, row_type.payload).where(row_type.authority == authority, row_type.sequence >= from_sequence,
                                                                         row_type.published_at.is_not(None))
                if to_sequence is not None:
                    q = q.where(row_type.sequence <= to_sequence)
                out.extend((sequence, name, payload) for sequence, payload in s.execute(q))
        return [(name, self.codec.from_json(name, payload)) for _, name, payload in sorted(out)]

    def withdrawals(self, authority: str | None = None) -> list[dict]:
        """The withdrawals recorded (of one recipient), as ReferralWithdrawn records, in sequence order."""
        q = sa.select(ReferralWithdrawalRow.payload).order_by(ReferralWithdrawalRow.authority, ReferralWithdrawalRow.sequence)
        if authority is not None:
            q = q.where(ReferralWithdrawalRow.authority == authority)
        with self.Session() as s:
            return [self.codec.from_json("ReferralWithdrawn", payload) for payload in s.scalars(q)]

    def updates(self, authority: str | None = None) -> list[dict]:
        """The due-date updates recorded (of one recipient), as ReferralUpdated records, in sequence order."""
        q = sa.select(ReferralUpdateRow.payload).order_by(ReferralUpdateRow.authority, ReferralUpdateRow.sequence)
        if authority is not None:
            q = q.where(ReferralUpdateRow.authority == authority)
        with self.Session() as s:
            return [self.codec.from_json("ReferralUpdated", payload) for payload in s.scalars(q)]

    def due(self, referral_id_: str) -> dt.date | None:
        """A referral's due date as the ledger holds it now (after any update)."""
        with self.Session() as s:
            row = s.get(ReferralRow, referral_id_)
            return None if row is None else row.due

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
_WITHDRAWALS = ReferralWithdrawalRow.__table__
_UPDATES = ReferralUpdateRow.__table__
# the statements of the routing path, built once (expanding IN lists): building them per batch, and
# running them through an ORM session, was a large share of the ledger thread's time
_CLAIMS = {}  # dialect name -> INSERT of idempotency marks that skips those present and returns the event ids it inserted


def _claim(conn: sa.Connection):
    name = conn.dialect.name
    if name not in _CLAIMS:
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        _CLAIMS[name] = (insert(_PROCESSED).on_conflict_do_nothing(index_elements=[_PROCESSED.c.consumer, _PROCESSED.c.event_id])
                         .returning(_PROCESSED.c.event_id))
    return _CLAIMS[name]


_STATES = sa.select(_REFERRALS.c.referral_id, _REFERRALS.c.state).where(_REFERRALS.c.referral_id.in_(sa.bindparam("ids", expanding=True)))
_LOCK_SEQUENCES = (sa.select(_SEQUENCES.c.authority, _SEQUENCES.c.last_sequence).where(_SEQUENCES.c.authority.in_(sa.bindparam("authorities", expanding=True)))
                   .order_by(_SEQUENCES.c.authority).with_for_update())
_MARK_PUBLISHED = _REFERRALS.update().where(_REFERRALS.c.referral_id.in_(sa.bindparam("ids", expanding=True))).values(published_at=sa.bindparam("now"))
_MARK_WITHDRAWALS_PUBLISHED = (_WITHDRAWALS.update().where(_WITHDRAWALS.c.event_id.in_(sa.bindparam("ids", expanding=True)))
                               .values(published_at=sa.bindparam("now")))
_MARK_UPDATES_PUBLISHED = _UPDATES.update().where(_UPDATES.c.event_id.in_(sa.bindparam("ids", expanding=True))).values(published_at=sa.bindparam("now"))
# PostgreSQL: the three in one statement, the ids as one array parameter
_MARK_ALL_PUBLISHED = sa.text(
    "WITH r AS (UPDATE referrals SET published_at = :now WHERE referral_id = ANY(:ids)), "
    "w AS (UPDATE referral_withdrawals SET published_at = :now WHERE event_id = ANY(:ids)) "
    "UPDATE referral_updates SET published_at = :now WHERE event_id = ANY(:ids)")
# an open referral as OpenRef (the first five columns), and its due date
_OPEN_OF = (sa.select(_REFERRALS.c.referral_id, _REFERRALS.c.person_key, _REFERRALS.c.authority, _REFERRALS.c.purpose, _REFERRALS.c.state, _REFERRALS.c.due)
            .where(_REFERRALS.c.person_key.in_(sa.bindparam("keys", expanding=True)), _REFERRALS.c.state.not_in(sorted(CLOSED)))
            .order_by(_REFERRALS.c.authority, _REFERRALS.c.sequence))
_UPDATE_SEQUENCE = _SEQUENCES.update().where(_SEQUENCES.c.authority == sa.bindparam("a")).values(last_sequence=sa.bindparam("n"))
_COUNTS = ReferralCountRow.__table__
_COUNTS_DAY = ReferralCountDayRow.__table__
_COUNTS_DAY_OF = sa.select(_COUNTS_DAY.c.day).where(_COUNTS_DAY.c.id == 1)
# a writer's read of the day: FOR SHARE on PostgreSQL, so that the day cannot move between this read
# and the commit of the counts changed against it (writers do not wait for each other)
_COUNTS_DAY_SHARED = _COUNTS_DAY_OF.with_for_update(read=True)


def count_deltas(changes: list[tuple[str, dt.date | None, int]], day: dt.date | None) -> list[dict]:
    """The rows to add to `referral_counts` for these changes to open referrals: (authority, due, +1 for
    one more open referral with that due date, -1 for one less), overdue when due before `day`. A
    due-date change is -1 with the old date and +1 with the new. Sorted by authority, none all zero."""
    out: dict[str, list[int]] = {}
    for authority, due, n in changes:
        row = out.setdefault(authority, [0, 0])
        row[0] += n
        if due is not None and day is not None and due < day:
            row[1] += n
    return [{"authority": a, "open_count": o, "overdue_count": d} for a, (o, d) in sorted(out.items()) if o or d]


def _count(conn: sa.Connection, changes: list[tuple[str, dt.date | None, int]]) -> None:
    """Add these changes (`count_deltas`) to the counts, in the writer's transaction, after its referral rows."""
    if changes:
        _upsert_counts(conn, count_deltas(changes, conn.execute(_COUNTS_DAY_SHARED).scalar()))


def _upsert_counts(conn: sa.Connection, rows: list[dict]) -> None:
    """Add `rows` (authority, open_count, overdue_count) to the counts, making the rows missing; in
    authority order (the locks of concurrent writers in one order)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(_COUNTS)
    conn.execute(stmt.on_conflict_do_update(index_elements=[_COUNTS.c.authority], set_={
        "open_count": _COUNTS.c.open_count + stmt.excluded.open_count, "overdue_count": _COUNTS.c.overdue_count + stmt.excluded.overdue_count}), rows)


def _falling_due(conn: sa.Connection, day: dt.date | None, today: dt.date, authorities: set[str] | None = None) -> dict[str, int]:
    """authority -> how many more open referrals are overdue on `today` than on `day` (fewer: negative,
    when `today` is before `day`): those due in between, read by a range on the index of `due`. No day
    yet: every open referral due before `today`."""
    if day == today:
        return {}
    r = _REFERRALS.c
    if day is None:
        span, sign = r.due < today, 1
    elif day < today:
        span, sign = sa.and_(r.due >= day, r.due < today), 1
    else:
        span, sign = sa.and_(r.due >= today, r.due < day), -1
    q = sa.select(r.authority, sa.func.count()).where(span, r.state.not_in(sorted(CLOSED))).group_by(r.authority)
    if authorities is not None:
        q = q.where(r.authority.in_(sorted(authorities)))
    return {a: sign * int(n) for a, n in conn.execute(q)}


class _Batch:
    """One transaction of `record_many`, in Core statements on a connection: a few round trips per
    batch rather than about ten ORM round trips per newcomer (the ORM's per-object work dominated the
    worker's time). Inserts name the tables, not the mapped classes: the ORM's bulk insert path costs
    more than the insert itself."""

    def __init__(self, s: sa.Connection, codec: Codec, now: dt.datetime):
        self.s, self.codec, self.now = s, codec, now
        self.referrals: list[dict] = []  # rows to insert
        self.events: list[dict] = []
        self.locked: set[str] = set()  # authorities whose sequence row this transaction locked (or found missing)
        self.stored: dict[str, int] = {}  # authority -> last sequence in the table (locked)
        self.sequences: dict[str, int] = {}  # authority -> last sequence given in this batch
        # the person's current referral per (person, recipient, purpose), by its first id: [id, generation, state (None: not made)]
        self.current: dict[str, list] = {}
        self.first_of: dict[str, str] = {}  # referral id -> the first id of its (person, recipient, purpose)
        self.counted: list[tuple[str, dt.date | None, int]] = []  # changes of the open referrals (`count_deltas`)

    def run(self, items: list[tuple[RoutingInput, list[Decision]]]) -> list[Recorded]:
        s, now = self.s, self.now
        ids = [str(n.event_id) for n, _ in items]
        # the idempotency marks of the batch's events in one statement: those it inserted are the events
        # seen for the first time (a mark another worker holds uncommitted is waited for, then a duplicate)
        new = set(s.scalars(_claim(s), [{"consumer": ROUTING_CONSUMER, "event_id": e, "processed_at": now} for e in sorted(set(ids))]))
        out = [Recorded() for _ in items]
        first: list[int] = []
        for i, event_id in enumerate(ids):
            if event_id in new:
                new.discard(event_id)  # the same event again later in the batch is a duplicate
                first.append(i)
            else:
                out[i].duplicate = True
        if first:
            _rekey_newcomer_facts(s, [items[i][0] for i in first])
            record_newcomers(s, [items[i][0] for i in first], now)  # the facts `hub report` counts by (no identity code)
            planned = {i: [(d, referral_id(items[i][0].person_key, d)) for d in items[i][1]] for i in first}
            self._resolve({rid for pairs in planned.values() for _, rid in pairs})
            updates = {i for i in first if _supersedes(items[i][0])}
            keys = sorted({k for i in updates for k in (items[i][0].person_key, items[i][0].previous_person_key) if k})
            open_authorities = {row.authority for row in s.execute(_OPEN_OF, {"keys": keys})} if keys else set()
            # locked in one order by every worker (PostgreSQL): no deadlock between batches
            self._lock(sorted({d.authority for pairs in planned.values() for d, _ in pairs} | open_authorities))
            for i in first:
                newcomer, decisions = items[i]
                for decision, first_id in planned[i]:
                    rid = self._to_make(first_id)
                    if rid is None:
                        continue  # made earlier (same person, recipient and purpose) and not superseded: never twice
                    out[i].created.append(self._add(newcomer, decision, rid))
                if i in updates:
                    self._flush()  # the update supersedes what this batch made before it, too
                    current = {(d.authority, d.purpose): self.current[f][0] for d, f in planned[i]}
                    self._supersede(newcomer, decisions, out[i], current)
                    self._update_dues(newcomer, decisions, out[i], current)
            self._flush()
            self._save_sequences()
            _count(s, self.counted)
            for i in first:  # the outbox of a first-time event: exactly what it created and withdrew
                out[i].to_publish = sorted(out[i].created, key=lambda r: (r["to"], r["sequence"]))
        fresh = {ids[i] for i in first}  # their referrals go out with their first occurrence in this batch
        again = [i for i in range(len(items)) if out[i].duplicate and ids[i] not in fresh]
        if again:  # the outbox: what a redelivered event has not published yet (a crash between commit and send)
            wanted = {ids[i] for i in again}
            for name, table, target in (("Referral", _REFERRALS, "to_publish"), ("ReferralWithdrawn", _WITHDRAWALS, "withdrawals"),
                                        ("ReferralUpdated", _UPDATES, "updates")):
                t = table.c
                q = (sa.select(t.newcomer_event_id, t.payload)
                     .where(t.newcomer_event_id.in_(wanted), t.published_at.is_(None))
                     .order_by(t.authority, t.sequence))
                pending: dict[str, list[dict]] = {}
                for event_id, payload in s.execute(q):
                    pending.setdefault(event_id, []).append(self.codec.from_json(name, payload))
                for i in again:
                    setattr(out[i], target, list(pending.pop(ids[i], ())))  # the same event twice in a batch sends once
        return out

    def _resolve(self, first_ids: set[str]) -> None:
        """The current referral of each (person, recipient, purpose) by its first id: the first one, or
        after it was superseded the next one (`reissued_id`), and so on; one query per generation."""
        pending = {f: (f, 1) for f in first_ids}
        while pending:
            states = dict(self.s.execute(_STATES, {"ids": sorted(rid for rid, _ in pending.values())}).all())
            later = {}
            for first_id, (rid, generation) in pending.items():
                state = states.get(rid)
                if state == "superseded":
                    later[first_id] = (reissued_id(first_id, generation + 1), generation + 1)
                else:
                    self.current[first_id] = [rid, generation, state]
                    self.first_of[rid] = first_id
            pending = later

    def _to_make(self, first_id: str) -> str | None:
        """The id of the referral to make for this decision, or None when the person has it already
        (open or closed, but not superseded): made once, and again only after a supersession."""
        current = self.current[first_id]
        rid, generation, state = current
        if state == "superseded":  # superseded by an update earlier in this batch
            generation += 1
            rid = reissued_id(first_id, generation)
        elif state is not None:
            return None
        self.current[first_id] = [rid, generation, SENT]
        self.first_of[rid] = first_id
        return rid

    def _lock(self, authorities: list[str]) -> None:
        """Lock the sequence rows of these recipients (those not locked yet), in one order."""
        wanted = sorted(set(authorities) - self.locked)
        if wanted:
            self.stored.update(self.s.execute(_LOCK_SEQUENCES, {"authorities": wanted}).all())
            self.locked.update(wanted)

    def _next(self, authority: str) -> int:
        """The recipient's next sequence number: one numbering for its referrals, withdrawals and updates."""
        self._lock([authority])
        self.sequences[authority] = sequence = self.sequences.get(authority, self.stored.get(authority, 0)) + 1
        return sequence

    def _add(self, newcomer: RoutingInput, decision: Decision, rid: str) -> dict:
        sequence = self._next(decision.authority)
        now = self.now
        record = referral_record(newcomer, decision, sequence=sequence, person_id=None, now=now, rid=rid)
        self.referrals.append({
            "referral_id": rid, "authority": decision.authority, "purpose": decision.purpose, "rule": decision.rule,
            "rules_version": decision.rules_version, "person_key": newcomer.person_key, "newcomer_event_id": newcomer.event_id,
            "due": decision.due, "created_at": now, "updated_at": now, "state": SENT, "sequence": sequence,
            "turvakielto": newcomer.turvakielto, "payload": self.codec.to_json("Referral", record), "published_at": None,
        })
        self.counted.append((decision.authority, decision.due, 1))
        self.events.append({"referral_id": rid, "event_id": newcomer.event_id, "state": SENT, "reason": decision.rule, "reported_by": "hub",
                            "occurred_at": now, "recorded_at": now})
        return record

    def _supersede(self, newcomer: RoutingInput, decisions: list[Decision], out: Recorded, ids: dict[tuple[str, str], str]) -> None:
        """Supersede the open referrals this update no longer needs, each with a withdrawal to its recipient."""
        s, now = self.s, self.now
        keys = [k for k in (newcomer.person_key, newcomer.previous_person_key) if k]
        rows = s.execute(_OPEN_OF, {"keys": keys}).all()
        gone = supersessions(newcomer, decisions, [OpenRef(*row[:5]) for row in rows], ids)
        if not gone:
            return
        due_of = {row[0]: row[5] for row in rows}
        self.counted.extend((g.authority, due_of[g.referral_id], -1) for g in gone)
        for g in gone:
            first_id = self.first_of.get(g.referral_id)
            if first_id is not None:  # a later update in this batch that decides it again makes it anew
                self.current[first_id][2] = "superseded"
        r = _REFERRALS.c
        s.execute(_REFERRALS.update().where(r.referral_id.in_([g.referral_id for g in gone])).values(state="superseded", updated_at=now))
        s.execute(ReferralEventRow.__table__.insert(), [{"referral_id": g.referral_id, "event_id": newcomer.event_id, "state": "superseded", "reason": g.reason,
                                                         "reported_by": "hub", "occurred_at": now, "recorded_at": now} for g in gone])
        rows = []
        for g in gone:
            record = withdrawal_record(g, sequence=self._next(g.authority), newcomer=newcomer, now=now)
            rows.append({"referral_id": g.referral_id, "event_id": record["event_id"], "authority": g.authority, "sequence": record["sequence"],
                         "cause": g.cause, "newcomer_event_id": newcomer.event_id, "created_at": now,
                         "payload": self.codec.to_json("ReferralWithdrawn", record), "published_at": None})
            out.withdrawals.append(record)
        s.execute(_WITHDRAWALS.insert(), rows)
        out.superseded.extend(g.referral_id for g in gone)
        out.superseded_authorities = sorted(set(out.superseded_authorities) | {g.authority for g in gone})

    def _update_dues(self, newcomer: RoutingInput, decisions: list[Decision], out: Recorded, ids: dict[tuple[str, str], str]) -> None:
        """Move the due date of each open referral this update keeps whose decision now has another one,
        each with a ReferralUpdated to its recipient (after the update's withdrawals)."""
        if not newcomer.person_key:
            return
        s, now = self.s, self.now
        open_refs = [(OpenRef(*row[:5]), row[5]) for row in s.execute(_OPEN_OF, {"keys": [newcomer.person_key]})]
        changed = due_updates(newcomer, decisions, open_refs, ids)
        if not changed:
            return
        r = _REFERRALS.c
        rows = []
        for u in changed:
            s.execute(_REFERRALS.update().where(r.referral_id == u.referral_id).values(due=u.due, updated_at=now))
            self.counted += [(u.authority, u.previous_due, -1), (u.authority, u.due, 1)]
            record = update_record(u, sequence=self._next(u.authority), newcomer=newcomer, now=now)
            rows.append({"event_id": record["event_id"], "referral_id": u.referral_id, "authority": u.authority, "sequence": record["sequence"],
                         "due": u.due, "previous_due": u.previous_due, "newcomer_event_id": newcomer.event_id, "created_at": now,
                         "payload": self.codec.to_json("ReferralUpdated", record), "published_at": None})
            out.updates.append(record)
        s.execute(_UPDATES.insert(), rows)  # the referral's due-date history (referral_events keeps its states)
        out.superseded_authorities = sorted(set(out.superseded_authorities) | {u.authority for u in changed})

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


def _supersedes(newcomer: RoutingInput) -> bool:
    """Whether this update may supersede referrals: a move, new circumstances, an identity-code correction."""
    return newcomer.change in ("moved", "circumstances") or bool(newcomer.previous_person_key)


def _rekey_newcomer_facts(s: sa.Connection, newcomers: list[RoutingInput]) -> None:
    """After an identity-code correction the person's newcomer facts move to the new key, so `hub report`
    counts the person once (a municipality the new key has a row for already keeps that row)."""
    t = NewcomerFactRow.__table__
    for n in newcomers:
        old, new = n.previous_person_key, n.person_key
        if not old or not new or old == new:
            continue
        have = set(s.scalars(sa.select(t.c.municipality).where(t.c.person_key == new)))
        if have:
            s.execute(t.delete().where(t.c.person_key == old, t.c.municipality.in_(sorted(have))))
        s.execute(t.update().where(t.c.person_key == old).values(person_key=new))


def refresh_gauges(ledger: ReferralLedger, today: dt.date, authorities: set[str] | None = None) -> None:
    """Set hub_referrals_open / hub_referrals_overdue per authority (all, or those given) from the counts
    table, its day moved to `today` first (once a day: the referrals that fell due since)."""
    from hub import metrics

    ledger.move_counts_day(today)
    for authority, (open_count, overdue_count) in ledger.counts_by_authority(today, authorities).items():
        metrics.open_referrals.labels(authority).set(open_count)
        metrics.overdue_referrals.labels(authority).set(overdue_count)
