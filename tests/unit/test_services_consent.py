"""The consent registry's decisions (hub.services.consent) over an in-memory unit of work
(tests.fakes.MemoryConsentUnits), no database: a consent that covers the recipient discloses, none
holds the assessment and tells the assessor, a legal basis discloses its categories, a grant
releases what it covers, a revocation ends what a consent would still have released, a redelivered
event changes nothing, and what one record does commits together or not at all. The same use cases
on SQLite and PostgreSQL: test_consent_service.py, test_consent_interleavings.py and the
integration tests."""

import datetime as dt

import pytest

from hub.consent import model, records
from hub.domain import hetu
from hub.schemas import topics
from hub.schemas.codec import default_codec
from hub.services.consent import ConsentRegistry
from tests.fakes import ConsentState, MemoryConsentUnits, Outage

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
SECRET = "s"
PERSON = hetu.make(dt.date(1990, 5, 17), 941)
KEY = hetu.person_key(PERSON, SECRET)
EMPLOY, MUNI = "employment_authority:08", "municipality:091"
LAW = model.LegalBasis("681/2023 § 99 (test)", "681/2023 § 99", "integration_plan", frozenset({"municipality"}), frozenset({"employment_authority"}),
                       frozenset({"language_skills"}))
CODEC = default_codec()


@pytest.fixture
def units():
    return MemoryConsentUnits()


@pytest.fixture
def clock():
    return {"now": T0}


@pytest.fixture
def registry(units, clock):
    return ConsentRegistry(units, person_key_secret=SECRET, codec=CODEC, clock=lambda: clock["now"])


def grant(cid, **kw):
    base = dict(event_id=f"g-{cid}", consent_id=cid, person_id=PERSON, action=model.GRANTED, recorded_by=MUNI, recorded_at=T0,
                data_categories=frozenset({"education"}), recipients=frozenset({EMPLOY}))
    return model.ConsentRecord(**{**base, **kw})


def revoke(cid, event_id="r-1"):
    return model.ConsentRecord(event_id=event_id, consent_id=cid, person_id=PERSON, action=model.REVOKED, recorded_by=MUNI, recorded_at=T0)


def assess(registry, n, **data):
    rec = {"event_id": f"00000000-0000-4000-8000-{n:012d}", "occurred_at": T0, "recorded_at": T0, "source": MUNI, "schema_version": 1,
           "assessment_id": f"as-{n}", "person_key": KEY, "person_id": PERSON, "assessor": MUNI, "plan_authority": EMPLOY, "referral_id": None,
           "education": "university", "work_history": None, "language_skills": [], "literacy": None, "recommended_path": None, "service_needs": []}
    rec.update(data)
    return registry.handle_assessment(records.assessment_from_avro(rec), CODEC.encode("AssessmentCompleted", rec))


def sent(units, schema):
    """(topic, key, record) of each outbox message of `schema`, in order."""
    return [(topic, key, CODEC.decode(value).record) for topic, name, _, value, key in units.state.outbox if name == schema]


def test_a_consent_covering_the_recipient_discloses_a_plan_request_on_its_own_topic(registry, units):
    registry.record_consent(grant("c1"))
    out = assess(registry, 1)
    assert out.disclosed == [(EMPLOY, ("education",), T0)] and out.held == [] and not out.duplicate
    [(topic, key, plan)] = sent(units, "PlanRequest")
    assert topic == topics.plan_request_topic(EMPLOY) and key == KEY and plan["to"] == EMPLOY and plan["education"] == "university"
    [audit] = registry.audit(PERSON)
    assert audit["consent_id"] == "c1" and audit["data_categories"] == ["education"] and audit["withdrawn"] == []
    assert audit["request_id"] == plan["request_id"]


