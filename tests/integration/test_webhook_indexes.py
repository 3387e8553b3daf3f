"""The webhook delivery service's periodic reads on the real PostgreSQL read the deliveries still
waiting, not the ledger: on a queue of many delivered and withdrawn deliveries (they stay for the
replay horizon) and a few pending and parked ones, the queue gauges' counts, the oldest pending one,
each queue's head and a lane's pending deliveries read the deliveries table only by the partial
index of the waiting ones (and the heads by their ids) and read about as many rows as wait (a scan
of the table, or of the index of every delivery's state, fails)."""

import pytest
from sqlalchemy.orm import Session

from hub.adapters import database, sealing
from hub.adapters.webhooks import PARKED, PENDING, WebhookStore
from tests.integration.test_pending_indexes import _reads, _statements

pytestmark = pytest.mark.integration
DONE = 30_000  # delivered deliveries
WITHDRAWN = 3_000
WAITING = 5  # pending, and parked, deliveries of the second subscription
INDEX = "ix_webhook_deliveries_waiting"


@pytest.fixture
def big_queue(own_database_url):
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    store = WebhookStore(engine)
    subs = [store.add(recipient, "https://receiver.example.fi/hook")[0] for recipient in ("municipality:091", "municipality:092")]
    row = ("INSERT INTO webhook_deliveries (subscription_id, message_id, topic, schema, body, state, attempts, next_attempt_at, created_at, delivered_at) "
           "SELECT {sub}, '{prefix}' || g, 't', 'Referral', %(body)s, '{state}', 1, now(), now(), {delivered} FROM generate_series(1, {n}) g")
    body = {"body": sealing.current().seal_text("{}")}
    with engine.begin() as conn:
        for sub in subs:
            conn.exec_driver_sql(row.format(sub=sub.id, prefix="d", state="delivered", delivered="now()", n=DONE // 2), body)
            conn.exec_driver_sql(row.format(sub=sub.id, prefix="w", state="withdrawn", delivered="NULL", n=WITHDRAWN // 2), body)
        conn.exec_driver_sql(row.format(sub=subs[1].id, prefix="p", state=PENDING, delivered="NULL", n=WAITING), body)
        conn.exec_driver_sql(row.format(sub=subs[1].id, prefix="k", state=PARKED, delivered="NULL", n=WAITING), body)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE webhook_deliveries")
    yield engine, store, subs
    engine.dispose()


def _check(engine, seen, what: str) -> None:
    plans = [_reads(engine, "webhook_deliveries", statement, parameters) for statement, parameters in seen if " webhook_deliveries" in statement]
    assert plans, f"{what} did not read webhook_deliveries"
    for nodes, read in plans:
        # by the waiting ones' index (the heads' rows are then read by their ids: one per queue)
        assert nodes and all(INDEX in node or node.endswith("webhook_deliveries_pkey") for node in nodes) and any(INDEX in node for node in nodes), \
            f"{what} reads webhook_deliveries by {nodes}, not only by {INDEX}"
        assert read <= 2 * 2 * WAITING, f"{what} read {read} rows of webhook_deliveries for {2 * WAITING} waiting ones"


def test_the_services_periodic_reads_read_only_the_waiting_deliveries_by_their_index(big_queue):
    engine, store, subs = big_queue
    for _ in range(7):  # past psycopg's prepare threshold (5): the prepared statements' plans use the index too
        with _statements(engine) as seen:
            counts, oldest, heads = store.waiting()
    assert counts == {(subs[1].recipient, PENDING): WAITING, (subs[1].recipient, PARKED): WAITING}
    assert set(oldest) == {subs[1].recipient} and set(heads) == {subs[1].id}
    _check(engine, seen, "waiting()")
    with _statements(engine) as seen:
        pending = store.pending(subs[1].id, 200)
    assert [p.message_id for p in pending] == [f"p{n}" for n in range(1, WAITING + 1)]
    _check(engine, seen, "pending()")
    with _statements(engine) as seen:
        assert store.pending(subs[0].id, 200) == []
    _check(engine, seen, "pending() of an empty queue")


def test_the_index_is_the_models(own_database_url):
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    try:
        with Session(engine) as s:
            [definition] = s.execute(database.sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": INDEX}).scalars().all()
    finally:
        engine.dispose()
    assert "WHERE" in definition and "'pending'" in definition and "'parked'" in definition
