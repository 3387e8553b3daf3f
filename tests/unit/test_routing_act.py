"""The rules against 681/2023: one assessor for a registered jobseeker; the unaccompanied-minor rules
only for the residence bases the act names; temporary protection like international protection; the
rules' validity start; the act's term for the assessment; due dates and time limits from the start
of the integration period (the first permit or registration); literacy and mental-health needs."""

import copy
import datetime as dt

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.routing.engine import add_period, route
from hub.routing.model import LABOUR_FORCE_STATUSES, RESIDENCE_BASES, SERVICE_NEEDS, RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import DEFAULT_RULES, RulesError, default_rules, parse_rules

REF = default_reference()
RULES = default_rules()
DAY = dt.date(2025, 6, 15)
TERM = "osaamisen ja kotoutumisen palvelutarpeen arviointi"


def decide(occurred_at: str = "2025-06-15T09:00:00Z", **fields):
    return route(RoutingInput.from_record({"event_id": "e-1", "occurred_at": occurred_at, "municipality_code": "092", **fields}), RULES, REF)


def pairs(decisions):
    return {(d.authority, d.purpose) for d in decisions}


def by(decisions, authority, purpose):
    [d] = [d for d in decisions if (d.authority, d.purpose) == (authority, purpose)]
    return d


def born(years: int, days: int = 0) -> str:
    return (add_period(DAY, years=-years) + dt.timedelta(days=days)).isoformat()


# -- one assessor -------------------------------------------------------------------------------


@pytest.mark.parametrize("age, arrival", [(16, "2025-03-01"), (20, "2023-01-01")])  # a minor; a young adult who arrived at 17
def test_a_registered_jobseeker_who_arrived_as_an_unaccompanied_minor_has_one_assessor_the_employment_authority(age, arrival):
    decisions = decide(birth_date=born(age), arrival_date=arrival, guardian_in_finland=False, residence_basis="international_protection",
                       labour_force_status="unemployed_job_seeker")
    assessments = [d for d in decisions if d.purpose == "initial_assessment"]
    assert [(d.authority, d.rule) for d in assessments] == [("employment_authority:43", "assess-job-seeker")]
    assert any("assess-unaccompanied-minor: not fired" in line for line in decisions[0].trace)
    assert ("wellbeing_area:04", "unaccompanied_minor") in pairs(decisions)  # the wellbeing area's own task stays


def test_without_jobseeker_registration_the_municipality_assesses_the_unaccompanied_minor():
    decisions = decide(birth_date=born(16), guardian_in_finland=False, residence_basis="international_protection", labour_force_status="student")
    assert by(decisions, "municipality:092", "initial_assessment").rule == "assess-protection-beneficiary"
    assert "also by rule(s) assess-unaccompanied-minor" in by(decisions, "municipality:092", "initial_assessment").reasons[-1]


# -- the unaccompanied-minor rules' scope ----------------------------------------------------------


@pytest.mark.parametrize("basis", ["study", "work", "family", "eu_citizen", "returnee", "other"])
def test_a_minor_without_a_guardian_on_another_residence_basis_is_not_in_the_unaccompanied_minor_rules(basis):
    minor = decide(birth_date=born(16), guardian_in_finland=False, residence_basis=basis)
    assert pairs(minor) == {("municipality:092", "outreach")}
    young_adult = decide(birth_date=born(20), arrival_date="2023-01-01", guardian_in_finland=False, residence_basis=basis)
    assert not any(d.purpose == "unaccompanied_minor" for d in young_adult)
    assert any(f"unaccompanied-aftercare: not fired (residence_basis is {basis}" in line for line in young_adult[0].trace)


@pytest.mark.parametrize("basis", ["international_protection", "temporary_protection"])
def test_protection_bases_get_the_unaccompanied_minor_rules(basis):
    minor = decide(birth_date=born(16), guardian_in_finland=False, residence_basis=basis)
    assert by(minor, "wellbeing_area:04", "unaccompanied_minor").rule == "unaccompanied-minor"
    young_adult = decide(birth_date=born(20), arrival_date="2023-01-01", guardian_in_finland=False, residence_basis=basis)
    assert by(young_adult, "wellbeing_area:04", "unaccompanied_minor").rule == "unaccompanied-aftercare"


def test_an_unknown_residence_basis_still_refers_the_unaccompanied_minor_and_the_reason_says_the_basis_is_unknown():
    d = by(decide(birth_date=born(16), guardian_in_finland=False), "wellbeing_area:04", "unaccompanied_minor")
    assert any("residence_basis is unknown" in r for r in d.reasons)
    assert any("checks it" in r for r in d.reasons)


# -- the validity start ---------------------------------------------------------------------------