def test_without_a_consent_the_assessment_is_held_and_the_assessor_told(registry, units):
    out = assess(registry, 1)
    assert out.disclosed == [] and out.held == ["no_consent"] and out.notices == [("consent_required", MUNI)]
    assert registry.held_count() == 1 and sent(units, "PlanRequest") == [] and registry.audit(PERSON) == []
    [(topic, key, notice)] = sent(units, "Notice")
    assert topic == topics.notice_topic(MUNI) and key == KEY and notice["notice_type"] == "consent_required"
    [item] = registry.person_view(PERSON)["held_items"]
    assert item["assessment_id"] == "as-1" and item["recipient"] == EMPLOY and item["reason"] == "no_consent"


def test_a_consent_for_another_recipient_does_not_disclose(registry, units):
    registry.record_consent(grant("c1", recipients=frozenset({"employment_authority:43"})))
    assert assess(registry, 1).held == ["recipient_not_named"] and sent(units, "PlanRequest") == []


def test_a_legal_basis_discloses_its_categories_without_a_consent(registry, units):
    registry.legal_bases = (LAW,)
    out = assess(registry, 1, language_skills=[{"language": "fi", "skill": "overall", "cefr_level": "B1"}])
    assert out.disclosed == [(EMPLOY, ("language_skills",), T0)]
    [(_, _, plan)] = sent(units, "PlanRequest")
    assert plan["legal_basis"] == LAW.name and plan["consent_id"] is None and plan["education"] is None  # education needs a consent
    [audit] = registry.audit(PERSON)
    assert audit["legal_basis"] == LAW.name and audit["data_categories"] == ["language_skills"]


def test_a_legal_basis_covers_only_its_discloser(registry, units):
    registry.legal_bases = (LAW,)  # municipality -> employment authority
    out = assess(registry, 1, assessor="wellbeing_area:01", language_skills=[{"language": "fi", "skill": "overall", "cefr_level": "B1"}])
    assert out.disclosed == [] and out.held == ["no_consent"] and sent(units, "PlanRequest") == [] and registry.audit(PERSON) == []
    assert out.notices == [("consent_required", "wellbeing_area:01")]


def test_an_assessor_that_makes_the_plan_gets_its_plan_request_with_nothing_disclosed(registry, units):
    out = assess(registry, 1, assessor=EMPLOY, service_needs=["mental health"])
    assert out.disclosed == [] and out.held == [] and out.notices == [] and out.own_plans == [(EMPLOY, T0)]
    assert registry.held_count() == 0 and sent(units, "Notice") == []
    [(topic, key, plan)] = sent(units, "PlanRequest")  # what the plan maker's system relies on still arrives
    assert topic == topics.plan_request_topic(EMPLOY) and key == KEY and plan["to"] == plan["assessor"] == EMPLOY
    assert plan["consent_id"] is None and plan["legal_basis"] is None
    assert plan["data_categories"] == ["education", "service_needs"] and plan["service_needs"] == ["mental health"]  # its own data
    assert registry.audit(PERSON) == []  # no audit row as a disclosure ...
    [row] = units.state.disclosures  # ... only the plan-request ledger's row, marked as no disclosure
    assert row.disclosed is False and row.request_id == plan["request_id"]


def test_a_revocation_does_not_concern_an_assessors_own_plan_request(registry, units):
    registry.record_consent(grant("c1", recipients=frozenset({EMPLOY})))
    assess(registry, 1, assessor=EMPLOY)
    assert registry.record_consent(revoke("c1")).notices == []


