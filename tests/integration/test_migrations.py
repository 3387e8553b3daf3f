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
