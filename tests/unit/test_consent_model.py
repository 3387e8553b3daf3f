"""The pure consent rules, branch by branch."""

import datetime as dt

import pytest

from hub.consent import model, records
from hub.consent.model import Assessment, ConsentRecord, Disclose, Hold, LegalBasis, decide
from hub.domain import hetu

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
PERSON = hetu.make(dt.date(1990, 5, 17), 917)
OTHER = hetu.make(dt.date(1985, 1, 2), 955)
EMPLOY = "employment_authority:08"
MUNI = "municipality:091"
ALL = {"education": "upper secondary", "work_history": "8 years nursing", "language_skills": [{"language": "fi", "skill": "overall", "cefr_level": "A2"}],
       "literacy": "literate", "recommended_path": "employment", "service_needs": ["childcare"]}


def at(days=0, hours=0):
    return T0 + dt.timedelta(days=days, hours=hours)


def grant(cid="c1", categories=("education", "work_history"), recipients=(EMPLOY,), person=PERSON, valid_from=None, valid_until=None, when=None, purpose="integration_plan"):
    return ConsentRecord(event_id=f"e-{cid}-g", consent_id=cid, person_id=person, action="granted", recorded_by=MUNI, recorded_at=when or at(-1),
                         purpose=purpose, data_categories=frozenset(categories), recipients=frozenset(recipients), valid_from=valid_from, valid_until=valid_until)


def end(cid="c1", action="revoked", when=None, person=PERSON):
    return ConsentRecord(event_id=f"e-{cid}-{action}", consent_id=cid, person_id=person, action=action, recorded_by=MUNI, recorded_at=when or at(-0.5))


def assessment(data=None, recipient=EMPLOY, person=PERSON, eid="a1", assessor=MUNI):
    return Assessment(event_id=eid, assessment_id=f"as-{eid}", person_id=person, person_key="k" * 32, assessor=assessor,
                      plan_authority=recipient, occurred_at=at(-2), data=dict(ALL if data is None else data))


def test_consent_covering_some_categories_discloses_only_those():
    d = decide(assessment(), [grant()], now=T0)
    assert d == Disclose(EMPLOY, ("education", "work_history"), "c1", None, ("language_skills", "literacy", "service_needs", "recommended_path"))


def test_full_scope_discloses_everything_the_assessment_holds():
    d = decide(assessment({"education": "x", "literacy": "y"}), [grant(categories=model.DATA_CATEGORIES)], now=T0)
    assert isinstance(d, Disclose) and d.categories == ("education", "literacy") and d.withheld == ()


def test_no_consent_holds():
    assert decide(assessment(), [], now=T0) == Hold(EMPLOY, "no_consent", None, model.ordered(ALL))


def test_consent_of_another_person_does_not_count():
    assert decide(assessment(), [grant(person=OTHER)], now=T0).reason == "no_consent"


def test_recipient_not_named_holds():
    d = decide(assessment(recipient="employment_authority:01"), [grant()], now=T0)
    assert isinstance(d, Hold) and d.reason == "recipient_not_named" and d.consent_id == "c1"


def test_no_category_of_the_assessment_covered_holds():
    d = decide(assessment({"literacy": "y"}), [grant(categories=("education",))], now=T0)
    assert isinstance(d, Hold) and d.reason == "no_category_covered"


def test_not_yet_valid_holds_then_discloses_once_valid():
    h = [grant(valid_from=at(1))]
    assert decide(assessment(), h, now=T0).reason == "not_yet_valid"
    assert isinstance(decide(assessment(), h, now=at(1)), Disclose)


def test_expired_by_time_holds():
    h = [grant(valid_until=at(-0.1))]
    assert decide(assessment(), h, now=T0).reason == "expired"
    assert isinstance(decide(assessment(), h, now=at(-0.2)), Disclose)


def test_expiry_record_ends_the_consent():
    assert decide(assessment(), [grant(), end(action="expired")], now=T0).reason == "expired"


def test_revoked_holds():
    assert decide(assessment(), [grant(), end()], now=T0) == Hold(EMPLOY, "revoked", "c1", model.ordered(ALL))


def test_revocation_that_overtook_its_grant_still_ends_it():
    assert decide(assessment(), [end(), grant()], now=T0).reason == "revoked"


