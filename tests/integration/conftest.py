"""Fixtures shared by the integration tests."""

import pytest

from hub.adapters import database
from hub.adapters.referral_ledger import ReferralLedger


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("database_url")
    database.upgrade(url)
    engine = database.create_engine(url)
    yield ReferralLedger(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def sessions(database_url):
    """Sessions on the tests' PostgreSQL, migrated to the head (one per test module)."""
    database.upgrade(database_url)
    engine = database.create_engine(database_url)
    yield database.session_factory(engine)
    engine.dispose()