def test_an_event_dated_before_the_rules_take_effect_gets_outreach_only_and_says_why():
    everything = dict(labour_force_status="unemployed_job_seeker", residence_basis="international_protection", service_needs=["health"],
                      birth_date="2009-01-01", guardian_in_finland=False, arrival_date="2024-12-01")
    before = decide(occurred_at="2024-12-30T10:00:00Z", **everything)
    assert pairs(before) == {("municipality:092", "outreach")}
    [d] = before
    assert any(r.startswith("the event is dated before 1.1.2025") and "(a registered unemployed jobseeker: the employment authority)" in r for r in d.reasons)
    assert "event dated 2024-12-30, before the rules' validity start 2025-01-01: only rule(s) outreach-municipality apply" in d.trace
    assert "assess-job-seeker: not applied (the event is dated before the rules' validity start 2025-01-01)" in d.trace
    # the same facts on the first day (in Finnish time: 22:30 UTC on 31 December is 1 January) are routed by every rule
    on_the_day = decide(occurred_at="2024-12-31T22:30:00Z", **everything)
    assert ("employment_authority:43", "initial_assessment") in pairs(on_the_day)
    assert ("wellbeing_area:04", "social_and_health_services") in pairs(on_the_day)
    assert not any("before 1.1.2025" in r for d in on_the_day for r in d.reasons)


def test_without_occurred_at_the_validity_start_cannot_be_checked_and_the_trace_says_so():
    n = RoutingInput.from_record({"municipality_code": "092", "labour_force_status": "unemployed_job_seeker"})
    decisions = route(n, RULES, REF)
    assert ("employment_authority:43", "initial_assessment") in pairs(decisions)
    assert "rules valid from 2025-01-01: not checked (no occurred_at)" in decisions[0].trace


def _raw():
    return yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r.update(valid_from="1.1.2025"), "'valid_from' must be a date YYYY-MM-DD"),
    (lambda r: r["before_valid_from"].update(rules=["no-such-rule"]), "names no rule ['no-such-rule']"),
    (lambda r: r.update(before_valid_from=["outreach-municipality"]), "'before_valid_from' must be a mapping"),
    (lambda r: r.pop("valid_from"), "'before_valid_from' needs 'valid_from'"),
])
def test_a_bad_validity_section_is_reported_clearly(mutate, expected):
    raw = copy.deepcopy(_raw())
    mutate(raw)
    with pytest.raises(RulesError) as info:
        parse_rules(raw, source="custom.yaml")
    assert expected in str(info.value)


def test_a_rules_file_without_valid_from_applies_to_every_date_and_yaml_dates_are_accepted():
    raw = _raw()
    raw.pop("valid_from"), raw.pop("before_valid_from")
    n = RoutingInput.from_record({"occurred_at": "2020-01-01T09:00:00Z", "municipality_code": "092", "labour_force_status": "unemployed_job_seeker"})
    assert ("employment_authority:43", "initial_assessment") in pairs(route(n, parse_rules(raw), REF))
    raw = _raw()
    raw["valid_from"] = dt.date(2025, 1, 1)  # an unquoted YAML date
    assert parse_rules(raw).valid_from == dt.date(2025, 1, 1)


# -- the act's term -------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"labour_force_status": "unemployed_job_seeker"}, {"labour_force_status": "home_parent"}, {"residence_basis": "temporary_protection"},
    {"birth_date": born(16), "guardian_in_finland": False}, {"service_needs": ["literacy"]}])
def test_every_assessment_decision_names_the_assessment_by_the_acts_term(fields):
    [d] = [d for d in decide(**fields) if d.purpose == "initial_assessment"]
    assert any(TERM in r for r in d.reasons) and "§ 14" in d.citation


def test_no_rule_uses_the_old_acts_term():
    for rule in RULES.rules:
        assert "alkukartoitus" not in (rule.reason + rule.citation).lower(), rule.id


# -- due dates and the 3-year window from the start of the integration period ---------------------


def test_the_due_date_counts_from_the_first_permit_and_the_trace_says_which_date_was_used():
    d = by(decide(labour_force_status="unemployed_job_seeker", arrival_date="2025-03-01", integration_start="2024-11-15"),
           "employment_authority:43", "initial_assessment")
    assert d.due == dt.date(2027, 11, 15)
    assert "assess-job-seeker: due 2027-11-15 (3 years from 2024-11-15, the first residence permit or registration)" in d.trace
    assert any("integration period from 2024-11-15, within the limit 2027-11-15" in r for r in d.reasons)


def test_without_a_first_permit_date_the_due_date_counts_from_the_arrival_and_the_trace_says_so():
    d = by(decide(labour_force_status="unemployed_job_seeker", arrival_date="2025-03-01"), "employment_authority:43", "initial_assessment")
    assert d.due == dt.date(2028, 3, 1)
    assert "assess-job-seeker: due 2028-03-01 (3 years from 2025-03-01, the arrival (no first-permit date known))" in d.trace


