"""The consent registry in SQL: append-only consent history, held items, the disclosure audit.

Tables are created by the Alembic revisions 0002_consent, 0012_consent_identity,
0013_sealed_personal_data and 0017_own_plan_requests. Nothing here is updated in place except a held item's release
(released_at, request_id) and a tombstone's last_seen_at; consent history and disclosures are only
added to.

A consent is identified by its person and its consent id together: consent ids are free text from
the publishers, so two persons may have consents with the same id. A person's rows are found by the person key (`hub.domain.hetu.person_key`, computed
by the caller); no identity code or assessment data is stored in clear: the consent history keeps
the identity code sealed (an expiry or revocation is published with it), a held item keeps its
assessment sealed (`hub.adapters.sealing`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from hub.adapters import outbox as _outbox  # noqa: F401 - registers the table disclosures.outbox_id refers to
from hub.adapters.database import Base
from hub.adapters.sealing import Sealed, SealedText
from hub.consent.model import ConsentRecord
from hub.domain.clock import iso_utc


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives naive datetimes back; every time the hub stores is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class ConsentEvent(Base):
    """One entry of the append-only consent history."""

    __tablename__ = "consent_events"
    __table_args__ = (sa.Index("ix_consent_events_person_consent", "person_key", "consent_id"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    consent_id: Mapped[str] = mapped_column(sa.String(128), index=True)
    person_id: Mapped[str] = mapped_column(SealedText())  # the identity code, sealed
    person_key: Mapped[str] = mapped_column(sa.String(64), index=True)
    action: Mapped[str] = mapped_column(sa.String(16))
    purpose: Mapped[str] = mapped_column(sa.String(64))
    data_categories: Mapped[str] = mapped_column(sa.Text)  # JSON list
    recipients: Mapped[str] = mapped_column(sa.Text)  # JSON list
    valid_from: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    valid_until: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True, index=True)  # the sweep's search
    evidence: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    recorded_by: Mapped[str] = mapped_column(sa.String(64))
    recorded_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))  # when the consent event happened
    stored_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))  # when the hub stored it

    def to_record(self) -> ConsentRecord:
        return ConsentRecord(
            event_id=self.event_id, consent_id=self.consent_id, person_id=self.person_id, action=self.action,
            recorded_by=self.recorded_by, recorded_at=_utc(self.recorded_at), purpose=self.purpose,
            data_categories=frozenset(json.loads(self.data_categories)), recipients=frozenset(json.loads(self.recipients)),
            valid_from=_utc(self.valid_from), valid_until=_utc(self.valid_until), evidence=self.evidence,
        )


class ConsentTombstone(Base):
    """What stays of an ended consent once retention removed its history: enough to refuse the
    consent's events should Kafka still hold them and a replay bring them back. No personal data
    beyond the pseudonymous key; kept while a replay could still deliver the consent's events
    (the retention job's replay horizon, counted from `last_seen_at`)."""

    __tablename__ = "consent_tombstones"
    person_key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    consent_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    ended_action: Mapped[str] = mapped_column(sa.String(16))  # revoked or expired
    ended_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), index=True)  # removal, or the latest event refused by it


class HeldItem(Base):
    """An assessment no consent covered yet, kept (as the original Avro bytes) until one does."""

    __tablename__ = "held_items"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    assessment_event_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    assessment_id: Mapped[str] = mapped_column(sa.String(128))
    person_key: Mapped[str] = mapped_column(sa.String(64), index=True)
    assessor: Mapped[str] = mapped_column(sa.String(64))
    recipient: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.String(32))
    assessment: Mapped[bytes] = mapped_column(Sealed())  # AssessmentCompleted, wire format, sealed
    held_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    released_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True, index=True)
    request_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class Disclosure(Base):
    """The plan-request ledger and the disclosure audit: who received which categories of whose data,
    when, on which consent or legal basis. A plan request to the assessor itself (it makes the plan)
    has a row with `disclosed` false: nothing was disclosed, so the audit (`disclosures`) leaves it
    out; `hub report` counts every plan request."""

    __tablename__ = "disclosures"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    person_key: Mapped[str] = mapped_column(sa.String(64), index=True)
    recipient: Mapped[str] = mapped_column(sa.String(64))
    assessor: Mapped[str] = mapped_column(sa.String(64))
    assessment_id: Mapped[str] = mapped_column(sa.String(128))
    data_categories: Mapped[str] = mapped_column(sa.Text)  # JSON list
    consent_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, index=True)
    legal_basis: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    disclosed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))  # when the plan request was decided
    outbox_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("outbox.id"))
    disclosed: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())  # false: to the assessor itself

    def as_dict(self) -> dict:
        return {
            "disclosed_at": iso_utc(self.disclosed_at),
            "recipient": self.recipient,
            "data_categories": json.loads(self.data_categories),
            "consent_id": self.consent_id,
            "legal_basis": self.legal_basis,
            "request_id": self.request_id,
            "assessor": self.assessor,
            "assessment_id": self.assessment_id,
        }