def test_the_sweep_releases_an_item_held_before_an_own_plan_request_needed_no_consent(registry, units):
    rec = {"event_id": "00000000-0000-4000-8000-000000000009", "occurred_at": T0, "recorded_at": T0, "source": EMPLOY, "schema_version": 1,
           "assessment_id": "as-9", "person_key": KEY, "person_id": PERSON, "assessor": EMPLOY, "plan_authority": EMPLOY, "referral_id": None,
           "education": "university", "work_history": None, "language_skills": [], "literacy": None, "recommended_path": None, "service_needs": []}
    a = records.assessment_from_avro(rec)
    with units() as uow:  # as an earlier version left it: held for want of a consent
        uow.consents.hold(a, KEY, CODEC.encode("AssessmentCompleted", rec), "no_consent", T0)
        uow.commit()
    assert registry.held_count() == 1
    out = registry.sweep()
    assert out.released == 1 and out.own_plans == [(EMPLOY, T0)] and registry.held_count() == 0
    [(_, _, plan)] = sent(units, "PlanRequest")
    assert plan["to"] == EMPLOY and plan["consent_id"] is None and registry.audit(PERSON) == []
    assert registry.sweep().released == 0  # once


def test_health_data_a_legal_basis_leaves_out_is_held_until_a_consent_covers_it(registry, units):
    registry.legal_bases = (model.LegalBasis("education by law", "681/2023 § 99", "integration_plan", frozenset({"municipality"}),
                                             frozenset({"employment_authority"}), frozenset({"education"})),)
    out = assess(registry, 1, service_needs=["mental health"])
    assert out.disclosed == [(EMPLOY, ("education",), T0)] and out.held == ["no_consent"] and out.notices == [("consent_required", MUNI)]
    [(_, _, first)] = sent(units, "PlanRequest")
    assert first["data_categories"] == ["education"] and first["service_needs"] == [] and first["legal_basis"] == "education by law"
    [(_, _, notice)] = sent(units, "Notice")
    assert "covering service_needs" in notice["message"] and notice["assessment_id"] == "as-1"
    assert registry.held_count() == 1
    out = registry.record_consent(grant("c1", data_categories=frozenset({"service_needs"})))
    assert out.released == 1 and registry.held_count() == 0
    [_, (_, _, second)] = sent(units, "PlanRequest")
    assert second["assessment_id"] == "as-1" and second["request_id"] != first["request_id"]
    assert second["data_categories"] == ["service_needs"] and second["service_needs"] == ["mental health"] and second["consent_id"] == "c1"
    assert second["education"] is None and second["legal_basis"] is None
    assert [(a["consent_id"], a["legal_basis"]) for a in registry.audit(PERSON)] == [(None, "education by law"), ("c1", None)]


def test_health_data_another_consent_covers_goes_at_once_in_a_plan_request_of_its_own(registry, units):
    registry.record_consent(grant("c-edu", data_categories=frozenset({"education", "work_history"})))
    registry.record_consent(grant("c-health", data_categories=frozenset({"service_needs"})))
    out = assess(registry, 1, work_history="5 years", service_needs=["mental health"])
    assert out.held == [] and [cats for _, cats, _ in out.disclosed] == [("education", "work_history"), ("service_needs",)]
    assert [(p["consent_id"], p["data_categories"]) for _, _, p in sent(units, "PlanRequest")] == [
        ("c-edu", ["education", "work_history"]), ("c-health", ["service_needs"])]
    # a redelivery changes nothing
    assert assess(registry, 1, work_history="5 years", service_needs=["mental health"]).duplicate and len(sent(units, "PlanRequest")) == 2


def test_a_grant_releases_the_held_items_it_covers_in_order(registry, units):
    assess(registry, 1)
    assess(registry, 2)
    out = registry.record_consent(grant("c1"))
    assert out.recorded == ["granted"] and out.released == 2 and registry.held_count() == 0
    assert [p["assessment_id"] for _, _, p in sent(units, "PlanRequest")] == ["as-1", "as-2"]
    assert [a["consent_id"] for a in registry.audit(PERSON)] == ["c1", "c1"]


def test_a_revocation_notifies_each_earlier_recipient_and_holds_what_comes_after(registry, units):
    registry.record_consent(grant("c1"))
    assess(registry, 1)
    out = registry.record_consent(revoke("c1"))
    assert out.recorded == ["revoked"] and out.notices == [("consent_revoked", EMPLOY)]
    assert assess(registry, 2).held == ["revoked"]
    assert [p["assessment_id"] for _, _, p in sent(units, "PlanRequest")] == ["as-1"]


