"""The pure route(): every rule, and the edges (17/18, 22/23, the 3-year limit, unknowns,
Helsinki, Åland, unknown municipality, turvakielto)."""

import datetime as dt

import pytest

from hub.routing.engine import add_period, age_on, route
from hub.routing.model import InputError, RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules, parse_rules

REF = default_reference()
RULES = default_rules()
DAY = "2025-06-15"


def newcomer(**fields):
    base = {"event_id": "e-1", "person_key": "pk-1", "occurred_at": f"{DAY}T09:00:00Z", "municipality_code": "092"}
    base.update(fields)
    return RoutingInput.from_record(base)


def decide(**fields):
    return route(newcomer(**fields), RULES, REF)


def pairs(decisions):
    return {(d.authority, d.purpose) for d in decisions}


def by(decisions, authority, purpose):
    [d] = [d for d in decisions if (d.authority, d.purpose) == (authority, purpose)]
    return d


def born_years_before(years, days=0):
    return (add_period(dt.date.fromisoformat(DAY), years=-years) + dt.timedelta(days=days)).isoformat()


# -- outreach -----------------------------------------------------------------------------------


def test_everyone_gets_outreach_from_the_municipality_even_with_everything_unknown():
    decisions = decide()
    assert pairs(decisions) == {("municipality:092", "outreach")}
    d = decisions[0]
    assert d.rule == "outreach-municipality" and d.rules_version == "2025.1" and d.due is None
    assert d.reasons and "681/2023" in d.citation
    assert d.reasons[-1] == "mother tongue unknown: ask the person's language at first contact and arrange an interpreter"


@pytest.mark.parametrize(
    "fields, expected",
    [({"contact_language": "SV", "mother_tongue": "ar"}, "address the person in sv (contact language)"), ({"mother_tongue": "ar"}, "address the person in ar (mother tongue")],
)
def test_outreach_says_which_language_to_use(fields, expected):
    d = by(decide(**fields), "municipality:092", "outreach")
    assert any(r.startswith(expected) for r in d.reasons)


# -- initial assessment -------------------------------------------------------------------------


def test_registered_job_seeker_goes_to_the_employment_authority_with_the_three_year_limit():
    decisions = decide(labour_force_status="unemployed_job_seeker", arrival_date="2025-02-01")
    d = by(decisions, "employment_authority:43", "initial_assessment")
    assert d.rule == "assess-job-seeker" and d.due == dt.date(2028, 2, 1)
    assert ("municipality:092", "initial_assessment") not in pairs(decisions)


@pytest.mark.parametrize("status", ["home_parent", "retired", "outside_labour_force"])
def test_outside_the_labour_force_goes_to_the_municipality(status):
    d = by(decide(labour_force_status=status, arrival_date="2025-02-01"), "municipality:092", "initial_assessment")
    assert d.rule == "assess-outside-labour-force" and d.due == dt.date(2028, 2, 1)


@pytest.mark.parametrize("status", ["employed", "student", "unknown", None])
def test_no_assessment_referral_for_employed_students_or_unknown_status(status):
    assert pairs(decide(labour_force_status=status)) == {("municipality:092", "outreach")}


def test_arrival_exactly_at_the_three_year_limit_is_still_inside_and_a_day_later_is_not():
    limit_day = dt.date.fromisoformat(DAY)
    at_limit = add_period(limit_day, years=-3).isoformat()
    inside = decide(labour_force_status="unemployed_job_seeker", arrival_date=at_limit)
    assert by(inside, "employment_authority:43", "initial_assessment").due == limit_day
    late = (dt.date.fromisoformat(at_limit) - dt.timedelta(days=1)).isoformat()
    outside = route(newcomer(labour_force_status="unemployed_job_seeker", arrival_date=late), RULES, REF)
    assert pairs(outside) == {("municipality:092", "outreach")}
    assert any("assess-job-seeker: not fired" in line and "past the limit" in line for line in outside[0].trace)