# -- writing -------------------------------------------------------------------------------------
def lock_person(session: Session, person_key: str) -> None:
    """Serialise the transactions of one person across workers (PostgreSQL advisory lock).

    Without it, an assessment held in one worker and a grant committed in another at the same moment
    could each miss the other. SQLite serialises writers itself.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(b"consent:" + person_key.encode()).digest()[:8], "big", signed=True)
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def add_consent_event(session: Session, rec: ConsentRecord, person_key: str, now: dt.datetime) -> ConsentEvent:
    row = ConsentEvent(
        event_id=rec.event_id, consent_id=rec.consent_id, person_id=rec.person_id, person_key=person_key, action=rec.action, purpose=rec.purpose,
        data_categories=json.dumps(sorted(rec.data_categories)), recipients=json.dumps(sorted(rec.recipients)),
        valid_from=rec.valid_from, valid_until=rec.valid_until, evidence=rec.evidence, recorded_by=rec.recorded_by,
        recorded_at=rec.recorded_at, stored_at=now,
    )
    session.add(row)
    session.flush()
    return row


def add_held(session: Session, *, assessment, person_key: str, encoded: bytes, reason: str, now: dt.datetime) -> HeldItem:
    row = HeldItem(
        assessment_event_id=assessment.event_id, assessment_id=assessment.assessment_id, person_key=person_key,
        assessor=assessment.assessor, recipient=assessment.plan_authority, reason=reason, assessment=encoded, held_at=now,
    )
    session.add(row)
    session.flush()
    return row


def mark_released(session: Session, item_id: int, request_id: str, now: dt.datetime) -> None:
    session.execute(sa.update(HeldItem).where(HeldItem.id == item_id, HeldItem.released_at.is_(None)).values(released_at=now, request_id=request_id))


def add_disclosure(session: Session, *, plan: dict, person_key: str, outbox_id: int, now: dt.datetime, disclosed: bool = True) -> Disclosure:
    """The ledger row of a plan request, under the hub's own person key of the person (`person_key`);
    `disclosed` false for a plan request to the assessor itself."""
    row = Disclosure(
        request_id=plan["request_id"], person_key=person_key, recipient=plan["to"],
        assessor=plan["assessor"], assessment_id=plan["assessment_id"], data_categories=json.dumps(plan["data_categories"]),
        consent_id=plan["consent_id"], legal_basis=plan["legal_basis"], disclosed_at=now, outbox_id=outbox_id, disclosed=disclosed,
    )
    session.add(row)
    session.flush()
    return row


# -- reading -------------------------------------------------------------------------------------
def history(session: Session, person_key: str) -> list[ConsentRecord]:
    """The person's consent history in the order the hub stored it."""
    rows = session.scalars(sa.select(ConsentEvent).where(ConsentEvent.person_key == person_key).order_by(ConsentEvent.id))
    return [r.to_record() for r in rows]


def consent_events_by_person(session: Session, consent_id: str) -> dict[str, ConsentEvent]:
    """Person id -> the first event of that person's consent `consent_id`, in the order stored
    (grouped here, after the identity codes are unsealed)."""
    out: dict[str, ConsentEvent] = {}
    for row in session.scalars(sa.select(ConsentEvent).where(ConsentEvent.consent_id == consent_id).order_by(ConsentEvent.id)):
        out.setdefault(row.person_id, row)
    return out


def touch_tombstone(session: Session, person_key: str, consent_id: str, now: dt.datetime) -> ConsentTombstone | None:
    """The tombstone of this person's consent, if retention left one; an event it refuses keeps it
    `now` longer (a replayed copy stays on Kafka for the topic's whole retention again)."""
    row = session.get(ConsentTombstone, (person_key, consent_id))
    if row is not None:
        row.last_seen_at = now
        session.flush()
    return row


def held(session: Session, person_key: str) -> list[HeldItem]:
    """The person's unreleased held items, oldest first."""
    q = sa.select(HeldItem).where(HeldItem.person_key == person_key, HeldItem.released_at.is_(None)).order_by(HeldItem.id)
    return list(session.scalars(q))


def held_count(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(HeldItem).where(HeldItem.released_at.is_(None))) or 0


def disclosures(session: Session, person_key: str) -> list[Disclosure]:
    """The person's disclosures (not the plan requests to an assessor itself), in the order made."""
    q = sa.select(Disclosure).where(Disclosure.person_key == person_key, Disclosure.disclosed.is_(True)).order_by(Disclosure.id)
    return list(session.scalars(q))


def persons_with_expiring_or_starting_consents(session: Session, now: dt.datetime) -> list[str]:
    """Persons with a grant whose valid_until has passed (may need an expiry record) or who have held
    items and a grant whose valid_from has passed (may now be released), by identity code. The pure
    rules decide."""
    end = aliased(ConsentEvent)
    ended = sa.exists().where(end.person_key == ConsentEvent.person_key, end.consent_id == ConsentEvent.consent_id, end.action != "granted")
    expiring = sa.select(ConsentEvent.person_id).where(
        ConsentEvent.action == "granted", ConsentEvent.valid_until.is_not(None), ConsentEvent.valid_until <= now, ~ended
    )
    starting = (
        sa.select(ConsentEvent.person_id)
        .where(ConsentEvent.action == "granted", ConsentEvent.valid_from.is_not(None), ConsentEvent.valid_from <= now)
        .where(ConsentEvent.person_key.in_(sa.select(HeldItem.person_key).where(HeldItem.released_at.is_(None))))
    )
    return sorted(set(session.scalars(expiring)) | set(session.scalars(starting)))


def persons_with_own_held_items(session: Session) -> list[str]:
    """Person keys with an unreleased held item whose assessor is its recipient: held before a plan
    request to the assessor itself needed no consent; the sweep releases it."""
    q = sa.select(HeldItem.person_key).where(HeldItem.released_at.is_(None), HeldItem.assessor == HeldItem.recipient).distinct()
    return sorted(session.scalars(q))
