"""The 0002_consent migration creates exactly the tables the models declare, on PostgreSQL and SQLite."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import hub.adapters.outbox  # noqa: F401 - registers the outbox table on Base
import hub.consent.store  # noqa: F401 - registers the consent tables on Base
from hub.adapters import database

pytestmark = pytest.mark.integration
CONSENT_TABLES = {"consent_events", "held_items", "outbox", "disclosures"}


def migration_diff(url: str, tables) -> list:
    """Run the migrations on `url`, then compare the database with the models: the differences that
    concern `tables` (other concerns own theirs)."""
    database.upgrade(url)
    engine = database.create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), database.Base.metadata)
    finally:
        engine.dispose()
    return [d for d in diff if any(t in repr(d) for t in tables)]


def _diff(url):
    return migration_diff(url, CONSENT_TABLES)


def test_migration_matches_the_models_on_postgresql(database_url):
    assert _diff(database_url) == []
    # 0002_consent is applied: a head itself, or below 0011_outbox_parking, which depends on it
    assert database.current_revisions(database_url) & {"0002_consent", "0011_outbox_parking"}


def test_migration_matches_the_models_on_sqlite(tmp_path):
    assert _diff(f"sqlite:///{tmp_path / 'hub.sqlite3'}") == []
