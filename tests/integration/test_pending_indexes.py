"""The relay's and the consent sweep's periodic queries on the real PostgreSQL read the rows still
waiting, not the ledger: on an outbox of many sent and withdrawn rows, a held-items table of many
released ones and a consent history of many grants not yet ended, each query's plan reads those
tables only by an index and reads about as many rows as are pending, parked, held or past their end
(a scan of the table, or of an index that finds every withdrawn row, fails)."""

import contextlib
import datetime as dt
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub.adapters import consent_store, database, outbox, sealing

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 12, 5, 9, tzinfo=dt.timezone.utc)
DONE = 30_000  # sent outbox rows, released held items
WAITING = 5  # pending outbox rows, unsendable parked ones, unreleased held items
WITHDRAWN = 3_000  # withdrawn plan requests: parked for good, never sent


@pytest.fixture
def big_tables(own_database_url):
    """An outbox of DONE sent rows and WITHDRAWN withdrawn ones (ids first), then WAITING pending and
    WAITING parked unsendable ones; DONE
    released held items and WAITING unreleased ones (their assessor is their recipient); ANALYZEd."""
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    outbox_row = ("INSERT INTO outbox (topic, schema_name, event_id, value, headers, created_at, sent_at, parked_at, parked_reason) "
                  "SELECT 't', 's', g::text, %(value)s, '[]', now(), {sent}, {parked}, {reason} FROM generate_series(1, {n}) g")
    held_row = ("INSERT INTO held_items (assessment_event_id, assessment_id, person_key, assessor, recipient, reason, assessment, held_at, released_at) "
                "SELECT '{prefix}' || g, 'a', '{prefix}' || g, 'x', 'x', 'no_consent', %(value)s, now(), {released} FROM generate_series(1, {n}) g")
    grant = ("INSERT INTO consent_events (event_id, consent_id, person_id, person_key, action, purpose, data_categories, recipients, "
             "valid_from, valid_until, recorded_by, recorded_at, stored_at) SELECT md5(random()::text), md5(random()::text), %(person)s, "
             "md5(random()::text), 'granted', 'p', '[]', '[]', NULL, {until}, 'x', now(), now() FROM generate_series(1, {n}) g")
    value = {"value": sealing.current().seal(b"record")}
    with engine.begin() as conn:
        conn.exec_driver_sql(outbox_row.format(sent="now()", parked="NULL", reason="NULL", n=DONE), value)
        conn.exec_driver_sql(outbox_row.format(sent="NULL", parked="now()", reason="'consent_revoked'", n=WITHDRAWN), value)
        conn.exec_driver_sql(outbox_row.format(sent="NULL", parked="NULL", reason="NULL", n=WAITING), value)
        conn.exec_driver_sql(outbox_row.format(sent="NULL", parked="now()", reason=f"'{outbox.RECORD_TOO_LARGE}'", n=WAITING), value)
        conn.exec_driver_sql(held_row.format(prefix="r", released="now()", n=DONE), value)
        conn.exec_driver_sql(held_row.format(prefix="h", released="NULL", n=WAITING), value)
        for until, n in (("NULL", DONE), ("now() + interval '1 year'", DONE), ("'2026-12-01'", WAITING)):  # open-ended, later, past
            conn.exec_driver_sql(grant.format(until=until, n=n), {"person": sealing.current().seal_text("010101-123N")})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE outbox")
        conn.exec_driver_sql("VACUUM ANALYZE held_items")
        conn.exec_driver_sql("VACUUM ANALYZE consent_events")
    yield engine
    engine.dispose()


@contextlib.contextmanager
def _statements(engine):
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)


def _reads(engine, table: str, statement: str, parameters) -> tuple[list[str], int]:
    """The plan's nodes on `table` (kind and index) and the rows they read (EXPLAIN ANALYZE)."""
    with engine.connect() as conn:
        [[doc]] = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).all()
    nodes, read = [], 0
    stack = [(doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]]
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans", []))
        if node.get("Relation Name") == table:
            nodes.append(f"{node['Node Type']} {node.get('Index Name', '')}".strip())
            read += node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
    return nodes, read


QUERIES = {
    "outbox.pending": ("outbox", "ix_outbox_pending", lambda s: outbox.pending(s), WAITING),
    "outbox.parked_counts": ("outbox", "ix_outbox_parked", lambda s: outbox.parked_counts(s), {outbox.RECORD_TOO_LARGE: WAITING}),
    "consent held_count": ("held_items", "ix_held_items_released_at", lambda s: consent_store.held_count(s), WAITING),
    "consent own_held": ("held_items", "ix_held_items_released_at", lambda s: consent_store.persons_with_own_held_items(s), WAITING),
    "consent due": ("consent_events", "ix_consent_events", lambda s: consent_store.persons_with_expiring_or_starting_consents(s, NOW), 1),
}


@pytest.mark.parametrize("name", list(QUERIES))
def test_a_periodic_query_reads_only_the_waiting_rows_by_an_index(big_tables, name):
    table, index, query, expected = QUERIES[name]
    with _statements(big_tables) as seen, Session(big_tables) as session:
        result = query(session)
    assert (len(result) if isinstance(result, list) else result) == expected
    plans = [_reads(big_tables, table, statement, parameters) for statement, parameters in seen if f" {table}" in statement]
    assert plans, f"{name} did not read {table}"
    for nodes, read in plans:
        assert nodes and all(index in node for node in nodes), f"{name} reads {table} by {nodes}, not only by {index}"
        assert read <= 2 * WAITING, f"{name} read {read} rows of {table} for {WAITING} waiting ones"


def test_the_unsent_count_reads_the_unsent_rows_by_their_partial_indexes(big_tables):
    with _statements(big_tables) as seen, Session(big_tables) as session:
        unsent = outbox.unsent_count(session)
    assert unsent == WAITING + WAITING + WITHDRAWN  # pending, parked, withdrawn; none of the DONE sent rows
    plans = [_reads(big_tables, "outbox", statement, parameters) for statement, parameters in seen if " outbox" in statement]
    assert len(plans) == 2
    indexes = sorted(node for nodes, _ in plans for node in nodes)
    assert all("ix_outbox_pending" in node or "ix_outbox_parked" in node for node in indexes), f"unsent_count reads the outbox by {indexes}"
    assert any("ix_outbox_pending" in node for node in indexes) and any("ix_outbox_parked" in node for node in indexes)
    assert sum(read for _, read in plans) <= 2 * unsent, "unsent_count read more than the unsent rows"
