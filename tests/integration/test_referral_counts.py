"""The open/overdue counts per recipient on SQLite and the real PostgreSQL: kept by the transactions
that make, close, supersede and re-date referrals, they equal a recount of the ledger after each kind
of change and on any day; and a gauge refresh reads no referral unless the day moved, then only the
referrals due in between, by the index of `due` (a recount of the whole ledger fails this)."""

import contextlib
import datetime as dt
import json
import random
import uuid

import pytest
import sqlalchemy as sa

from hub import metrics
from hub.adapters import database
from hub.adapters.referral_ledger import CLOSED, ReferralLedger, ReferralRow, refresh_gauges
from hub.routing.engine import route
from hub.routing.model import Decision, RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules

pytestmark = pytest.mark.integration
NOW = dt.datetime(2025, 6, 15, 12, tzinfo=dt.timezone.utc)
DAYS = [dt.date(2025, 6, 15), dt.date(2025, 7, 2), dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 2, 15), dt.date(2027, 1, 1)]


@pytest.fixture(params=["sqlite", "postgresql"])
def own_ledger(request, tmp_path):
    """A ledger in a database of this test's own (exact counts)."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("own_database_url")
    database.upgrade(url)
    engine = database.create_engine(url)
    yield ReferralLedger(engine)
    engine.dispose()


def recount(ledger: ReferralLedger, today: dt.date) -> dict[str, tuple[int, int]]:
    """authority -> (open, overdue) counted from every referral: what the counts must equal."""
    r = ReferralRow
    is_open = r.state.not_in(CLOSED)
    q = sa.select(r.authority, sa.func.sum(sa.case((is_open, 1), else_=0)),
                  sa.func.sum(sa.case((sa.and_(is_open, r.due < today), 1), else_=0))).group_by(r.authority)
    with ledger.engine.connect() as conn:
        return {a: (int(o), int(d)) for a, o, d in conn.execute(q)}


def assert_counts_match(ledger: ReferralLedger) -> None:
    for day in DAYS:
        assert ledger.counts_by_authority(day) == recount(ledger, day), day
    # the daily step forward and back again, then the gauges as a refresh sets them
    for day in (DAYS[3], DAYS[-1], DAYS[0]):
        ledger.move_counts_day(day)
        assert ledger.counts_by_authority(day) == recount(ledger, day), day
        refresh_gauges(ledger, day)
        for authority, (open_count, overdue_count) in recount(ledger, day).items():
            assert metrics.open_referrals.labels(authority)._value.get() == open_count
            assert metrics.overdue_referrals.labels(authority)._value.get() == overdue_count


def newcomer(person_key, **fields):
    base = {"event_id": str(uuid.uuid4()), "person_key": person_key, "occurred_at": "2025-06-15T09:00:00Z", "municipality_code": "092"}
    return RoutingInput.from_record({**base, **fields})


def decision(authority, purpose, due):
    return Decision(authority=authority, purpose=purpose, reasons=("test",), rule="test", rules_version="test", due=due)


def status(referral_id, authority, state, reason=None):
    return {"event_id": str(uuid.uuid4()), "occurred_at": NOW, "referral_id": referral_id, "authority": authority, "status": state, "reason": reason}


def test_the_counts_equal_a_recount_after_every_kind_of_change(own_ledger):
    ledger = own_ledger
    # creates: real routing decisions (due dates from the arrival) and hand-made ones
    people = [f"pk-{uuid.uuid4().hex}" for _ in range(4)]
    for pk, code, arrived in zip(people, ("091", "092", "010", "005"), ("2023-01-01", "2024-06-01", "2022-12-15", "2025-05-01")):
        n = newcomer(pk, municipality_code=code, arrival_date=arrived, labour_force_status="unemployed_job_seeker", service_needs=["health"])
        ledger.record(n, route(n, default_rules(), default_reference()), NOW)
    a = f"pk-{uuid.uuid4().hex}"
    made = ledger.record(newcomer(a), [decision("municipality:091", "initial_assessment", dt.date(2026, 1, 1)),
                                       decision("employment_authority:01", "initial_assessment", dt.date(2025, 7, 1)),
                                       decision("wellbeing_area:01", "social_and_health_services", None)], NOW)
    assert len(made.created) == 3
    assert_counts_match(ledger)

    # statuses: one that keeps the referral open, one that closes it, one refused (nothing changes)
    first = {r.referral_id: r for r in ledger.open_referrals() if r.person_key == people[0]}
    rid, ref = next(iter(first.items()))
    assert ledger.apply_status(status(rid, ref.authority, "accepted"), NOW).code == "applied"
    assert_counts_match(ledger)
    assert ledger.apply_status(status(rid, ref.authority, "declined", "moved abroad"), NOW).code == "applied"
    assert ledger.apply_status(status(rid, ref.authority, "accepted"), NOW).code == "invalid_transition"
    assert_counts_match(ledger)

    # a due-date update (the first permit came later) and a supersession with its withdrawal, in one event
    update = ledger.record(newcomer(a, change="circumstances"), [decision("municipality:091", "initial_assessment", dt.date(2026, 3, 1)),
                                                                 decision("wellbeing_area:01", "social_and_health_services", dt.date(2025, 6, 20))], NOW)
    assert len(update.updates) == 2 and len(update.withdrawals) == 1
    assert_counts_match(ledger)

    # an identity-code correction: the replaced key's open referrals withdrawn, the new key's made
    a2 = f"pk-{uuid.uuid4().hex}"
    corrected = ledger.record(newcomer(a2, previous_person_key=a), [decision("municipality:091", "initial_assessment", dt.date(2026, 3, 1))], NOW)
    assert len(corrected.withdrawals) == 2 and len(corrected.created) == 1
    assert_counts_match(ledger)

    # a move, routed for real: the old municipality's referrals superseded
    moved = newcomer(people[1], change="moved", municipality_code="091", arrival_date="2024-06-01", labour_force_status="unemployed_job_seeker",
                     service_needs=["health"])
    assert ledger.record(moved, route(moved, default_rules(), default_reference()), NOW).withdrawals
    assert_counts_match(ledger)

    # one batch that makes, re-dates and supersedes the same person's referrals (and a redelivery: no change)
    b = f"pk-{uuid.uuid4().hex}"
    items = [(newcomer(b), [decision("municipality:049", "initial_assessment", dt.date(2025, 8, 1)), decision("municipality:049", "social_and_health_services", None)]),
             (newcomer(b, change="circumstances"), [decision("municipality:049", "initial_assessment", dt.date(2025, 6, 1))])]
    ledger.record_many(items, NOW)
    ledger.record_many(items, NOW)
    assert_counts_match(ledger)


def test_the_migration_fills_the_counts_from_the_referrals_there_are(tmp_path):
    """A ledger of the version before, with open and closed referrals: after `hub db upgrade` the counts
    are those of a recount, overdue as of the day the migration ran."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    database.upgrade(url, "0020_outbox_sequences")
    engine = database.create_engine(url)
    try:
        rows = [{"referral_id": f"r{i}", "authority": f"municipality:{i % 3:03d}", "purpose": "initial_assessment", "rule": "r", "rules_version": "1",
                 "person_key": f"pk{i}", "newcomer_event_id": None, "due": dt.date(2020, 1, 1) + dt.timedelta(days=300 * i),
                 "created_at": NOW, "updated_at": NOW, "state": "completed" if i % 4 == 0 else "sent", "sequence": i, "turvakielto": False,
                 "payload": "{}", "published_at": None} for i in range(12)]
        with engine.begin() as conn:
            conn.execute(ReferralRow.__table__.insert(), rows)
        database.upgrade(url)
        ledger = ReferralLedger(engine)
        with engine.connect() as conn:
            day = conn.execute(sa.text("SELECT day FROM referral_counts_day")).scalar()
        day = dt.date.fromisoformat(str(day))
        assert ledger.counts_by_authority(day) == recount(ledger, day) and set(recount(ledger, day)) == {"municipality:000", "municipality:001",
                                                                                                          "municipality:002"}
        assert_counts_match(ledger)
    finally:
        engine.dispose()


