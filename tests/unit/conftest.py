"""Fixtures shared by the unit tests."""

import datetime as dt

import pytest
from sqlalchemy.pool import StaticPool

from hub.adapters import database
from hub.adapters.consent_uow import SqlConsentUnits
from hub.services.consent import ConsentRegistry

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)  # the consent tests' start (tests/unit/test_consent_service.T0)


@pytest.fixture
def clock():
    """A settable clock: {"now": datetime}, starting at T0."""
    return {"now": T0}


@pytest.fixture
def registry(clock):
    """A consent registry on SQLite in memory with every table, on `clock`."""
    engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    database.Base.metadata.create_all(engine)
    yield ConsentRegistry(SqlConsentUnits(database.session_factory(engine)), person_key_secret="s", clock=lambda: clock["now"])
    engine.dispose()


@pytest.fixture
def sessions():
    """Sessions on SQLite in memory with every table."""
    engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    database.Base.metadata.create_all(engine)
    yield database.session_factory(engine)
    engine.dispose()
