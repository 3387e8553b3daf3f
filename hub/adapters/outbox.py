"""The transactional outbox: messages written in the same database transaction as the state change
that caused them, and published to Kafka afterwards by the relay (hub.streams.outbox_relay).

A row is marked sent only after the broker acknowledged it, so a crash between the commit and the
publish loses nothing (the relay resends unsent rows on restart) and at worst repeats a message
whose consumers deduplicate by event id: exactly-once *effect*, not exactly-once delivery.

A row that cannot be sent for a reason of its own (too large for the producer, not encodable) is
*parked*: kept with its reason, left out of the pending ones, listed by `hub outbox parked` and
queued again by `hub outbox retry`. A plan request whose consent or legal basis no longer holds when
it is due to be sent is *withdrawn*: parked with the withdrawal reason, never sent nor retried.

Plan requests and notices are numbered per recipient and stream (hub.schemas.topics.STREAMS;
referrals are numbered by the referral ledger). The row is written with its recipient and stream;
its `sequence` (the same number as in the record) is given by the relay right before it sends the
row (`number`: the (recipient, stream) row of `outbox_sequences` locked until that transaction
commits), so a plan request withdrawn before it was sent takes no number and the recipient sees no
gap, no number is given twice, and the numbers follow the send order. One numbered by an attempt
whose send failed and withdrawn then gives its number back, or passes it to the stream's next unsent
row (`release_number`). Rows written by an earlier version were numbered when they were written and
keep that number. `sent_in_stream` is what `hub resend` sends again.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.adapters.database import Base
from hub.adapters.sealing import Sealed


class OutboxMessage(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(sa.String(255))
    key: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    schema_name: Mapped[str] = mapped_column(sa.String(64))
    event_id: Mapped[str] = mapped_column(sa.String(64))
    value: Mapped[bytes] = mapped_column(Sealed())  # the record (plan requests carry identity codes and assessment data): sealed
    headers: Mapped[str] = mapped_column(sa.Text)  # JSON list of [name, latin-1 text]: CloudEvents attributes, no personal data
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True, index=True)
    parked_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    parked_reason: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # UNSENDABLE or a withdrawal reason
    parked_detail: Mapped[str | None] = mapped_column(sa.Text, nullable=True)  # the error's class and message, no record content
    # a numbered message (plan request, notice): its recipient, stream (plan-requests, notices) and sequence number; null for the others
    recipient: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    stream: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    sequence: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)

    __table_args__ = (
        sa.Index("uq_outbox_recipient_stream_sequence", "recipient", "stream", "sequence", unique=True),
        # partial indexes (migration 0022): the relay's `pending` and `parked_counts` read only the rows they count
        sa.Index("ix_outbox_pending", "id", postgresql_where=sa.text("sent_at IS NULL AND parked_at IS NULL"),
                 sqlite_where=sa.text("sent_at IS NULL AND parked_at IS NULL")),
        sa.Index("ix_outbox_parked", "parked_reason", postgresql_where=sa.text("parked_at IS NOT NULL AND sent_at IS NULL"),
                 sqlite_where=sa.text("parked_at IS NOT NULL AND sent_at IS NULL")),
    )

    def header_list(self) -> list[tuple[str, bytes]]:
        return [(k, v.encode("latin-1")) for k, v in json.loads(self.headers)]


class OutboxSequenceRow(Base):
    """The last sequence number given to a recipient in one stream."""

    __tablename__ = "outbox_sequences"
    recipient: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    stream: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(sa.BigInteger())


def enqueue(session: Session, topic: str, schema_name: str, event_id: str, value: bytes, key: bytes | str | None,
            headers: list[tuple[str, bytes]], now: dt.datetime, *, recipient: str | None = None, stream: str | None = None,
            sequence: int | None = None) -> OutboxMessage:
    """Add a message to the outbox inside the caller's transaction (a numbered one with its recipient
    and stream; the relay gives it its `sequence` when it sends it: `number`)."""
    if isinstance(key, str):
        key = key.encode()
    row = OutboxMessage(
        topic=topic, key=key, schema_name=schema_name, event_id=str(event_id), value=value,
        headers=json.dumps([[k, v.decode("latin-1")] for k, v in headers]), created_at=now,
        recipient=recipient, stream=stream, sequence=sequence,
    )
    session.add(row)
    session.flush()
    return row


def number(session: Session, row_id: int, recipient: str, stream: str, renumber: Callable[[bytes, int], bytes]) -> tuple[int, bytes] | None:
    """Give an unsent numbered row (recipient, stream, no sequence yet) its recipient's next number in
    its stream, right before the relay sends it: (sequence, the record's bytes with it). A row that
    has its number already (another worker numbered it, or an earlier attempt whose send failed) keeps
    it; None when the row was sent or parked meanwhile. `renumber(value, n)` re-encodes the record
    with `sequence` n (an error from it rolls the caller's transaction back: no number is taken).

    The (recipient, stream) row of `outbox_sequences` is locked first (upserted, so a recipient's
    first number inserts it; two inserting at once meet at the primary key) and stays locked until
    the caller's transaction ends; the outbox row is read only then, so a worker that waited sees the
    number the other one gave. So no number is given twice, none is left unused (a row withdrawn
    before it was sent never takes one), and the numbers follow the order the rows are sent in."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # SQLite, in unit tests and the demo (it serialises writers itself)
        from sqlalchemy.dialects.sqlite import insert
    table = OutboxSequenceRow.__table__
    q = insert(table).values(recipient=recipient, stream=stream, last_sequence=0)
    q = q.on_conflict_do_update(index_elements=[table.c.recipient, table.c.stream], set_={"last_sequence": table.c.last_sequence})
    last = session.execute(q.returning(table.c.last_sequence)).scalar_one()
    current = session.execute(sa.select(OutboxMessage.sequence, OutboxMessage.value, OutboxMessage.sent_at, OutboxMessage.parked_at)
                              .where(OutboxMessage.id == row_id)).one_or_none()
    if current is None:
        return None
    if current.sequence is not None:
        return current.sequence, current.value
    if current.sent_at is not None or current.parked_at is not None:
        return None
    sequence = last + 1
    value = renumber(current.value, sequence)
    session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == row_id).values(sequence=sequence, value=value))
    session.execute(sa.update(table).where(table.c.recipient == recipient, table.c.stream == stream).values(last_sequence=sequence))
    return sequence, value


