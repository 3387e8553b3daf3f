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

from hub.adapters.database import Base, in_chunks
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


def record_newcomers(s: Session | sa.Connection, newcomers: list[RoutingInput], now: dt.datetime) -> None:
    """For each newcomer event, in order: insert the person's row for its municipality, or refresh
    its language and nationality facts (keeping when the person arrived). Two statements a batch."""
    wanted = [n for n in newcomers if n.person_key and n.municipality_code]
    if not wanted:
        return
    t = NewcomerFactRow.__table__
    keys = {(n.person_key, n.municipality_code) for n in wanted}
    rows: dict[tuple[str, str], dict] = {}
    for person_keys in in_chunks(sorted({k for k, _ in keys})):
        q = sa.select(t.c.person_key, t.c.municipality, t.c.mother_tongue, t.c.nationalities, t.c.arrival_date).where(t.c.person_key.in_(person_keys))
        for r in s.execute(q):
            if (r.person_key, r.municipality) in keys:
                rows[(r.person_key, r.municipality)] = {"mother_tongue": r.mother_tongue, "nationalities": r.nationalities, "arrival_date": r.arrival_date}
    new: dict[tuple[str, str], dict] = {}
    changed: set[tuple[str, str]] = set()
    for n in wanted:
        key = (n.person_key, n.municipality_code)
        nationalities = ",".join(n.nationalities) or None
        row = new.get(key) or rows.get(key)
        if row is None:
            new[key] = {"person_key": n.person_key, "municipality": n.municipality_code, "mother_tongue": n.mother_tongue, "nationalities": nationalities,
                        "arrival_date": n.arrival_date, "registered_at": n.occurred_at or now, "detected_at": now, "newcomer_event_id": n.event_id}
        else:  # circumstances changed (language, nationality): keep when the person arrived
            row.update(mother_tongue=n.mother_tongue or row["mother_tongue"], nationalities=nationalities or row["nationalities"],
                       arrival_date=n.arrival_date or row["arrival_date"])
            if key not in new:
                changed.add(key)
    if new:
        s.execute(sa.insert(t), list(new.values()))
    if changed:
        s.execute(
            t.update().where(t.c.person_key == sa.bindparam("k"), t.c.municipality == sa.bindparam("m"))
            .values(mother_tongue=sa.bindparam("mt"), nationalities=sa.bindparam("na"), arrival_date=sa.bindparam("ad")),
            [{"k": k, "m": m, "mt": rows[(k, m)]["mother_tongue"], "na": rows[(k, m)]["nationalities"], "ad": rows[(k, m)]["arrival_date"]} for k, m in sorted(changed)],
        )