def test_unknown_arrival_counts_as_inside_the_window_without_a_due_date():
    d = by(decide(labour_force_status="unemployed_job_seeker"), "employment_authority:43", "initial_assessment")
    assert d.due is None
    assert any("arrival unknown" in r and "counted as met" in r for r in d.reasons)


def test_protection_beneficiary_not_seeking_work_is_assessed_by_the_municipality_and_gets_special_services():
    decisions = decide(residence_basis="international_protection", labour_force_status="unknown")
    assert by(decisions, "municipality:092", "initial_assessment").rule == "assess-protection-beneficiary"
    assert by(decisions, "municipality:092", "special_services").rule == "protection-special-services"


def test_protection_beneficiary_who_seeks_work_is_assessed_by_the_employment_authority_only():
    decisions = decide(residence_basis="international_protection", labour_force_status="unemployed_job_seeker")
    assert ("employment_authority:43", "initial_assessment") in pairs(decisions)
    assert ("municipality:092", "initial_assessment") not in pairs(decisions)
    assert ("municipality:092", "special_services") in pairs(decisions)


@pytest.mark.parametrize("basis", ["international_protection", "temporary_protection"])
def test_temporary_protection_is_treated_as_international_protection_in_every_protection_rule(basis):
    # § 2(3)-(4): temporary protection with a municipality of residence is in the same group
    decisions = decide(residence_basis=basis)
    assert pairs(decisions) == {("municipality:092", "outreach"), ("municipality:092", "initial_assessment"), ("municipality:092", "special_services")}
    assert by(decisions, "municipality:092", "initial_assessment").rule == "assess-protection-beneficiary"
    minor = decide(residence_basis=basis, birth_date=born_years_before(15), guardian_in_finland=False)
    assert by(minor, "wellbeing_area:04", "unaccompanied_minor").rule == "unaccompanied-minor"
    for rule in RULES.rules:  # every rule naming international protection names temporary protection too
        text = str(rule.when)
        assert ("international_protection" in text) == ("temporary_protection" in text), rule.id


@pytest.mark.parametrize("basis", ["work", "study", "family", "eu_citizen", "returnee", "other", "unknown"])
def test_other_residence_bases_get_no_special_services(basis):
    assert ("municipality:092", "special_services") not in pairs(decide(residence_basis=basis))


# -- wellbeing area -----------------------------------------------------------------------------


@pytest.mark.parametrize("need", ["health", "mental_health", "social", "disability", "child_welfare"])
def test_each_service_need_goes_to_the_wellbeing_area(need):
    d = by(decide(service_needs=[need]), "wellbeing_area:04", "social_and_health_services")
    assert d.rule == "wellbeing-service-needs" and d.due is None


def test_no_service_needs_no_wellbeing_referral():
    assert not any(d.authority.startswith("wellbeing_area") for d in decide(service_needs=[]))


def test_age_17_without_guardian_is_an_unaccompanied_minor():
    decisions = decide(birth_date=born_years_before(18, days=1), guardian_in_finland=False)  # turns 18 tomorrow
    assert by(decisions, "wellbeing_area:04", "unaccompanied_minor").rule == "unaccompanied-minor"
    assert by(decisions, "municipality:092", "initial_assessment").rule == "assess-unaccompanied-minor"


def test_on_the_18th_birthday_no_longer_a_minor_but_aftercare_if_arrived_as_a_minor():
    birth = born_years_before(18)
    adult = decide(birth_date=birth, guardian_in_finland=False)
    assert ("municipality:092", "initial_assessment") not in pairs(adult)
    assert not any(d.purpose == "unaccompanied_minor" for d in adult)  # arrival unknown: aftercare undecided
    arrived_as_minor = decide(birth_date=birth, guardian_in_finland=False, arrival_date="2024-01-01")
    d = by(arrived_as_minor, "wellbeing_area:04", "unaccompanied_minor")
    assert d.rule == "unaccompanied-aftercare"
    assert d.due == add_period(dt.date.fromisoformat(birth), years=23)
    # arrived as an unaccompanied minor, within 3 years: the municipality assesses (§ 14)
    assert by(arrived_as_minor, "municipality:092", "initial_assessment").rule == "assess-unaccompanied-minor"


