"""The coordination ledger on SQLite and the real PostgreSQL: once per referral, sequences,
moves, the status state machine, open and overdue counts, the gauges."""

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from hub import metrics
from hub.adapters import database
from hub.adapters.referral_ledger import refresh_gauges
from hub.routing.engine import route
from hub.routing.model import RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules

pytestmark = pytest.mark.integration
NOW = dt.datetime(2025, 6, 15, 12, tzinfo=dt.timezone.utc)


def newcomer(person_key, event_id=None, **fields):
    base = {"event_id": event_id or str(uuid.uuid4()), "person_key": person_key, "occurred_at": "2025-06-15T09:00:00Z", "municipality_code": "092"}
    return RoutingInput.from_record({**base, **fields})


def routed(ledger, n):
    return ledger.record(n, route(n, default_rules(), default_reference()), NOW)


def status(referral_id, authority, state, reason=None):
    return {"event_id": str(uuid.uuid4()), "occurred_at": NOW, "referral_id": referral_id, "authority": authority, "status": state, "reason": reason}


def test_each_referral_once_even_for_a_redelivered_event(ledger):
    pk = f"pk-{uuid.uuid4().hex}"
    n = newcomer(pk, service_needs=["health"], labour_force_status="unemployed_job_seeker")
    first = routed(ledger, n)
    assert {r["to"] for r in first.created} == {"municipality:092", "wellbeing_area:04", "employment_authority:43"}
    assert len(first.to_publish) == 3 and not first.duplicate
    # crash before mark_published: the redelivery re-sends the same referrals, creates nothing
    again = routed(ledger, n)
    assert again.duplicate and again.created == [] and {r["referral_id"] for r in again.to_publish} == {r["referral_id"] for r in first.created}
    ledger.mark_published([r["referral_id"] for r in again.to_publish], NOW)
    assert routed(ledger, n).to_publish == []


def test_sequences_count_per_recipient_without_gaps(ledger):
    before = {a: o for a, (o, _) in ledger.counts_by_authority(NOW.date()).items()}
    seqs = []
    for _ in range(3):
        rec = routed(ledger, newcomer(f"pk-{uuid.uuid4().hex}", municipality_code="005"))
        seqs += [r["sequence"] for r in rec.created if r["to"] == "municipality:005"]
    assert seqs == sorted(seqs) and seqs[-1] - seqs[0] == 2
    assert ledger.counts_by_authority(NOW.date())["municipality:005"][0] == before.get("municipality:005", 0) + 3


def test_circumstances_add_only_new_referrals(ledger):
    pk = f"pk-{uuid.uuid4().hex}"
    first = routed(ledger, newcomer(pk))
    assert [r["to"] for r in first.created] == ["municipality:092"]
    update = routed(ledger, newcomer(pk, change="circumstances", labour_force_status="unemployed_job_seeker"))
    assert [(r["to"], r["purpose"]) for r in update.created] == [("employment_authority:43", "initial_assessment")]


def test_a_move_re_addresses_and_supersedes_the_old_municipality(ledger):
    pk = f"pk-{uuid.uuid4().hex}"
    first = routed(ledger, newcomer(pk, municipality_code="092", service_needs=["health"]))
    moved = routed(ledger, newcomer(pk, change="moved", municipality_code="245", previous_municipality_code="092", service_needs=["health"]))
    # Kerava (245) is in the same wellbeing area (04) as Vantaa: that referral is not repeated
    assert {r["to"] for r in moved.created} == {"municipality:245"}
    old = [r["referral_id"] for r in first.created if r["to"] == "municipality:092"]
    assert moved.superseded == old and ledger.state(old[0]) == "superseded"
    assert ledger.state(next(r["referral_id"] for r in first.created if r["to"] == "wellbeing_area:04")) == "sent"


def test_status_state_machine_recipient_check_and_idempotency(ledger):
    pk = f"pk-{uuid.uuid4().hex}"
    [ref] = routed(ledger, newcomer(pk, municipality_code="005")).created
    rid = ref["referral_id"]
    accepted = status(rid, "municipality:005", "accepted")
    assert ledger.apply_status(accepted, NOW).code == "applied"
    assert ledger.apply_status(accepted, NOW).code == "duplicate"
    forbidden = ledger.apply_status(status(rid, "municipality:091", "declined", "not ours"), NOW)
    assert forbidden.code == "forbidden" and not forbidden.accepted
    assert ledger.apply_status(status(str(uuid.uuid4()), "municipality:005", "accepted"), NOW).code == "unknown_referral"
    assert ledger.apply_status(status(rid, "municipality:005", "declined"), NOW).code == "invalid_status"
    assert ledger.apply_status(status(rid, "municipality:005", "contacted"), NOW).code == "applied"
    assert ledger.apply_status(status(rid, "municipality:005", "accepted"), NOW).code == "invalid_transition"
    assert ledger.apply_status(status(rid, "municipality:005", "declined", "moved abroad"), NOW).code == "applied"
    assert ledger.state(rid) == "declined"
    assert [h[0] for h in ledger.history(rid)] == ["sent", "accepted", "contacted", "declined"]
    assert rid not in {r.referral_id for r in ledger.open_referrals("municipality:005")}


