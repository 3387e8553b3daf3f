"""The consent migrations (0002_consent, 0012_consent_identity) create exactly the tables the models declare, on PostgreSQL and SQLite."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import hub.adapters.outbox  # noqa: F401 - registers the outbox table on Base
import hub.adapters.consent_store  # noqa: F401 - registers the consent tables on Base
from hub.adapters import database

pytestmark = pytest.mark.integration
CONSENT_TABLES = {"consent_events", "held_items", "outbox", "disclosures", "consent_tombstones"}


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
    assert {"0002_consent", "0011_outbox_parking", "0012_consent_identity", "0013_sealed_personal_data"} <= database.applied_revisions(database_url)


def test_migration_matches_the_models_on_sqlite(tmp_path):
    assert _diff(f"sqlite:///{tmp_path / 'hub.sqlite3'}") == []
