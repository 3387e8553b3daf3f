"""The transactional outbox: messages written in the same database transaction as the state change
that caused them, and published to Kafka afterwards by the relay (hub.streams.outbox_relay).

A row is marked sent only after the broker acknowledged it, so a crash between the commit and the
publish loses nothing (the relay resends unsent rows on restart) and at worst repeats a message
whose consumers deduplicate by event id: exactly-once *effect*, not exactly-once delivery.
"""

from __future__ import annotations

import datetime as dt
import json

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

    def header_list(self) -> list[tuple[str, bytes]]:
        return [(k, v.encode("latin-1")) for k, v in json.loads(self.headers)]


def enqueue(session: Session, topic: str, schema_name: str, event_id: str, value: bytes, key: bytes | str | None,
            headers: list[tuple[str, bytes]], now: dt.datetime) -> OutboxMessage:
    """Add a message to the outbox inside the caller's transaction."""
    if isinstance(key, str):
        key = key.encode()
    row = OutboxMessage(
        topic=topic, key=key, schema_name=schema_name, event_id=str(event_id), value=value,
        headers=json.dumps([[k, v.decode("latin-1")] for k, v in headers]), created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def pending(session: Session, limit: int = 500) -> list[OutboxMessage]:
    """Unsent messages, oldest first (publishing in this order keeps a notice behind the request it concerns)."""
    return list(session.scalars(sa.select(OutboxMessage).where(OutboxMessage.sent_at.is_(None)).order_by(OutboxMessage.id).limit(limit)))


def mark_sent(session: Session, ids: list[int], now: dt.datetime) -> None:
    if ids:
        session.execute(sa.update(OutboxMessage).where(OutboxMessage.id.in_(ids), OutboxMessage.sent_at.is_(None)).values(sent_at=now))


def unsent_count(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))) or 0
