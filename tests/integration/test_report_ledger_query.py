"""Newcomer facts (migration 0005_newcomer_facts) and the report's ledger query, on SQLite and the real PostgreSQL."""

import datetime as dt
import uuid

import pytest

from hub.adapters import database
from hub.adapters.newcomer_facts import NewcomerFactRow
from hub.reporting import ledger_query
from hub.reporting.indicators import compute
from hub.routing.engine import route
from hub.routing.model import RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules

pytestmark = pytest.mark.integration
UTC = dt.timezone.utc
NOW = dt.datetime(2025, 3, 12, 12, tzinfo=UTC)


def newcomer(person_key, event_id=None, **fields):
    base = {"event_id": event_id or str(uuid.uuid4()), "person_key": person_key, "occurred_at": "2025-03-10T09:00:00Z", "municipality_code": "092"}
    return RoutingInput.from_record({**base, **fields})


def routed(ledger, n, now=NOW):
    return ledger.record(n, route(n, default_rules(), default_reference()), now)


def test_the_newcomers_model_matches_its_migration(ledger):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with ledger.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), database.Base.metadata)
    assert [d for d in diff if "newcomers" in repr(d)] == []


def test_facts_are_recorded_once_per_person_and_municipality(ledger):
    pk = f"pk-{uuid.uuid4().hex}"
    first = newcomer(pk, mother_tongue="ar", nationalities=["SY"], arrival_date="2025-03-01")
    routed(ledger, first)
    routed(ledger, first)  # redelivered: nothing new
    routed(ledger, newcomer(pk, change="circumstances", mother_tongue="ar", nationalities=["SY", "TR"]))
    routed(ledger, newcomer(pk, change="moved", municipality_code="091", previous_municipality_code="092", occurred_at="2025-03-20T09:00:00Z"))
    with ledger.Session() as s:
        rows = {r.municipality: r for r in s.query(NewcomerFactRow).filter_by(person_key=pk)}
    assert set(rows) == {"092", "091"}
    vantaa = rows["092"]
    assert (vantaa.mother_tongue, vantaa.nationalities, vantaa.arrival_date) == ("ar", "SY,TR", dt.date(2025, 3, 1))
    assert vantaa.registered_at.replace(tzinfo=vantaa.registered_at.tzinfo or UTC) == dt.datetime(2025, 3, 10, 9, tzinfo=UTC)
    assert rows["091"].registered_at.replace(tzinfo=rows["091"].registered_at.tzinfo or UTC) == dt.datetime(2025, 3, 20, 9, tzinfo=UTC)
    # the table holds no identity code: no column for one
    assert not {"person_id", "hetu"} & {c.name for c in NewcomerFactRow.__table__.columns}


def test_query_reads_the_municipalitys_cohort_and_the_assessment_hook(ledger):
    muni = "092"
    pk_a, pk_b, pk_moved = (f"pk-{uuid.uuid4().hex}" for _ in range(3))
    period = (dt.date(2030, 1, 1), dt.date(2030, 1, 31))  # a period of this test's own (the PostgreSQL database is shared)
    at = lambda d: dt.datetime(2030, 1, d, 9, tzinfo=UTC)  # noqa: E731
    a = routed(ledger, newcomer(pk_a, occurred_at=at(2).isoformat(), labour_force_status="unemployed_job_seeker", mother_tongue="ar"), at(3))
    routed(ledger, newcomer(pk_b, occurred_at=at(5).isoformat(), mother_tongue="so"), at(5))
    routed(ledger, newcomer(pk_moved, occurred_at=at(6).isoformat()), at(6))
    routed(ledger, newcomer(pk_moved, change="moved", municipality_code="091", previous_municipality_code="092", occurred_at=at(8).isoformat()), at(8))
    ia = next(r for r in a.created if r["purpose"] == "initial_assessment")
    for state, day in (("assessment_started", 10), ("completed", 20)):
        outcome = ledger.apply_status({"event_id": str(uuid.uuid4()), "occurred_at": at(day), "referral_id": ia["referral_id"], "authority": ia["to"], "status": state, "reason": None}, at(day))
        assert outcome.code == "applied"

    authorities = {r.authority for r in default_reference().authorities(muni).roles.values() if r.authority}
    rows = ledger_query.load(ledger.engine, muni, *period, authorities)
    assert {n.person_key for n in rows.newcomers} == {pk_a, pk_b, pk_moved}
    with ledger.Session() as session:
        found = ledger_query.assessment_and_plan_steps(session, [pk_a, pk_b], authorities)
    steps = sorted((s.person_key, s.step, s.at.replace(tzinfo=s.at.tzinfo or UTC)) for s in found)
    assert steps == sorted([(pk_a, "assessment_started", at(10)), (pk_a, "assessment_completed", at(20))])
    ind = compute(muni, *period, dt.date(2030, 2, 1), rows.newcomers, rows.referrals, rows.statuses, rows.steps)
    assert ind.newcomers == 3 and ind.assessments_done == 1 and ind.steps["referral_to_assessment"].median_days == 17.0
    # the person who moved away: counted as Vantaa's newcomer; the superseded Vantaa referral is closed
    assert ind.open_by_authority["municipality:092"] == 2
    assert ind.referrals_by_authority["municipality:092"] == 3