def test_regrant_under_the_same_id_does_not_revive_a_revoked_consent():
    again = ConsentRecord(**{**{f: getattr(grant(), f) for f in grant().__slots__}, "event_id": "e-again"})
    assert decide(assessment(), [grant(), end(), again], now=T0).reason == "revoked"


def test_revoked_then_granted_again_with_a_new_consent_is_covered():
    d = decide(assessment(), [grant(), end(), grant("c2", categories=("literacy",), when=at(-0.2))], now=T0)
    assert isinstance(d, Disclose) and d.consent_id == "c2" and d.categories == ("literacy",)


def test_other_purpose_holds():
    # only integration_plan exists; a record with another purpose cannot even be made
    with pytest.raises(model.InvalidConsent):
        grant(purpose="marketing")


def test_of_two_consents_the_one_covering_most_is_used():
    h = [grant("c1", categories=("education",)), grant("c2", categories=("education", "literacy"), when=at(-2))]
    d = decide(assessment(), h, now=T0)
    assert d.consent_id == "c2" and d.categories == ("education", "literacy")


def test_hold_reports_the_closest_miss():
    h = [grant("c1", recipients=(MUNI,)), grant("c2", valid_from=at(3))]
    assert decide(assessment(), h, now=T0).reason == "not_yet_valid"


LAW = LegalBasis("681/2023 § 99 (test)", "681/2023 § 99", "integration_plan", frozenset({"municipality"}), frozenset({"employment_authority"}),
                 frozenset({"education", "language_skills"}))


def test_legal_basis_discloses_its_categories_without_consent():
    d = decide(assessment(), [], [LAW], now=T0)
    assert d == Disclose(EMPLOY, ("education", "language_skills"), None, LAW.name, ("work_history", "literacy", "service_needs", "recommended_path"))


def test_legal_basis_for_another_recipient_kind_does_not_apply():
    assert isinstance(decide(assessment(recipient="wellbeing_area:01"), [], [LAW], now=T0), Hold)


def test_a_basis_for_municipality_to_employment_authority_does_not_cover_wellbeing_area_to_employment_authority():
    assert isinstance(decide(assessment(), [], [LAW], now=T0), Disclose)
    d = decide(assessment(assessor="wellbeing_area:01"), [], [LAW], now=T0)
    assert d == Hold(EMPLOY, "no_consent", None, model.ordered(ALL))
    # nor employment authority -> employment authority of another area
    assert isinstance(decide(assessment(assessor="employment_authority:01"), [], [LAW], now=T0), Hold)


def test_assessor_that_makes_the_plan_discloses_nothing_and_needs_no_consent():
    d = decide(assessment(recipient=MUNI), [], [LAW], now=T0)
    assert d == model.OwnPlan(MUNI, model.ordered(ALL))  # its own data, health included; no consent, no legal basis
    assert d.consent_id is None and d.legal_basis is None
    # a revoked consent or one for other categories changes nothing: no consent is needed
    assert decide(assessment(recipient=MUNI), [grant(recipients=(MUNI,)), end()], now=T0) == d
    # the same kind with another code is another authority: a disclosure
    assert isinstance(decide(assessment(recipient="municipality:092"), [], now=T0), Hold)


def test_health_data_without_consent_is_held():
    every_other = LegalBasis("all but health", "681/2023 § 99", "integration_plan", frozenset({"municipality"}), frozenset({"employment_authority"}),
                             frozenset(set(model.DATA_CATEGORIES) - model.CONSENT_ONLY_CATEGORIES))
    d = decide(assessment({"service_needs": ["mental health"]}), [], [every_other], now=T0)
    assert d == Hold(EMPLOY, "no_consent", None, ("service_needs",))
    # beside other data the basis covers, the rest goes and the health data stays back
    d = decide(assessment({"education": "x", "service_needs": ["mental health"]}), [], [every_other], now=T0)
    assert isinstance(d, Disclose) and d.categories == ("education",) and d.withheld == ("service_needs",) and d.consent_id is None
    # a consent covering it lets it go
    d = decide(assessment({"service_needs": ["mental health"]}), [grant(categories=("service_needs",))], [every_other], now=T0)
    assert isinstance(d, Disclose) and d.categories == ("service_needs",) and d.consent_id == "c1" and d.legal_basis is None


