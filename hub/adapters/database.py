"""The SQL database (PostgreSQL in production, SQLite embedded): engine, metadata, migrations.

Tables are declared on `Base` by the module that owns them (consent registry, coordination
ledger, DVV cursor); the schema is created and changed only by the Alembic migrations under
`hub/migrations/versions` (`hub db upgrade`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
IN_LIST_CHUNK = 500  # values per IN (...) list: well inside SQLite's and PostgreSQL's parameter limits
log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    """Declarative base of every hub table."""


def create_engine(url: str, **kwargs) -> sa.Engine:
    """An engine for `url`; SQLite gets foreign keys, WAL with synchronous=NORMAL and a busy timeout."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + synchronous=NORMAL: no fsync per commit, only at checkpoints. A committed
            # transaction is in the WAL file before commit returns, so it survives a crash of the
            # process (what at-least-once delivery with idempotency by event id relies on: an
            # event is either committed with its idempotency mark or redelivered and redone);
            # only a power loss / OS crash may roll back the last commits, never corrupt the
            # database. PostgreSQL is untouched (this listener is for SQLite only).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def autocommit(engine: sa.Engine) -> sa.Engine:
    """`engine` for statements that are a transaction on their own (a read of one statement, one
    write): on PostgreSQL in autocommit, so that each goes to the server alone, without a BEGIN before
    it and a ROLLBACK or COMMIT after it (two more round trips, each of which a call on a worker thread
    pays again in waiting for the GIL). A statement sees one snapshot and is atomic either way.
    SQLite: `engine` itself."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def in_chunks(values: Sequence, size: int = IN_LIST_CHUNK) -> Iterator[Sequence]:
    """`values` in slices of at most `size`, for IN (...) lists."""
    for i in range(0, len(values), size):
        yield values[i:i + size]


def session_factory(engine: sa.Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Every module that declares tables on `Base`: the migrations' environment imports them all, so that
# `alembic check` / autogenerate compare the whole schema (tests/integration/test_migrations.py
# checks that this list names every module with a table).
MODEL_MODULES = (
    "hub.adapters.idempotency",
    "hub.adapters.referral_ledger",
    "hub.adapters.newcomer_facts",
    "hub.adapters.dvv.cursor",
    "hub.adapters.webhooks",
    "hub.adapters.retention",
    "hub.adapters.person_states",
    "hub.adapters.circumstances_store",
    "hub.adapters.dead_letter_store",
    "hub.adapters.outbox",
    "hub.adapters.consent_store",
    "hub.adapters.disclosure_check",
)
# Key of the PostgreSQL advisory lock that serialises migrations (workers starting together).
MIGRATION_LOCK_KEY = 0x6875625F6462  # "hub_db"


def import_models() -> sa.MetaData:
    """Import every model module; `Base.metadata` then holds every table of the hub."""
    import importlib

    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata


def upgrade(url: str, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` (the single head by default).

    On PostgreSQL under a session advisory lock (MIGRATION_LOCK_KEY): workers that start together
    run the migrations one after the other, and the later ones find the schema at head. SQLite needs
    none (its writers are serialised by the file lock)."""
    from alembic import command

    _migrate(url, lambda cfg: command.upgrade(cfg, revision))


def downgrade(url: str, revision: str) -> None:
    """Undo the migrations above `revision` (under the same lock as `upgrade`). A migration that
    cannot be undone raises RuntimeError and nothing is changed (one transaction)."""
    from alembic import command

    _migrate(url, lambda cfg: command.downgrade(cfg, revision))


def _migrate(url: str, run: Callable[[Any], None]) -> None:
    cfg = alembic_config(url)
    engine = create_engine(url)
    try:
        if engine.dialect.name != "postgresql":
            engine.dispose()
            run(cfg)
            return
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                cfg.attributes["connection"] = conn
                run(cfg)
                conn.commit()
            finally:
                conn.rollback()
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()


def head_revision(url: str = "sqlite://") -> str:
    """The history's single head."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revisions(url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def applied_revisions(url: str) -> set[str]:
    """Every revision applied to the database at `url`: its current heads and all below them."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(url))
    return {r.revision for head in current_revisions(url) for r in script.iterate_revisions(head, "base")}


class DatabaseCalls:
    """Where a stream runs its synchronous database calls: in order, one at a time, and awaited.

    SQLite (a local file): on the event loop itself. Its calls are CPU under the GIL, not waits; on
    a worker thread each statement hands the GIL back and forth with the loop, so a transaction takes
    several times its own work in wall time.
    A server database (PostgreSQL): on one worker thread of its own, so that the network round
    trips do not stall the event loop. `engine=None` (a store with no database): inline."""

    def __init__(self, engine: sa.Engine | None, thread_name: str) -> None:
        self.inline = engine is None or engine.dialect.name == "sqlite"
        self._executor = None if self.inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)`'s result, wherever it runs."""
        if self.inline:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


async def with_database_retry(apply, what: str):
    """Run `apply()` (one transaction; a coroutine function's result is awaited); while the database is
    unreachable, wait and retry, in order, backing off to 30 s. An unreachable database is not bad
    input: nothing is dead-lettered and the partition waits."""
    delay = 0.5
    while True:
        try:
            result = apply()
            return await result if inspect.isawaitable(result) else result
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            log.warning("database unavailable while %s (%s); retrying in %.1f s", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
