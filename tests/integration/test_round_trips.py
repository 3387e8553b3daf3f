"""The stream stores' statements on SQLite and the real PostgreSQL: detection's and routing's reads of
one statement run outside a transaction on PostgreSQL (no BEGIN and ROLLBACK around them), the
ledger marks a batch's referrals, withdrawals and due-date updates published in one statement there,
and takes a batch's idempotency marks with one statement that tells the first-time events apart
(the same event twice in a batch, and an event seen before, are duplicates)."""

import dataclasses
import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from hub.adapters import database
from hub.adapters.circumstances_store import SqlCircumstances
from hub.adapters.person_states import SqlPersonStates
from hub.adapters.referral_ledger import ReferralLedger, ReferralRow, ReferralUpdateRow, ReferralWithdrawalRow
from hub.routing.engine import route
from hub.routing.model import RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules
from hub.services.ports import StoredCircumstances

pytestmark = pytest.mark.integration
NOW = dt.datetime(2025, 6, 15, 12, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("own_database_url")
    database.upgrade(url)
    engine = database.create_engine(url)
    yield engine
    engine.dispose()


class Statements:
    """The statements run on `engine`, each with whether its connection was in autocommit."""

    def __init__(self, engine: sa.Engine) -> None:
        self.seen: list[tuple[str, bool]] = []
        self.engine = engine
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        self.seen.append((statement.split()[0].upper(), bool(getattr(conn.connection.driver_connection, "autocommit", False))))

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)


def newcomer(person_key, event_id=None, **fields):
    base = {"event_id": event_id or str(uuid.uuid4()), "person_key": person_key, "occurred_at": "2025-06-15T09:00:00Z", "municipality_code": "091",
            "arrival_date": "2025-06-01", "birth_date": "1990-04-01", "labour_force_status": "unemployed_job_seeker"}
    return RoutingInput.from_record({**base, **fields})


def routed(n):
    return n, route(n, default_rules(), default_reference())


def test_reads_of_states_and_circumstances_run_outside_a_transaction_on_postgresql(engine):
    states, circumstances = SqlPersonStates(engine), SqlCircumstances(engine)
    states.write({"a": "state-a"})
    circumstances.write({"a": StoredCircumstances("facts-a", None)}, NOW)
    statements = Statements(engine)
    try:
        assert states.get_many(["a", "b"]) == {"a": "state-a"}
        assert circumstances.get_many(["a", "b"]) == {"a": StoredCircumstances("facts-a", None)}
    finally:
        statements.close()
    assert [verb for verb, _ in statements.seen] == ["SELECT", "SELECT"]
    assert all(ac for _, ac in statements.seen) == (engine.dialect.name == "postgresql")
    # a write is still one transaction, and the connection goes back to the pool as it was
    states.write({"a": None, "b": "state-b"})
    assert states.get_many(["a", "b"]) == {"b": "state-b"}


def test_referrals_withdrawals_and_updates_are_marked_published_together(engine):
    ledger = ReferralLedger(engine)
    arrived = newcomer("pk-a")
    first = ledger.record_many([routed(arrived)], NOW)[0]
    moved = ledger.record_many([routed(newcomer("pk-a", change="moved", municipality_code="049", previous_municipality_code="091"))], NOW)[0]
    permit = dataclasses.replace(newcomer("pk-a", change="circumstances", municipality_code="049", residence_basis="work",
                                          integration_start="2024-11-05"), change_reason="residence basis reported by migri: work")
    updated = ledger.record_many([routed(permit)], NOW)[0]
    assert first.to_publish and moved.withdrawals and updated.updates
    ids = ([r["referral_id"] for r in first.to_publish + moved.to_publish] + [w["event_id"] for w in moved.withdrawals]
           + [u["event_id"] for u in updated.updates])
    statements = Statements(engine)
    try:
        ledger.mark_published(ids, NOW)
    finally:
        statements.close()
    if engine.dialect.name == "postgresql":
        assert statements.seen == [("WITH", True)]  # one statement, one round trip
    with engine.connect() as conn:
        for table, column in ((ReferralRow, ReferralRow.referral_id), (ReferralWithdrawalRow, ReferralWithdrawalRow.event_id),
                              (ReferralUpdateRow, ReferralUpdateRow.event_id)):
            rows = conn.execute(sa.select(column, table.published_at)).all()
            assert rows and all(published is not None for _, published in rows if _ in ids), table.__tablename__
            assert {key for key, published in rows if published is not None} <= set(ids)
    # what is marked is not sent again by a redelivered event
    again = ledger.record_many([routed(arrived)], NOW)[0]
    assert again.duplicate and again.to_publish == []


def test_a_batch_claims_its_events_once_and_finds_those_seen_before(engine):
    ledger = ReferralLedger(engine)
    seen_before, fresh = newcomer("pk-b"), newcomer("pk-c")
    [earlier] = ledger.record_many([routed(seen_before)], NOW)
    done = ledger.record_many([routed(fresh), routed(seen_before), routed(fresh)], NOW)
    assert [d.duplicate for d in done] == [False, True, True]
    assert done[0].created and done[2].created == [] and done[2].to_publish == []  # the same event twice sends once
    assert [r["referral_id"] for r in done[1].to_publish] == [r["referral_id"] for r in earlier.to_publish]  # not marked published: sent again
    assert done[1].created == []