def test_no_legal_basis_can_name_health_data():
    with pytest.raises(model.InvalidConsent, match="service_needs may hold health data"):
        LegalBasis("x", "681/2023 § 99", "integration_plan", frozenset({"municipality"}), frozenset({"employment_authority"}), frozenset({"service_needs"}))
    with pytest.raises(model.InvalidConsent, match="section is empty"):
        LegalBasis("x", " ", "integration_plan", frozenset({"municipality"}), frozenset({"employment_authority"}), frozenset({"education"}))
    with pytest.raises(model.InvalidConsent, match="discloser_kinds"):
        LegalBasis("x", "681/2023 § 99", "integration_plan", frozenset(), frozenset({"employment_authority"}), frozenset({"education"}))


def test_releases_a_held_item_of_an_assessor_that_makes_the_plan_as_its_own():
    items = [(1, assessment(eid="a1", recipient=MUNI)), (2, assessment(eid="a2"))]
    [(item, _, decision)] = model.releases(items, [], now=T0)
    assert item == 1 and isinstance(decision, model.OwnPlan)


def test_legal_basis_and_consent_together():
    d = decide(assessment(), [grant(categories=("work_history",))], [LAW], now=T0)
    assert d.categories == ("education", "work_history", "language_skills") and d.consent_id == "c1" and d.legal_basis == LAW.name


def test_legal_basis_covering_none_of_the_data_does_not_apply():
    assert isinstance(decide(assessment({"literacy": "x"}), [], [LAW], now=T0), Hold)


def test_assessment_without_data_goes_on_a_consent_with_no_categories():
    d = decide(assessment({}), [grant()], now=T0)
    assert d == Disclose(EMPLOY, (), "c1", None, ())


def test_releases_keeps_order_and_skips_uncovered():
    items = [(1, assessment(eid="a1")), (2, assessment(eid="a2", recipient="municipality:092")), (3, assessment(eid="a3"))]
    assert [i for i, _, _ in model.releases(items, [grant()], now=T0)] == [1, 3]


def test_revocation_recipients_are_earlier_recipients_under_that_consent_once_each():
    made = [(EMPLOY, "c1"), (MUNI, "c2"), (EMPLOY, "c1"), ("wellbeing_area:01", "c1"), (MUNI, None)]
    assert model.revocation_recipients("c1", made) == [EMPLOY, "wellbeing_area:01"]


def test_due_expiries():
    h = [grant("c1", valid_until=at(-1)), grant("c2", valid_until=at(1)), grant("c3", valid_until=at(-1)), end("c3", "expired")]
    assert [c.consent_id for c in model.due_expiries(h, T0)] == ["c1"]


@pytest.mark.parametrize("kwargs, reason", [
    ({"categories": ()}, "invalid_consent"),
    ({"recipients": ()}, "invalid_consent"),
    ({"categories": ("shoe_size",)}, "unknown_data_category"),
    ({"recipients": ("mayor:1",)}, "invalid_authority"),
    ({"valid_from": T0, "valid_until": T0}, "invalid_consent"),
])
def test_invalid_grants_are_refused_with_a_reason(kwargs, reason):
    with pytest.raises(model.InvalidConsent) as exc:
        grant(**kwargs)
    assert exc.value.reason == reason


def test_plan_request_carries_only_the_disclosed_categories_and_a_deterministic_id():
    a = assessment()
    d = decide(a, [grant()], now=T0)
    rec = records.plan_request(a, d, T0)
    assert rec["education"] == ALL["education"] and rec["work_history"] == ALL["work_history"]
    assert rec["literacy"] is None and rec["language_skills"] == [] and rec["service_needs"] == [] and rec["recommended_path"] is None
    assert rec["request_id"] == records.plan_request(a, d, at(5))["request_id"] == rec["event_id"]
    from hub.schemas.codec import default_codec

    assert default_codec().decode(default_codec().encode("PlanRequest", rec)).record["data_categories"] == ["education", "work_history"]


def test_invalid_person_id_in_an_event_is_refused_without_echoing_it():
    rec = records.consent_to_avro(grant())
    bad = PERSON[:-1] + ("A" if PERSON[-1] != "A" else "B")
    rec["person_id"] = bad
    with pytest.raises(model.InvalidConsent) as exc:
        records.consent_from_avro(rec)
    assert exc.value.reason == "invalid_person_id" and bad not in str(exc.value)