def test_open_and_overdue_and_the_gauges(ledger):
    pk = f"pk-{uuid.uuid4().hex}"
    rec = routed(ledger, newcomer(pk, municipality_code="010", labour_force_status="home_parent", arrival_date="2023-01-01"))
    ia = next(r for r in rec.created if r["purpose"] == "initial_assessment")
    assert ia["due"] == dt.date(2026, 1, 1)
    assert ia["referral_id"] in {r.referral_id for r in ledger.open_referrals("municipality:010")}
    assert ledger.overdue_referrals(dt.date(2026, 1, 1), "municipality:010") == []  # due today: not yet overdue
    assert [r.referral_id for r in ledger.overdue_referrals(dt.date(2026, 1, 2), "municipality:010")] == [ia["referral_id"]]
    refresh_gauges(ledger, dt.date(2026, 1, 2))
    open_count, overdue_count = ledger.counts_by_authority(dt.date(2026, 1, 2))["municipality:010"]
    assert metrics.open_referrals.labels("municipality:010")._value.get() == open_count >= 2
    assert metrics.overdue_referrals.labels("municipality:010")._value.get() == overdue_count >= 1


def test_the_models_match_the_migration(ledger):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    ours = {"referrals", "referral_events", "referral_sequences", "referral_counts", "referral_counts_day"}
    with ledger.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), database.Base.metadata)
    assert [d for d in diff if any(t in repr(d) for t in ours)] == []


def test_a_batch_records_like_one_event_at_a_time(ledger):
    """record_many (the routing agent's batch) = record() per event in order: a repeat inside the
    batch sends nothing more, a redelivered batch re-sends only what was not marked published, a
    move inside the batch supersedes what the batch made before it, sequences have no gaps."""
    rules, ref = default_rules(), default_reference()
    pk_a, pk_b = f"pk-{uuid.uuid4().hex}", f"pk-{uuid.uuid4().hex}"
    a = newcomer(pk_a, labour_force_status="unemployed_job_seeker")
    b = newcomer(pk_b, municipality_code="005")
    moved = newcomer(pk_b, change="moved", municipality_code="009", previous_municipality_code="005")
    items = [(n, route(n, rules, ref)) for n in (a, a, b, moved)]
    with ledger.engine.connect() as conn:
        before = dict(conn.execute(sa.text("select authority, last_sequence from referral_sequences")).all())
    done = ledger.record_many(items, NOW)
    assert [d.duplicate for d in done] == [False, True, False, False]
    assert {r["to"] for r in done[0].to_publish} == {"municipality:092", "employment_authority:43"} and done[1].to_publish == []
    assert {r["to"] for r in done[2].created} == {"municipality:005"} and {r["to"] for r in done[3].created} == {"municipality:009"}
    assert done[3].superseded == [done[2].created[0]["referral_id"]] and done[3].superseded_authorities == ["municipality:005"]
    assert ledger.state(done[2].created[0]["referral_id"]) == "superseded"
    for r in (r for d in done for r in d.created):  # each recipient's numbering goes on from where it was, without gaps
        assert r["sequence"] == before.get(r["to"], 0) + 1  # one referral per recipient in this batch
    sent_first = [r["referral_id"] for r in done[0].to_publish]
    ledger.mark_published(sent_first, NOW)
    again = ledger.record_many(items, NOW)  # the batch redelivered after a crash before its second mark
    assert all(d.duplicate and d.created == [] for d in again)
    assert again[0].to_publish == [] and again[1].to_publish == []
    assert {r["referral_id"] for r in again[2].to_publish} == {done[2].created[0]["referral_id"]}
    assert {r["referral_id"] for r in again[3].to_publish} == {r["referral_id"] for r in done[3].created}
    assert ledger.history(done[2].created[0]["referral_id"]) == [("sent", "hub", done[2].created[0]["rule"]), ("superseded", "hub", "moved to municipality 009")]
