"""Where routing keeps each person's circumstances: the hub database (SQLite embedded, PostgreSQL in
production), one row of `person_circumstances` per pseudonymous person key.

A row holds the facts other authorities reported (`hub.routing.circumstances.encode`: the latest
jobseeker status, residence permit and each identifier's service needs) and a snapshot of the
person's last Newcomer as routing read it (`encode_newcomer`: no identity code; each fact brings its
own). A fact that arrives before the person's Newcomer waits here with no snapshot; the Newcomer
finds it. Like detection's `person_states`, the row is pseudonymous personal data readable only by
the hub's database role, read and written for every record routing takes, and not sealed.

Routing reads the rows of a batch's persons in one query and writes the batch's changes in one
transaction, while the batch's referrals are recorded and before they are published (a crash
redoes the batch: facts are taken in order-free, and the referrals of a routing event are recorded
once).
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.adapters.database import Base, autocommit, in_chunks
from hub.services.ports import StoredCircumstances


class PersonCircumstancesRow(Base):
    __tablename__ = "person_circumstances"
    person_key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    facts: Mapped[str] = mapped_column(sa.Text())  # hub.routing.circumstances.encode
    newcomer: Mapped[str | None] = mapped_column(sa.Text(), nullable=True)  # the last Newcomer, without person_id; None: not seen yet
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class SqlCircumstances:
    """The persons' circumstances in the hub database (table `person_circumstances`, migration 0016);
    synchronous calls, one at a time (`hub.streams.service_ports.DatabaseCircumstances` awaits them)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._reads = autocommit(engine)  # get_many: one statement a chunk, no transaction around it on PostgreSQL
        self._table = t = PersonCircumstancesRow.__table__
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - the hub runs on these two
            raise ValueError(f"person circumstances need PostgreSQL or SQLite, not {engine.dialect.name}")
        stmt = insert(t)
        self._upsert = stmt.on_conflict_do_update(index_elements=[t.c.person_key], set_={
            "facts": stmt.excluded.facts, "newcomer": stmt.excluded.newcomer, "updated_at": stmt.excluded.updated_at})

    def get_many(self, keys: Iterable[str]) -> dict[str, StoredCircumstances]:
        """The stored row of each key that has one."""
        wanted = sorted(set(keys))
        out: dict[str, StoredCircumstances] = {}
        t = self._table
        with self._reads.connect() as conn:
            for chunk in in_chunks(wanted):
                for key, facts, newcomer in conn.execute(sa.select(t.c.person_key, t.c.facts, t.c.newcomer).where(t.c.person_key.in_(chunk))):
                    out[key] = StoredCircumstances(facts, newcomer)
        return out

    def write(self, rows: Mapping[str, StoredCircumstances], now: dt.datetime) -> None:
        """Store each person's row (insert or replace): all or nothing."""
        if not rows:
            return
        values = [{"person_key": k, "facts": v.facts, "newcomer": v.newcomer, "updated_at": now} for k, v in sorted(rows.items())]
        with self.engine.begin() as conn:
            conn.execute(self._upsert, values)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self._table)).scalar_one()
