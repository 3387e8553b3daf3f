"""Migration 0013 on a database written before it (identity codes and assessment data in clear), on
the real PostgreSQL and on SQLite: refused under the demo secrets with nothing changed; with the
deployment's secrets every row is converted (keyed, sealed, stripped) and reads back the same."""

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from hub.adapters import database, sealing
from hub.adapters.outbox import OutboxMessage
from hub.config import DemoSecrets
from hub.adapters import consent_store as store
from hub.domain import hetu
from hub.newcomers.detection import decode_state
from tests.personal_data import clear_in_tables, digits_of

pytestmark = pytest.mark.integration

SECRET = "migration-test-person-key-secret"
DATA_KEY = "QkFKTzJ6c2V4UnB0d1R0a3d5b0ZqV0dsNHhUSmZpM2o="
PERSON = hetu.make(dt.date(1984, 4, 4), 933)
KEY = hetu.person_key(PERSON, SECRET)
ASSESSMENT = b"\x00\x00\x00\x00\x07" + PERSON.encode() + b"6 years construction"
PLAN = b"\x00\x00\x00\x00\x09" + PERSON.encode() + b"literate in Latin script"
AT = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
TABLES = ["person_states", "consent_events", "held_items", "disclosures", "outbox"]


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request, tmp_path):
    """A database at the revisions before 0013, holding rows as the hub wrote them then."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("own_database_url")
    database.upgrade(url, "0002_consent")
    database.upgrade(url, "0009_person_states")
    engine = database.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO person_states (person_key, state) VALUES (:k, :s)"),
                  {"k": KEY, "s": json.dumps({"person_id": PERSON, "municipality_code": "091", "newcomer": True, "seen": ["e-1"]})})
        c.execute(sa.text("INSERT INTO consent_events (event_id, consent_id, person_id, action, purpose, data_categories, recipients, recorded_by, "
                          "recorded_at, stored_at) VALUES ('g-1', 'c-1', :p, 'granted', 'integration_plan', '[\"education\"]', "
                          "'[\"employment_authority:08\"]', 'municipality:091', :t, :t)"), {"p": PERSON, "t": AT})
        c.execute(sa.text("INSERT INTO held_items (assessment_event_id, assessment_id, person_id, assessor, recipient, reason, assessment, held_at) "
                          "VALUES ('a-1', 'as-1', :p, 'municipality:091', 'employment_authority:08', 'no_consent', :a, :t)"),
                  {"p": PERSON, "a": ASSESSMENT, "t": AT})
        c.execute(sa.text("INSERT INTO outbox (topic, key, schema_name, event_id, value, headers, created_at) "
                          "VALUES ('hub.plan-requests.employment_authority.08.v1', :k, 'PlanRequest', 'r-1', :v, '[]', :t)"),
                  {"k": KEY.encode(), "v": PLAN, "t": AT})
        outbox_id = c.execute(sa.text("SELECT id FROM outbox")).scalar_one()
        c.execute(sa.text("INSERT INTO disclosures (request_id, person_id, person_key, recipient, assessor, assessment_id, data_categories, "
                          "disclosed_at, outbox_id) VALUES ('r-1', :p, 'an-assessors-key', 'employment_authority:08', 'municipality:091', 'as-1', "
                          "'[\"education\"]', :t, :o)"), {"p": PERSON, "t": AT, "o": outbox_id})
    assert clear_in_tables(engine, TABLES, [PERSON]), "the rows of before hold the identity code in clear"
    yield url, engine
    engine.dispose()
    sealing.configure(())


def test_under_the_demo_secrets_the_migration_is_refused_and_changes_nothing(old_database, monkeypatch):
    url, engine = old_database
    monkeypatch.delenv("HUB_PERSON_KEY_SECRET", raising=False)
    monkeypatch.delenv("HUB_DATA_KEYS", raising=False)
    with pytest.raises(DemoSecrets, match="HUB_PERSON_KEY_SECRET"):
        database.upgrade(url)
    # `hub db upgrade` says so in one line (exit 2), no traceback
    env = {k: v for k, v in os.environ.items() if k not in ("HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS")}
    out = subprocess.run([sys.executable, "-m", "hub.cli", "db", "upgrade"], env={**env, "HUB_DATABASE_URL": url}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "HUB_PERSON_KEY_SECRET is not set" in out.stderr and "Traceback" not in out.stderr
    assert PERSON not in out.stderr
    assert "0013_sealed_personal_data" not in database.applied_revisions(url)
    with engine.connect() as c:
        assert PERSON in c.execute(sa.text("SELECT state FROM person_states")).scalar_one()


def test_the_rows_are_keyed_sealed_and_stripped_and_read_back_the_same(old_database, monkeypatch):
    url, engine = old_database
    monkeypatch.setenv("HUB_PERSON_KEY_SECRET", SECRET)
    monkeypatch.setenv("HUB_DATA_KEYS", DATA_KEY)
    database.upgrade(url)
    assert "0013_sealed_personal_data" in database.applied_revisions(url)
    assert clear_in_tables(engine, TABLES, [PERSON, digits_of(PERSON), "6 years construction", "literate in Latin script"]) == []

    sealing.configure([DATA_KEY])  # the worker's sealer
    sessions = database.session_factory(engine)
    with sessions() as s:
        (grant,) = store.history(s, KEY)
        assert (grant.person_id, grant.consent_id, grant.action) == (PERSON, "c-1", "granted")
        (item,) = store.held(s, KEY)
        assert item.assessment == ASSESSMENT
        (disclosure,) = store.disclosures(s, KEY)  # found by the hub's own key of the person
        assert disclosure.request_id == "r-1"
        assert s.scalars(sa.select(OutboxMessage)).one().value == PLAN
        assert store.persons_with_expiring_or_starting_consents(s, AT) == []
    with engine.connect() as c:
        stored = c.execute(sa.text("SELECT state FROM person_states WHERE person_key = :k"), {"k": KEY}).scalar_one()
    state = decode_state(stored, PERSON)
    assert state.newcomer and state.municipality_code == "091" and state.seen == ("e-1",)