# -- the cost of a refresh ---------------------------------------------------------------------

@contextlib.contextmanager
def statements(engine):
    """The SQL statements (text, parameters) the engine runs meanwhile."""
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)


def _reads_referrals(statement: str) -> bool:
    text = " ".join(statement.lower().split())
    return " from referrals " in f"{text} " or text.startswith(("update referrals ", "delete from referrals "))


def _scan_of_referrals(engine, statement: str, parameters) -> tuple[list[str], int]:
    """How the database reads `referrals` for this statement: the plan's nodes on the table (their
    kind and index), and the rows those nodes read (PostgreSQL: EXPLAIN ANALYZE; SQLite: -1, its
    plan names a SEARCH by index or a SCAN of the table)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            return [row[-1] for row in plan if "referrals" in row[-1] and "referral_counts" not in row[-1]], -1
        [[doc]] = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).all()
        nodes, read = [], 0
        stack = [(doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]]
        while stack:
            node = stack.pop()
            stack.extend(node.get("Plans", []))
            if node.get("Relation Name") == "referrals" or (node.get("Index Name") or "").startswith("ix_referrals"):
                nodes.append(f"{node['Node Type']} {node.get('Index Name', '')}".strip())
                read += node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
        return nodes, read


@pytest.fixture(params=["sqlite", "postgresql"])
def big_ledger(request, tmp_path):
    """A ledger of 20,000 referrals (inserted directly: the counts are not the point here), due over
    about three years, 400 or so open ones due each week; ANALYZEd."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("own_database_url")
    database.upgrade(url)
    engine = database.create_engine(url)
    rnd = random.Random(27)
    rows = [{"referral_id": uuid.uuid4().hex, "authority": f"municipality:{rnd.randrange(40):03d}", "purpose": "initial_assessment", "rule": "r",
             "rules_version": "1", "person_key": uuid.uuid4().hex, "newcomer_event_id": None, "due": dt.date(2025, 1, 1) + dt.timedelta(days=rnd.randrange(1100)),
             "created_at": NOW, "updated_at": NOW, "state": "sent" if rnd.random() < 0.8 else "completed", "sequence": i, "turvakielto": False,
             "payload": "{}", "published_at": None} for i in range(20_000)]
    with engine.begin() as conn:
        conn.execute(ReferralRow.__table__.insert(), rows)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    yield ReferralLedger(engine)
    engine.dispose()


