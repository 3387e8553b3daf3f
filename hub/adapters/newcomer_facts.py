"""Newcomer facts in the coordination ledger: what the programme indicators count people by.

One row per person (pseudonymous key) and municipality where the person became a newcomer or
moved to as one; written by the routing use case in the transaction that records the newcomer's
referrals. It holds no identity code, no name, no address: only the key, the municipality, the
mother tongue, the nationalities, the arrival date and when the register change happened.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.adapters.database import Base
from hub.routing.model import RoutingInput


class NewcomerFactRow(Base):
    __tablename__ = "newcomers"
    __table_args__ = (sa.Index("ix_newcomers_municipality_registered_at", "municipality", "registered_at"),)
    person_key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    municipality: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    mother_tongue: Mapped[str | None] = mapped_column(sa.String(8), nullable=True)
    nationalities: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)  # ISO alpha-2, comma-separated
    arrival_date: Mapped[dt.date | None] = mapped_column(sa.Date(), nullable=True)
    registered_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))  # the Newcomer's occurred_at
    detected_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))  # when the hub routed it
    newcomer_event_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


def record_newcomer(s: Session, newcomer: RoutingInput, now: dt.datetime) -> None:
    """Insert the person's row for the newcomer's municipality, or refresh its language and nationality facts."""
    if not newcomer.person_key or not newcomer.municipality_code:
        return
    nationalities = ",".join(newcomer.nationalities) or None
    row = s.get(NewcomerFactRow, (newcomer.person_key, newcomer.municipality_code))
    if row is None:
        s.add(
            NewcomerFactRow(
                person_key=newcomer.person_key,
                municipality=newcomer.municipality_code,
                mother_tongue=newcomer.mother_tongue,
                nationalities=nationalities,
                arrival_date=newcomer.arrival_date,
                registered_at=newcomer.occurred_at or now,
                detected_at=now,
                newcomer_event_id=newcomer.event_id,
            )
        )
    else:  # circumstances changed (language, nationality): keep when the person arrived
        row.mother_tongue = newcomer.mother_tongue or row.mother_tongue
        row.nationalities = nationalities or row.nationalities
        row.arrival_date = newcomer.arrival_date or row.arrival_date
    s.flush()
