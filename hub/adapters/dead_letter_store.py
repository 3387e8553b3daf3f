"""Dead letters too large for the dead-letter topic, kept whole in the hub database.

A dead letter carries its record's original bytes. When those (with the envelope) exceed what the
producer or the broker accepts, the record is kept here instead, its bytes sealed at rest
(`hub.adapters.sealing`: the original is personal data like any input), and the record on
`hub.dead-letters.v1` carries an empty original and points at the row (`location` = `pointer(id)`).
`hub dead-letters show ID` prints a row back.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.domain.clock import utcnow
from hub.adapters.database import Base
from hub.adapters.sealing import Sealed

POINTER_PREFIX = "hub-db:dead_letters/"


def pointer(row_id: int) -> str:
    """The `location` of a dead-letter record whose original is kept in the database."""
    return f"{POINTER_PREFIX}{row_id}"


def row_id_of(location: str | None) -> int | None:
    """The row a dead-letter record's `location` points at, None when it points at none."""
    if location and location.startswith(POINTER_PREFIX):
        tail = location[len(POINTER_PREFIX):]
        return int(tail) if tail.isdigit() else None
    return None


class DeadLetterRow(Base):
    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(sa.String(36))  # the DeadLetter record's event id on the topic
    original_topic: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    original_partition: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    original_offset: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)
    original_key: Mapped[bytes | None] = mapped_column(Sealed(), nullable=True)
    original_value: Mapped[bytes] = mapped_column(Sealed())
    location: Mapped[str | None] = mapped_column(sa.Text(), nullable=True)  # the record's own location (a file and line), if any
    reason: Mapped[str] = mapped_column(sa.String(64))
    message: Mapped[str] = mapped_column(sa.Text())
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


def _text(value: str | None) -> str | None:
    """Text PostgreSQL can store: a NUL (which a message may quote from a record) written as `\\x00`."""
    return None if value is None else value.replace("\x00", "\\x00")


class DeadLetterStore:
    """The `dead_letters` table (migration 0010). Synchronous: callers run it where their stream runs
    its database calls (`hub.adapters.database.DatabaseCalls`)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(self, record: dict, now: dt.datetime | None = None) -> int:
        """Keep a DeadLetter record (`hub.schemas.envelope.dead_letter_record`) whole; returns its row id."""
        row = {
            "event_id": str(record["event_id"]),
            "original_topic": record.get("original_topic"),
            "original_partition": record.get("original_partition"),
            "original_offset": record.get("original_offset"),
            "original_key": record.get("original_key"),
            "original_value": bytes(record.get("original_value") or b""),
            "location": _text(record.get("location")),
            "reason": _text(record["reason"]),
            "message": _text(record["message"]),
            "created_at": now or utcnow(),
        }
        with self.engine.begin() as conn:
            return conn.execute(sa.insert(DeadLetterRow.__table__).values(**row).returning(DeadLetterRow.__table__.c.id)).scalar_one()

    def get(self, row_id: int) -> dict | None:
        """A kept dead letter as a dict (the original's bytes opened), None when there is no such row."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(DeadLetterRow.__table__).where(DeadLetterRow.__table__.c.id == row_id)).mappings().first()
        return None if row is None else dict(row)