def test_a_refresh_reads_no_referral_unless_the_day_moved(big_ledger):
    ledger, today = big_ledger, dt.date(2026, 6, 1)
    ledger.move_counts_day(today)
    for authorities in (None, {"municipality:001", "municipality:002"}):
        with statements(ledger.engine) as seen:
            refresh_gauges(ledger, today, authorities)
        assert seen and not [s for s, _ in seen if _reads_referrals(s)], "a gauge refresh on the same day read the referrals table"


def test_the_daily_step_reads_only_the_referrals_due_since_by_their_index(big_ledger):
    ledger = big_ledger
    ledger.move_counts_day(dt.date(2026, 6, 1))
    with statements(ledger.engine) as seen:
        refresh_gauges(ledger, dt.date(2026, 6, 2))  # the next day: ~20 referrals fall due, of 20,000
    reads = [(s, p) for s, p in seen if _reads_referrals(s)]
    assert len(reads) == 1, [s for s, _ in reads]
    nodes, read = _scan_of_referrals(ledger.engine, *reads[0])
    # SQLite: SEARCH referrals USING INDEX ix_referrals_due; PostgreSQL: an index or bitmap scan of it
    assert any("ix_referrals_due" in n for n in nodes), nodes
    assert not any(n.startswith(("SCAN", "Seq Scan")) or ("Index" in n and "ix_referrals_due" not in n) for n in nodes), nodes
    assert read < 200, f"the daily step read {read} rows of referrals for one day's due dates"


def test_concurrent_writers_and_the_daily_step_keep_the_counts_exact(own_ledger):
    """Two threads recording and closing referrals of the same recipients while a third moves the
    counts' day back and forth: afterwards the counts equal a recount (no change counted against a
    day that moved under it, no lost update of a shared row)."""
    import threading

    ledger, errors = own_ledger, []
    days = [dt.date(2025, 6, 1) + dt.timedelta(days=7 * k) for k in range(12)]

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for i in range(25):
                pk = f"pk-{seed}-{i}-{uuid.uuid4().hex[:6]}"
                made = ledger.record(newcomer(pk), [decision(f"municipality:{rnd.randrange(3):03d}", "initial_assessment", rnd.choice(days)),
                                                    decision("employment_authority:01", "initial_assessment", rnd.choice(days))], NOW)
                if i % 3 == 0:
                    r = made.created[0]
                    assert ledger.apply_status(status(r["referral_id"], r["to"], "declined", "moved abroad"), NOW).code == "applied"
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    def mover() -> None:
        try:
            for k in range(30):
                ledger.move_counts_day(days[(k * 5) % len(days)])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (1, 2)] + [threading.Thread(target=mover)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for day in (days[0], days[5], days[-1]):
        assert ledger.counts_by_authority(day) == recount(ledger, day), day
    ledger.move_counts_day(days[3])
    assert ledger.counts_by_authority(days[3]) == recount(ledger, days[3])
