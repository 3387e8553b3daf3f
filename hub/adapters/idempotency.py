"""Idempotency by event id: a consumer records each event it has applied, in the same transaction."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.domain.clock import utcnow
from hub.adapters.database import Base


class ProcessedEvent(Base):
    __tablename__ = "processed_events"
    consumer: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    processed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


def first_time(session: Session, consumer: str, event_id: str) -> bool:
    """Record that `consumer` applies `event_id`; False when it was applied before.

    Call inside the transaction that applies the event, so both commit or neither does.
    """
    if session.get(ProcessedEvent, (consumer, str(event_id))) is not None:
        return False
    session.add(ProcessedEvent(consumer=consumer, event_id=str(event_id), processed_at=utcnow()))
    session.flush()
    return True