def test_a_revocation_ends_a_consent_before_it_releases_what_it_would_have(registry, units, clock):
    assess(registry, 1)
    registry.record_consent(grant("c1", valid_from=T0 + dt.timedelta(days=2)))
    assert registry.held_count() == 1  # not valid yet: still held
    registry.record_consent(revoke("c1"))
    clock["now"] = T0 + dt.timedelta(days=3)
    assert registry.sweep().released == 0 and registry.held_count() == 1 and sent(units, "PlanRequest") == []


def test_the_sweep_releases_what_a_consent_that_became_valid_covers(registry, units, clock):
    assess(registry, 1)
    registry.record_consent(grant("c1", valid_from=T0 + dt.timedelta(days=2)))
    clock["now"] = T0 + dt.timedelta(days=3)
    assert registry.sweep().released == 1 and registry.held_count() == 0 and len(sent(units, "PlanRequest")) == 1


def test_the_sweep_records_an_expiry_once_as_the_hub(registry, units, clock):
    registry.record_consent(grant("c1", valid_until=T0 + dt.timedelta(days=30)))
    assess(registry, 1)
    clock["now"] = T0 + dt.timedelta(days=31)
    out = registry.sweep()
    assert out.recorded == ["expired"] and out.notices == [("consent_expired", EMPLOY)]
    assert registry.sweep().recorded == []
    [(_, _, expiry)] = sent(units, "Consent")
    assert expiry["action"] == "expired" and expiry["recorded_by"] == "integration-hub"


def test_a_redelivered_assessment_is_a_duplicate_and_changes_nothing(registry, units):
    registry.record_consent(grant("c1"))
    assert assess(registry, 1).disclosed
    before, commits = len(units.state.outbox), units.commits
    again = assess(registry, 1)
    assert again.duplicate and again.disclosed == [] and len(units.state.outbox) == before and len(registry.audit(PERSON)) == 1
    assert units.commits == commits + 1  # the transaction that found the mark, writing nothing


def test_a_redelivered_consent_event_is_a_duplicate(registry, units):
    assert registry.record_consent(grant("c1")).recorded == ["granted"]
    again = registry.record_consent(grant("c1"))
    assert again.duplicate and again.recorded == [] and len(units.state.events) == 1


def test_what_one_record_does_commits_together_or_not_at_all(registry, units):
    registry.record_consent(grant("c1"))
    units.fails = Outage("the database went away")
    with pytest.raises(Outage):
        assess(registry, 1)
    assert units.state.outbox == [] and units.state.disclosures == [] and len(units.state.marks) == 1  # the grant's mark only
    units.fails = None
    assert assess(registry, 1).disclosed and len(units.state.outbox) == 1 and len(units.state.disclosures) == 1  # read again: applied once


def test_a_tombstone_refuses_a_new_grant_and_makes_an_end_a_duplicate(units, clock):
    units.state = ConsentState(tombstones={(KEY, "c1"): ["revoked", T0]})
    registry = ConsentRegistry(units, person_key_secret=SECRET, codec=CODEC, clock=lambda: clock["now"])
    with pytest.raises(model.InvalidConsent) as refused:
        registry.record_consent(grant("c1"))
    assert refused.value.reason == "consent_ended" and units.state.events == [] and len(units.state.marks) == 1
    assert registry.record_consent(revoke("c1")).duplicate
    assert registry.holders("c1") == {}


def test_an_assessment_whose_person_key_is_not_its_persons_is_refused(registry, units):
    with pytest.raises(model.InvalidConsent) as refused:
        assess(registry, 1, person_key=hetu.person_key(PERSON, "another secret"))
    assert refused.value.reason == "person_key_mismatch" and units.commits == 0