def test_aftercare_ends_at_23():
    arrival = add_period(dt.date.fromisoformat(DAY), years=-6).isoformat()
    at_22 = decide(birth_date=born_years_before(23, days=1), guardian_in_finland=False, arrival_date=arrival)
    assert ("wellbeing_area:04", "unaccompanied_minor") in pairs(at_22)
    at_23 = decide(birth_date=born_years_before(23), guardian_in_finland=False, arrival_date=arrival)
    assert ("wellbeing_area:04", "unaccompanied_minor") not in pairs(at_23)


def test_arrived_as_adult_gets_no_aftercare():
    birth = born_years_before(20)
    arrival = add_period(dt.date.fromisoformat(birth), years=18).isoformat()  # arrived on the 18th birthday
    assert ("wellbeing_area:04", "unaccompanied_minor") not in pairs(decide(birth_date=birth, guardian_in_finland=False, arrival_date=arrival))


@pytest.mark.parametrize("guardian", [True, None])
def test_minor_with_a_guardian_or_unknown_guardian_is_not_unaccompanied(guardian):
    decisions = decide(birth_date=born_years_before(10), guardian_in_finland=guardian)
    assert not any(d.purpose == "unaccompanied_minor" for d in decisions)
    if guardian is None:
        assert any("unaccompanied-minor: not fired (guardian in Finland unknown" in line for line in decisions[0].trace)


def test_unknown_birth_date_makes_age_rules_undecided_and_they_do_not_fire():
    decisions = decide(guardian_in_finland=False)
    assert pairs(decisions) == {("municipality:092", "outreach")}
    assert any("age unknown (no birth date)" in line for line in decisions[0].trace)


def test_birth_date_comes_from_the_identity_code_when_missing():
    from hub.domain.hetu import make

    minor = make(dt.date(2010, 5, 5), 950)
    decisions = decide(person_id=minor, guardian_in_finland=False)
    assert ("wellbeing_area:04", "unaccompanied_minor") in pairs(decisions)
    assert not any(minor in line for d in decisions for line in (*d.reasons, *d.trace))


def test_age_is_counted_on_the_finnish_day_of_occurred_at():
    # 23:30 UTC on 14 June is 02:30 on 15 June in Finland: the 18th birthday
    n = newcomer(occurred_at="2025-06-14T23:30:00Z", birth_date="2007-06-15", guardian_in_finland=False)
    assert n.reference_date == dt.date(2025, 6, 15)
    assert not any(d.purpose == "unaccompanied_minor" for d in route(n, RULES, REF))


# -- Helsinki, Åland, unknown municipality ------------------------------------------------------


def test_helsinki_gets_the_wellbeing_role_itself():
    decisions = decide(municipality_code="091", service_needs=["health"], labour_force_status="unemployed_job_seeker")
    d = by(decisions, "municipality:091", "social_and_health_services")
    assert any("itself" in r for r in d.reasons)
    assert ("employment_authority:08", "initial_assessment") in pairs(decisions)


def test_aland_roles_without_an_authority_fall_back_to_the_municipality_with_the_reason():
    decisions = decide(municipality_code="478", service_needs=["social"], labour_force_status="unemployed_job_seeker")
    assert pairs(decisions) == {
        ("municipality:478", "outreach"),
        ("municipality:478", "social_and_health_services"),
        ("municipality:478", "initial_assessment"),
    }
    for purpose in ("social_and_health_services", "initial_assessment"):
        assert any("Åland" in r for r in by(decisions, "municipality:478", purpose).reasons)


def test_aland_with_fallback_none_drops_the_role_and_says_so_in_the_trace():
    import yaml

    from hub.routing.rules import DEFAULT_RULES

    raw = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    raw["unrouted_roles"] = {"fallback": "none"}
    decisions = route(newcomer(municipality_code="478", service_needs=["social"]), parse_rules(raw), REF)
    assert pairs(decisions) == {("municipality:478", "outreach")}
    assert any("fired but dropped: no wellbeing_area" in line for line in decisions[0].trace)


