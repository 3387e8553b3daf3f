"""0020_outbox_sequences on PostgreSQL and SQLite: outbox rows of the version before keep their
content and have no number; the sequence storage matches the models; the new rows number from 1;
a downgrade takes the storage out again."""

import datetime as dt

import pytest
import sqlalchemy as sa

from hub.adapters import database, outbox, sealing
from tests.integration.test_consent_migration import migration_diff

pytestmark = pytest.mark.integration

BEFORE, AFTER = "0019_referral_updates", "0020_outbox_sequences"
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def check(url):
    database.upgrade(url, BEFORE)
    engine = database.create_engine(url)
    try:
        with engine.begin() as conn:  # a notice committed by the version before: no recipient, stream or sequence yet
            conn.execute(sa.text("INSERT INTO outbox (topic, key, schema_name, event_id, value, headers, created_at) "
                                 "VALUES ('hub.notices.municipality.091.v1', NULL, 'Notice', 'e-old', :v, '[]', :t)"), {"v": sealing.current().seal(b"old"), "t": T0})
            # an audit row refers to the outbox (a foreign key): the migration must not copy the table away
            conn.execute(sa.text("INSERT INTO disclosures (request_id, person_key, recipient, assessor, assessment_id, data_categories, disclosed_at, "
                                 "outbox_id, disclosed) SELECT 'pr-old', 'pk', 'employment_authority:08', 'municipality:091', 'as-old', '[]', :t, id, :yes "
                                 "FROM outbox WHERE event_id = 'e-old'"), {"t": T0, "yes": True})
        assert migration_diff(url, {"outbox", "outbox_sequences"}) == []  # upgrades to the head, then compares
        assert AFTER in database.applied_revisions(url)
        sessions = database.session_factory(engine)
        with sessions.begin() as s:
            [old] = s.scalars(sa.select(outbox.OutboxMessage).where(outbox.OutboxMessage.event_id == "e-old"))
            assert (old.recipient, old.stream, old.sequence) == (None, None, None) and old.topic.startswith("hub.notices.")
            for n in (1, 2):  # numbered by the relay when it sends them
                row = outbox.enqueue(s, "hub.notices.municipality.091.v1", "Notice", f"e-{n}", b"x", None, [], T0,
                                     recipient="municipality:091", stream="notices")
                assert outbox.number(s, row.id, "municipality:091", "notices", lambda value, _: value) == (n, b"x")
        with pytest.raises(sa.exc.IntegrityError):  # one number once per recipient and stream
            with sessions.begin() as s:
                outbox.enqueue(s, "hub.notices.municipality.091.v1", "Notice", "e-twice", b"x", None, [], T0,
                               recipient="municipality:091", stream="notices", sequence=2)
        with sessions() as s:
            assert [r.sequence for r in outbox.sent_in_stream(s, "municipality:091", "notices", 1)] == [1, 2]
    finally:
        engine.dispose()
    database.downgrade(url, BEFORE)
    engine = database.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert "outbox_sequences" not in inspector.get_table_names()
        assert not {"recipient", "stream", "sequence"} & {c["name"] for c in inspector.get_columns("outbox")}
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar() == 3  # the rows stay
    finally:
        engine.dispose()


def test_the_sequence_storage_on_postgresql(own_database_url):
    check(own_database_url)


def test_the_sequence_storage_on_sqlite(tmp_path):
    check(f"sqlite:///{tmp_path / 'hub.sqlite3'}")