RETURNED, PASSED, KEPT = "returned", "passed", "kept"  # what `release_number` did with a withdrawn row's number


def release_number(session: Session, row_id: int, renumber: Callable[[str, bytes, int], bytes]) -> str | None:
    """Take its number from an unsent numbered row that is being withdrawn (its send failed, then its
    consent or legal basis ended), in the withdrawing transaction and before the row is parked, so
    that the recipient sees no gap for a record it will never get:

    - RETURNED: the number is its stream's last one given: `last_sequence` goes back by one (and
      further past the numbers of rows withdrawn earlier that are last then), so the next row sent
      takes it;
    - PASSED: later numbers were given already: the stream's oldest unsent, unnumbered row takes it
      (`renumber(schema name, value, n)` re-encodes that row's record with it); it goes out after
      the later numbers;
    - KEPT: no such row: the row keeps its number, which stays unused (`hub resend` names it).

    None when the row has no number or was sent or parked meanwhile. The (recipient, stream) row of
    `outbox_sequences` is locked first, as `number` does, so no number is given twice."""
    row = session.execute(sa.select(OutboxMessage.recipient, OutboxMessage.stream, OutboxMessage.sequence)
                          .where(OutboxMessage.id == row_id)).one_or_none()
    if row is None or row.sequence is None or row.stream is None:
        return None
    recipient, stream, n = row.recipient, row.stream, row.sequence
    table = OutboxSequenceRow.__table__
    of_stream = (OutboxMessage.recipient == recipient, OutboxMessage.stream == stream)
    last = session.execute(sa.select(table.c.last_sequence).where(table.c.recipient == recipient, table.c.stream == stream)
                           .with_for_update()).scalar_one_or_none()
    unsent = (OutboxMessage.sent_at.is_(None), OutboxMessage.parked_at.is_(None))
    if session.execute(sa.select(OutboxMessage.id).where(OutboxMessage.id == row_id, OutboxMessage.sequence == n, *unsent)
                       .with_for_update()).one_or_none() is None:
        return None
    if last == n:
        session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == row_id).values(sequence=None))
        last -= 1
        while last > 0:  # a number below that a withdrawn row kept (KEPT) is the last one now: given back too
            held = session.execute(sa.select(OutboxMessage.id).where(*of_stream, OutboxMessage.sequence == last, OutboxMessage.sent_at.is_(None),
                                                                     OutboxMessage.parked_at.is_not(None), OutboxMessage.parked_reason.not_in(UNSENDABLE))
                                   ).scalar_one_or_none()
            if held is None:
                break
            session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == held).values(sequence=None))
            last -= 1
        session.execute(sa.update(table).where(table.c.recipient == recipient, table.c.stream == stream).values(last_sequence=last))
        return RETURNED
    successor = session.execute(sa.select(OutboxMessage.id, OutboxMessage.schema_name, OutboxMessage.value)
                                .where(*of_stream, OutboxMessage.sequence.is_(None), *unsent, OutboxMessage.id != row_id)
                                .order_by(OutboxMessage.id).limit(1).with_for_update()).one_or_none()
    if successor is None:
        return KEPT
    value = renumber(successor.schema_name, successor.value, n)
    session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == row_id).values(sequence=None))
    session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == successor.id).values(sequence=n, value=value))
    return PASSED