def test_assessments_the_consent_registry_received_count_and_unknown_mother_tongues_are_in_the_cohort(ledger):
    """Two assessors publish their assessments but report no `completed` on the referral: one is
    disclosed (plan requested), one held for consent. Both are done; the plan never exceeds them.
    A newcomer whose mother tongue DVV gives as 99 is routed and counted as 'unknown'."""
    from types import SimpleNamespace

    from hub.adapters import outbox
    from hub.adapters import consent_store as store

    muni = "092"
    pk_plan, pk_held, pk_99 = (f"pk-{uuid.uuid4().hex}" for _ in range(3))
    period = (dt.date(2031, 1, 1), dt.date(2031, 1, 31))  # this test's own period (the PostgreSQL database is shared)
    at = lambda d: dt.datetime(2031, 1, d, 9, tzinfo=UTC)  # noqa: E731
    for pk, day in ((pk_plan, 2), (pk_held, 3)):
        routed(ledger, newcomer(pk, occurred_at=at(day).isoformat(), labour_force_status="unemployed_job_seeker", mother_tongue="ar"), at(day))
    routed(ledger, newcomer(pk_99, occurred_at=at(4).isoformat(), mother_tongue="99"), at(4))
    with ledger.Session.begin() as s:
        for pk, day in ((pk_plan, 12), (pk_held, 14)):
            a = SimpleNamespace(event_id=str(uuid.uuid4()), assessment_id=f"A-{pk[-6:]}", assessor="employment_authority:09", plan_authority="municipality:092")
            store.add_held(s, assessment=a, person_key=pk, encoded=b"\0", reason="no_consent", now=at(day))
        row = outbox.enqueue(s, "hub.plan-requests.municipality-092.v1", "PlanRequest", str(uuid.uuid4()), b"\0", pk_plan, [], at(15))
        plan = {"request_id": str(uuid.uuid4()), "to": "municipality:092", "assessor": "employment_authority:09", "assessment_id": f"A-{pk_plan[-6:]}",
                "data_categories": ["education"], "consent_id": "c-1", "legal_basis": None}
        store.add_disclosure(s, plan=plan, person_key=pk_plan, outbox_id=row.id, now=at(15))

    authorities = {r.authority for r in default_reference().authorities(muni).roles.values() if r.authority}
    rows = ledger_query.load(ledger.engine, muni, *period, authorities)
    found = sorted((s.person_key, s.step, s.at.replace(tzinfo=s.at.tzinfo or UTC)) for s in rows.steps)
    assert found == sorted([(pk_plan, "assessment_received", at(12)), (pk_plan, "assessment_received", at(15)), (pk_plan, "plan_requested", at(15)),
                            (pk_held, "assessment_received", at(14))])
    ind = compute(muni, *period, dt.date(2031, 2, 1), rows.newcomers, rows.referrals, rows.statuses, rows.steps)
    assert ind.newcomers == 3 and ind.by_mother_tongue == {"ar": 2, "unknown": 1}
    assert (ind.assessments_done, ind.plans_requested) == (2, 1)
    assert ind.funnel() == [("newcomers", 3), ("referred", 3), ("reached", 2), ("assessed", 2), ("plan requested", 1)]
    assert ind.inferred["assessed"] == 0 and ind.inferred["reached"] == 2  # no recipient reported contact
    assert ind.steps["assessment_to_plan_request"].median_days == 3.0  # from the held assessment to its release


def test_after_an_identity_code_correction_the_person_counts_once_with_the_old_codes_history(ledger):
    """A newcomer's identity code is corrected after the municipality reported contact on the first
    referral: the report counts one person, each task once, and the contact made under the old code."""
    muni = "092"
    old, new = (f"pk-{uuid.uuid4().hex}" for _ in range(2))
    period = (dt.date(2032, 1, 1), dt.date(2032, 1, 31))  # this test's own period (the PostgreSQL database is shared)
    at = lambda d: dt.datetime(2032, 1, d, 9, tzinfo=UTC)  # noqa: E731
    first = routed(ledger, newcomer(old, occurred_at=at(2).isoformat(), labour_force_status="unemployed_job_seeker", mother_tongue="98"), at(2))
    outreach = next(r for r in first.created if r["purpose"] == "outreach")
    status = {"event_id": str(uuid.uuid4()), "occurred_at": at(4), "referral_id": outreach["referral_id"], "authority": outreach["to"],
              "status": "contacted", "reason": None}
    assert ledger.apply_status(status, at(4)).code == "applied"
    corrected = routed(ledger, newcomer(new, change="circumstances", previous_person_key=old, occurred_at=at(6).isoformat(),
                                        labour_force_status="unemployed_job_seeker", mother_tongue="98"), at(6))
    assert {w["cause"] for w in corrected.withdrawals} == {"identity_corrected"} and corrected.created
    authorities = {r.authority for r in default_reference().authorities(muni).roles.values() if r.authority}
    rows = ledger_query.load(ledger.engine, muni, *period, authorities)
    assert {r.person_key for r in rows.referrals} == {new}  # the old code's referrals are the same person's
    ind = compute(muni, *period, dt.date(2032, 2, 1), rows.newcomers, rows.referrals, rows.statuses, rows.steps)
    assert ind.newcomers == 1 and ind.referred == 1 and ind.reached == 1  # the contact under the old code counts
    assert dict(ind.referrals_by_authority) == {(r["to"]): 1 for r in first.created}  # each task once, not old and re-issued
    assert ind.by_mother_tongue_group == {"sign language": 1}
