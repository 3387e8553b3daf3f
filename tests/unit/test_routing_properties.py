"""Properties of route() over arbitrary newcomers: it decides or refuses, never crashes; the
municipality always gets outreach; every decision is well formed."""

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.routing.engine import route
from hub.routing.model import LABOUR_FORCE_STATUSES, PURPOSES, RESIDENCE_BASES, SERVICE_NEEDS, InputError, RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules

REF = default_reference()
CODES = sorted(REF.municipalities)
dates = st.dates(min_value=dt.date(1920, 1, 1), max_value=dt.date(2026, 12, 31))

newcomers = st.fixed_dictionaries(
    {},
    optional={
        "occurred_at": st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2026, 12, 31), timezones=st.just(dt.timezone.utc)),
        "municipality_code": st.one_of(st.sampled_from(CODES), st.sampled_from(["999", "588"]), st.none()),
        "birth_date": st.one_of(dates, st.none()),
        "arrival_date": st.one_of(dates, st.none()),
        "integration_start": st.one_of(dates, st.none()),
        "residence_basis": st.one_of(st.sampled_from(RESIDENCE_BASES), st.none()),
        "labour_force_status": st.one_of(st.sampled_from(LABOUR_FORCE_STATUSES), st.none()),
        "guardian_in_finland": st.one_of(st.booleans(), st.none()),
        "service_needs": st.lists(st.sampled_from(SERVICE_NEEDS), max_size=4),
        "turvakielto": st.booleans(),
    },
)


@settings(max_examples=300, deadline=None)
@given(newcomers)
def test_route_decides_or_refuses_and_decisions_are_well_formed(record):
    try:
        decisions = route(RoutingInput.from_record(record), default_rules(), REF)
    except InputError as exc:
        assert exc.reason in ("invalid_field", "invalid_date", "missing_municipality", "unknown_municipality")
        return
    own = f"municipality:{record['municipality_code']}"
    assert (own, "outreach") in {(d.authority, d.purpose) for d in decisions}
    assert len({(d.authority, d.purpose) for d in decisions}) == len(decisions)
    for d in decisions:
        assert d.purpose in PURPOSES and d.reasons and d.rule and d.rules_version == "2025.1"
        kind, code = d.authority.split(":")
        assert kind in ("municipality", "wellbeing_area", "employment_authority")
        if kind == "municipality":
            assert d.authority == own  # never another municipality
        start = record.get("integration_start") or record.get("arrival_date")  # the integration period's start
        if d.due is not None and start and d.purpose == "initial_assessment":
            assert d.due > start