def last_sequence(session: Session, recipient: str, stream: str) -> int:
    """The last number given to the recipient in this stream (0: none yet)."""
    row = session.get(OutboxSequenceRow, (recipient, stream))
    return row.last_sequence if row is not None else 0


def sent_in_stream(session: Session, recipient: str, stream: str, from_sequence: int, to_sequence: int | None = None) -> list[OutboxMessage]:
    """The recipient's numbered rows of this stream from `from_sequence` (to `to_sequence`), in sequence
    order: sent, not yet sent and parked ones (the caller tells them apart)."""
    q = sa.select(OutboxMessage).where(OutboxMessage.recipient == recipient, OutboxMessage.stream == stream,
                                       OutboxMessage.sequence >= from_sequence)
    if to_sequence is not None:
        q = q.where(OutboxMessage.sequence <= to_sequence)
    return list(session.scalars(q.order_by(OutboxMessage.sequence)))


def pending(session: Session, limit: int = 500, after_id: int = 0) -> list[OutboxMessage]:
    """Unsent, unparked messages after `after_id`, oldest first (publishing in this order keeps a notice
    behind the request it concerns)."""
    q = sa.select(OutboxMessage).where(OutboxMessage.sent_at.is_(None), OutboxMessage.parked_at.is_(None), OutboxMessage.id > after_id)
    return list(session.scalars(q.order_by(OutboxMessage.id).limit(limit)))


def mark_sent(session: Session, ids: list[int], now: dt.datetime) -> None:
    if ids:
        session.execute(sa.update(OutboxMessage).where(OutboxMessage.id.in_(ids), OutboxMessage.sent_at.is_(None)).values(sent_at=now))


def unsent_count(session: Session) -> int:
    """Rows not sent: pending, parked and withdrawn. Counted as the pending ones and the parked ones,
    each by its partial index (migration 0022), so the count reads the unsent rows, not the outbox."""
    unsent = OutboxMessage.sent_at.is_(None)
    pending = session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(unsent, OutboxMessage.parked_at.is_(None)))
    held = session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(OutboxMessage.parked_at.is_not(None), unsent))
    return (pending or 0) + (held or 0)


def last_id(session: Session) -> int:
    return session.scalar(sa.select(sa.func.max(OutboxMessage.id))) or 0


# Reasons a row cannot be sent on its own account (an operator may fix the cause and retry it).
RECORD_TOO_LARGE, INVALID_RECORD, INVALID_TOPIC, ENCODING_ERROR = "record_too_large", "invalid_record", "invalid_topic", "encoding_error"
UNSENDABLE = (RECORD_TOO_LARGE, INVALID_RECORD, INVALID_TOPIC, ENCODING_ERROR)


def park(session: Session, row_id: int, reason: str, detail: str | None, now: dt.datetime) -> bool:
    """Take an unsent row out of the pending ones with its reason (an UNSENDABLE one, or a withdrawal)."""
    q = sa.update(OutboxMessage).where(OutboxMessage.id == row_id, OutboxMessage.sent_at.is_(None), OutboxMessage.parked_at.is_(None))
    return session.execute(q.values(parked_at=now, parked_reason=reason, parked_detail=detail)).rowcount == 1


def drop_value(session: Session, row_id: int) -> None:
    """Remove the personal data of a row that will never be sent (a withdrawn plan request); its
    headers (event id, type, source, time) stay."""
    session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == row_id, OutboxMessage.sent_at.is_(None)).values(value=b""))


def parked(session: Session, limit: int = 1000) -> list[OutboxMessage]:
    """Parked and withdrawn rows, oldest first."""
    q = sa.select(OutboxMessage).where(OutboxMessage.parked_at.is_not(None), OutboxMessage.sent_at.is_(None)).order_by(OutboxMessage.id).limit(limit)
    return list(session.scalars(q))


def parked_counts(session: Session) -> dict[str, int]:
    """Reason -> rows parked for a reason of their own (UNSENDABLE; withdrawals are not counted)."""
    q = (sa.select(OutboxMessage.parked_reason, sa.func.count()).where(OutboxMessage.parked_at.is_not(None), OutboxMessage.sent_at.is_(None),
                                                                         OutboxMessage.parked_reason.in_(UNSENDABLE))
         .group_by(OutboxMessage.parked_reason))
    return {reason: n for reason, n in session.execute(q)}


def unpark(session: Session, row_id: int) -> OutboxMessage | None:
    """Queue a parked row again (it goes out before every later row); None when there is no such parked row.
    Raises ValueError for a withdrawn row: its consent or legal basis ended, so it is never sent."""
    row = session.get(OutboxMessage, row_id)
    if row is None or row.parked_at is None or row.sent_at is not None:
        return None
    if row.parked_reason not in UNSENDABLE:
        raise ValueError(f"outbox row {row_id} was withdrawn ({row.parked_reason}): it is never sent")
    row.parked_at, row.parked_reason, row.parked_detail = None, None, None
    return row
