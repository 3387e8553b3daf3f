"""Where newcomer detection keeps each person's state: the hub database (SQLite embedded,
PostgreSQL in production), one row per pseudonymous person key.

Detection reads the states of a batch's persons in one query and writes the batch's changes in
one transaction, after the batch's newcomers were acknowledged by the broker and before its events
are (so a crash redoes the batch, which detection's `seen` event ids make a no-op). Nothing of it is
held in the worker's memory between batches: the worker's memory stays flat whatever the size of
the population, a worker that takes over a partition has nothing to restore, and an identity-code
correction finds the old code's state whichever partition it was written from.

The state is `hub.newcomers.detection.encode_state` text, keyed by the pseudonymous person key: it
holds no identity code (every change brings its own, and a correction names the old code, whose
key finds the old state). What it does hold (birth date, nationalities, mother tongue, municipality)
is pseudonymous personal data, readable only by the hub's database role. It is not sealed: it is
read and written for every population change, and sealing would add a large share of what a change
costs; the person key protects it as long as HUB_PERSON_KEY_SECRET is secret.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.adapters.database import Base, autocommit, in_chunks


class PersonStateRow(Base):
    __tablename__ = "person_states"
    person_key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    state: Mapped[str] = mapped_column(sa.Text())


class PersonStates(Protocol):
    """The port detection uses (one call at a time: on the event loop for SQLite, on one worker thread for PostgreSQL; `hub.adapters.database.DatabaseCalls`)."""

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored state of each key that has one."""

    def write(self, changes: Mapping[str, str | None]) -> None:
        """Store each state, remove each key whose value is None: all or nothing."""


class SqlPersonStates:
    """PersonStates in the hub database (table `person_states`, migration 0009)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._reads = autocommit(engine)  # get_many: one statement (on SQLite one a chunk), no transaction around it on PostgreSQL
        self._table = PersonStateRow.__table__
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - the hub runs on these two
            raise ValueError(f"person states need PostgreSQL or SQLite, not {engine.dialect.name}")
        stmt = insert(self._table)
        self._upsert = stmt.on_conflict_do_update(index_elements=[self._table.c.person_key], set_={"state": stmt.excluded.state})
        # On PostgreSQL a batch is one statement each way, whatever its size: the keys (and states) go
        # as arrays, so the statement's text is the same for every batch (compiled once, no IN list
        # expanded per batch) and the server plans and runs one statement, not one per person.
        self._arrays = engine.dialect.name == "postgresql"
        if self._arrays:
            from sqlalchemy.dialects.postgresql import ARRAY

            keys = sa.bindparam("keys", type_=ARRAY(sa.Text()))
            states = sa.bindparam("states", type_=ARRAY(sa.Text()))
            self._select_any = sa.text("SELECT person_key, state FROM person_states WHERE person_key = ANY(:keys)").bindparams(keys)
            self._upsert_arrays = sa.text(
                "INSERT INTO person_states (person_key, state) SELECT * FROM unnest(:keys, :states) "
                "ON CONFLICT (person_key) DO UPDATE SET state = excluded.state").bindparams(keys, states)
            self._delete_any = sa.text("DELETE FROM person_states WHERE person_key = ANY(:keys)").bindparams(keys)

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(keys))
        out: dict[str, str] = {}
        if not wanted:
            return out
        t = self._table
        with self._reads.connect() as conn:
            if self._arrays:
                return dict(conn.execute(self._select_any, {"keys": wanted}).tuples().all())
            for keys in in_chunks(wanted):
                for key, state in conn.execute(sa.select(t.c.person_key, t.c.state).where(t.c.person_key.in_(keys))):
                    out[key] = state
        return out

    def write(self, changes: Mapping[str, str | None]) -> None:
        if not changes:
            return
        put = [{"person_key": k, "state": v} for k, v in sorted(changes.items()) if v is not None]
        gone = sorted(k for k, v in changes.items() if v is None)
        t = self._table
        with self.engine.begin() as conn:
            if self._arrays:
                if put:
                    conn.execute(self._upsert_arrays, {"keys": [p["person_key"] for p in put], "states": [p["state"] for p in put]})
                if gone:
                    conn.execute(self._delete_any, {"keys": gone})
                return
            if put:
                conn.execute(self._upsert, put)
            for keys in in_chunks(gone):
                conn.execute(t.delete().where(t.c.person_key.in_(keys)))

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self._table)).scalar_one()


class MemoryPersonStates:
    """PersonStates in a dict: for unit tests and the benchmarks' in-process baseline."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        states = self.states
        return {k: states[k] for k in set(keys) if k in states}

    def write(self, changes: Mapping[str, str | None]) -> None:
        for k, v in changes.items():
            if v is None:
                self.states.pop(k, None)
            else:
                self.states[k] = v

    def count(self) -> int:
        return len(self.states)