def test_the_three_year_window_closes_three_years_after_the_first_permit_even_if_the_move_in_was_later():
    # first permit 2022-06-01, moved in 2024: on 2025-06-15 the integration period's 3 years are over
    decisions = decide(labour_force_status="unemployed_job_seeker", arrival_date="2024-01-10", integration_start="2022-06-01")
    assert ("employment_authority:43", "initial_assessment") not in pairs(decisions)
    assert any("assess-job-seeker: not fired (integration period from 2022-06-01, past the limit 2025-06-01)" in line for line in decisions[0].trace)


def test_a_first_permit_date_alone_is_enough_for_the_window_and_the_due_date():
    d = by(decide(labour_force_status="home_parent", integration_start="2025-01-20"), "municipality:092", "initial_assessment")
    assert d.due == dt.date(2028, 1, 20)


def test_the_aftercare_due_date_is_the_23rd_birthday_and_the_trace_says_so():
    d = by(decide(birth_date="2005-01-01", arrival_date="2022-01-01", guardian_in_finland=False), "wellbeing_area:04", "unaccompanied_minor")
    assert d.due == dt.date(2028, 1, 1) and "unaccompanied-aftercare: due 2028-01-01 (the day the person turns 23)" in d.trace


# -- literacy and mental health -------------------------------------------------------------------


def test_the_service_needs_vocabulary_matches_the_service_needs_input():
    assert set(SERVICE_NEEDS) == {"health", "social", "disability", "child_welfare", "literacy", "mental_health"}


def test_mental_health_goes_to_the_wellbeing_area_with_the_other_health_needs():
    d = by(decide(service_needs=["mental_health"]), "wellbeing_area:04", "social_and_health_services")
    assert d.rule == "wellbeing-service-needs" and any("mental_health" in r for r in d.reasons)


def test_a_literacy_need_is_part_of_the_employment_authoritys_assessment_of_a_jobseeker():
    decisions = decide(service_needs=["literacy"], labour_force_status="unemployed_job_seeker", arrival_date="2025-03-01")
    assert [d.authority for d in decisions if d.purpose == "initial_assessment"] == ["employment_authority:43"]
    d = by(decisions, "employment_authority:43", "initial_assessment")
    assert d.rule == "assess-job-seeker" and any("literacy training" in r for r in d.reasons)
    assert "also by rule(s) assess-literacy-job-seeker" in d.reasons[-1]
    assert not any(a.startswith("wellbeing_area") for a, _ in pairs(decisions))  # literacy is not a social or health need


@pytest.mark.parametrize("status", ["unknown", "employed", "student", "home_parent"])
def test_a_literacy_need_of_anyone_else_is_assessed_by_the_municipality(status):
    d = by(decide(service_needs=["literacy"], labour_force_status=status, arrival_date="2025-03-01"), "municipality:092", "initial_assessment")
    assert any("literacy training" in r for r in d.reasons) and d.due == dt.date(2028, 3, 1)


# -- properties -----------------------------------------------------------------------------------

dates = st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2026, 12, 31))


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({
    "occurred_at": st.datetimes(min_value=dt.datetime(2024, 6, 1), max_value=dt.datetime(2026, 12, 31), timezones=st.just(dt.timezone.utc)),
    "municipality_code": st.sampled_from(["091", "092", "049", "478", "837"]),
    "birth_date": st.one_of(st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2024, 5, 31)), st.none()),
    "integration_start": st.one_of(dates, st.none()),
    "residence_basis": st.sampled_from(RESIDENCE_BASES),
    "labour_force_status": st.sampled_from(LABOUR_FORCE_STATUSES),
    "guardian_in_finland": st.one_of(st.booleans(), st.none()),
    "service_needs": st.lists(st.sampled_from(SERVICE_NEEDS), max_size=6),
}))
def test_at_most_one_assessment_and_a_jobseeker_is_never_assessed_by_the_municipality_where_an_employment_authority_exists(record):
    decisions = route(RoutingInput.from_record(record), RULES, REF)
    assessments = [d for d in decisions if d.purpose == "initial_assessment"]
    assert len(assessments) <= 1
    own = f"municipality:{record['municipality_code']}"
    assert (own, "outreach") in pairs(decisions)
    has_employment_authority = REF.authorities(record["municipality_code"])["employment_authority"].authority is not None
    if record["labour_force_status"] == "unemployed_job_seeker" and has_employment_authority:
        assert all(d.authority.startswith("employment_authority:") for d in assessments)
    n = RoutingInput.from_record(record)
    for d in assessments:
        if d.due is not None:
            assert d.due == add_period(n.period_start, years=3)
    if n.reference_date < dt.date(2025, 1, 1):
        assert pairs(decisions) == {(own, "outreach")}
    if record["residence_basis"] not in ("international_protection", "temporary_protection", "unknown"):
        assert not any(d.purpose == "unaccompanied_minor" for d in decisions)