@pytest.mark.parametrize("code, error", [("999", "unknown_municipality"), ("588", "unknown_municipality"), (None, "missing_municipality")])
def test_unknown_or_missing_municipality_is_an_input_error(code, error):
    with pytest.raises(InputError) as info:
        decide(municipality_code=code)
    assert info.value.reason == error


# -- the decision as a whole ------------------------------------------------------------------


def test_rules_for_the_same_recipient_and_purpose_make_one_decision():
    decisions = decide(residence_basis="international_protection", labour_force_status="home_parent", birth_date=born_years_before(30))
    d = by(decisions, "municipality:092", "initial_assessment")
    assert d.rule == "assess-outside-labour-force"
    assert any("also by rule(s) assess-protection-beneficiary" in r for r in d.reasons)
    assert len(decisions) == len(pairs(decisions))


def test_route_is_deterministic_and_traces_every_rule():
    a = decide(residence_basis="international_protection", service_needs=["health"])
    b = decide(residence_basis="international_protection", service_needs=["health"])
    assert a == b
    for rule in RULES.rules:
        assert any(line.startswith(f"{rule.id}:") for line in a[0].trace)


def test_turvakielto_keeps_the_municipality_out_of_other_recipients_reasons():
    decisions = decide(turvakielto=True, service_needs=["health"], labour_force_status="unemployed_job_seeker")
    for d in decisions:
        if not d.authority.startswith("municipality:"):
            assert not any("Vantaa" in r for r in d.reasons)
            assert any("turvakielto" in r for r in d.reasons)


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"residence_basis": "tourist"}, "invalid_field"),
        ({"labour_force_status": 3}, "invalid_field"),
        ({"service_needs": ["housing"]}, "invalid_field"),
        ({"guardian_in_finland": "yes"}, "invalid_field"),
        ({"municipality_code": "91"}, "invalid_field"),
        ({"birth_date": "2025-02-30"}, "invalid_date"),
        ({"arrival_date": "yesterday"}, "invalid_date"),
        ({"occurred_at": "2025-06-15T09:00:00"}, "invalid_date"),
        ({"birth_date": "2030-01-01"}, "invalid_field"),
        ({"arrival_date": "2026-01-01"}, "invalid_field"),
        ({"birth_date": "2000-01-01", "arrival_date": "1999-01-01"}, "invalid_field"),
        ({"person_id": "010101-1234"}, "invalid_person_id"),
    ],
)
def test_bad_fields_are_input_errors_that_never_quote_the_identity_code(fields, code):
    with pytest.raises(InputError) as info:
        decide(**fields)
    assert info.value.reason == code
    assert "010101" not in info.value.message


def test_missing_occurred_at_leaves_ages_and_limits_unknown():
    n = RoutingInput.from_record({"municipality_code": "092", "birth_date": "2010-01-01", "guardian_in_finland": False})
    assert n.reference_date is None
    assert pairs(route(n, RULES, REF)) == {("municipality:092", "outreach")}


def test_avro_record_dicts_are_accepted():
    import uuid

    n = RoutingInput.from_record(
        {"event_id": uuid.uuid4(), "occurred_at": dt.datetime(2025, 6, 15, 9, tzinfo=dt.timezone.utc), "municipality_code": "092", "birth_date": dt.date(2010, 1, 1), "arrival_date": dt.date(2025, 1, 1), "guardian_in_finland": False, "service_needs": []}
    )
    assert ("wellbeing_area:04", "unaccompanied_minor") in pairs(route(n, RULES, REF))


def test_age_and_period_arithmetic_on_leap_days():
    assert age_on(dt.date(2008, 2, 29), dt.date(2026, 2, 28)) == 17
    assert age_on(dt.date(2008, 2, 29), dt.date(2026, 3, 1)) == 18
    assert add_period(dt.date(2024, 2, 29), years=3) == dt.date(2027, 2, 28)
    assert add_period(dt.date(2024, 1, 1), days=10) == dt.date(2024, 1, 11)
