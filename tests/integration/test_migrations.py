"""Migrations run on the real PostgreSQL and on SQLite, and are idempotent."""

import pytest
import sqlalchemy as sa

from hub.adapters import database

pytestmark = pytest.mark.integration


def _tables(url):
    engine = database.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_on_postgresql(database_url):
    database.upgrade(database_url)
    database.upgrade(database_url)  # a second run changes nothing
    assert "processed_events" in _tables(database_url)
    assert "0001_base" in database.current_revisions(database_url) or database.current_revisions(database_url)


def test_upgrade_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    database.upgrade(url)
    assert "processed_events" in _tables(url)


def test_first_time_is_idempotent(tmp_path):
    from hub.adapters.idempotency import first_time

    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    database.upgrade(url)
    engine = database.create_engine(url)
    Session = database.session_factory(engine)
    with Session.begin() as s:
        assert first_time(s, "c", "e1")
    with Session.begin() as s:
        assert not first_time(s, "c", "e1") and first_time(s, "other", "e1")
    engine.dispose()


# --- one history, models and migrations in agreement, concurrent upgrades -----------------------

import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from alembic import command  # noqa: E402
from alembic.autogenerate import compare_metadata  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402

from tests.conftest import throwaway_database  # noqa: E402

# The heads the history had before 0015_linear merged them, as their databases' version tables
# hold them (a dependency's row, 0002 or 0007, is gone once 0011 or 0014 is applied).
OLD_HEAD_COMBINATIONS = [
    ("0004_dvv_cursor", "0005_newcomer_facts", "0008_retention", "0014_webhook_secrets"),  # `upgrade heads` before the merge
    ("0002_consent", "0004_dvv_cursor", "0005_newcomer_facts", "0007_webhooks", "0008_retention", "0009_person_states"),
    ("0002_consent", "0004_dvv_cursor", "0005_newcomer_facts", "0007_webhooks", "0008_retention", "0010_dead_letters"),
    ("0004_dvv_cursor", "0005_newcomer_facts", "0007_webhooks", "0008_retention", "0013_sealed_personal_data"),
    ("0002_consent",),
    ("0003_ledger", "0007_webhooks"),
    ("0001_base",),
]


HEAD = "0024_webhook_sequences"  # the last migration: every later one has it (or a later one) as its down_revision


def _script(url="sqlite://"):
    return ScriptDirectory.from_config(database.alembic_config(url))


def _to_old_heads(url, heads):
    """A database as the earlier history left it: upgraded branch by branch to `heads`."""
    cfg = database.alembic_config(url)
    for rev in heads:
        command.upgrade(cfg, rev)
    assert database.current_revisions(url) == set(heads)


def test_the_history_has_one_head():
    script = _script()
    assert script.get_heads() == [HEAD]
    assert len(script.get_revisions("head")) == 1


def test_an_empty_database_upgrades_to_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    database.upgrade(url, "head")
    assert database.current_revisions(url) == {HEAD}
    database.upgrade(url)  # the default target is head; a second run changes nothing
    assert database.current_revisions(url) == {HEAD}


@pytest.mark.parametrize("heads", OLD_HEAD_COMBINATIONS, ids=lambda h: "+".join(r[:4] for r in h))
def test_a_database_at_old_heads_upgrades_to_the_merge(tmp_path, heads):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    _to_old_heads(url, heads)
    database.upgrade(url)
    assert database.current_revisions(url) == {HEAD}
    assert _model_diff(url) == []


def test_a_postgresql_database_at_the_old_heads_upgrades_to_the_merge(pg_admin_url):
    with throwaway_database(pg_admin_url, "hub_oldheads") as url:
        _to_old_heads(url, OLD_HEAD_COMBINATIONS[0])
        database.upgrade(url)
        assert database.current_revisions(url) == {HEAD}
        assert _model_diff(url) == []


def _model_diff(url):
    engine = database.create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), database.import_models())
    finally:
        engine.dispose()


def test_every_module_with_a_table_is_imported_by_the_migrations():
    root = Path(database.__file__).resolve().parents[1]
    declaring = {
        ".".join(p.relative_to(root.parent).with_suffix("").parts)
        for p in root.rglob("*.py")
        if "migrations" not in p.parts and "__tablename__" in p.read_text(encoding="utf-8")
    }
    assert declaring and declaring <= set(database.MODEL_MODULES)


def _alembic_check(url):
    """`alembic check` in a process of its own (only what the migrations' env.py imports): exit 0
    when autogenerate finds nothing to change."""
    code = ("import sys; from alembic import command; from hub.adapters.database import alembic_config; "
            "command.check(alembic_config(sys.argv[1]))")
    return subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120)


def test_the_models_and_the_migrations_agree_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    database.upgrade(url)
    assert _model_diff(url) == []
    done = _alembic_check(url)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_models_and_the_migrations_agree_on_postgresql(pg_admin_url):
    with throwaway_database(pg_admin_url, "hub_check") as url:
        database.upgrade(url)
        assert _model_diff(url) == []
        done = _alembic_check(url)
        assert done.returncode == 0, done.stderr[-2000:]


def test_two_concurrent_upgrades_of_an_empty_postgresql_database_both_succeed(pg_admin_url):
    with throwaway_database(pg_admin_url, "hub_race") as url:
        start, errors = threading.Barrier(2), []

        def run():
            start.wait()
            try:
                database.upgrade(url)
            except Exception as exc:  # noqa: BLE001 - the assertion names it
                errors.append(repr(exc)[:300])

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert database.current_revisions(url) == {HEAD}
