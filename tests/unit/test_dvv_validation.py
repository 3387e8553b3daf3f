"""Validation of mapped PopulationChange records: reason codes, and messages without identity codes."""

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.population_change import REASONS, validate
from hub.domain.hetu import make
from hub.routing.reference import municipality_codes

MUNICIPALITIES = municipality_codes()

NOW = dt.datetime(2026, 5, 20, 12, 0, tzinfo=dt.timezone.utc)
PERSON = make(dt.date(1990, 3, 4), 911)


def record(**changes):
    base = {
        "event_id": "00000000-0000-0000-0000-000000000000",
        "occurred_at": dt.datetime(2026, 5, 11, 5, 12, tzinfo=dt.timezone.utc),
        "person_id": PERSON,
        "change_type": "immigration",
        "municipality_code": "091",
        "previous_municipality_code": None,
        "previous_country": "SY",
        "destination_country": None,
        "nationalities": ["SY"],
        "mother_tongue": "ar",
        "birth_date": dt.date(1990, 3, 4),
        "move_date": dt.date(2026, 5, 4),
        "death_date": None,
        "contact_language": None,
        "previous_person_id": None,
        "data_group": "KOTIKUNTA",
    }
    base.update(changes)
    return base


def reasons(rec):
    return [p.reason for p in validate(rec, now=NOW, municipalities=MUNICIPALITIES)]


def test_a_good_record_has_no_problems():
    assert validate(record(), now=NOW, municipalities=MUNICIPALITIES) == []


def test_special_values_pass():
    assert reasons(record(mother_tongue="98", nationalities=["XX", "FI"], municipality_code="478", previous_municipality_code="049")) == []


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"person_id": PERSON[:-1] + ("A" if PERSON[-1] != "A" else "B")}, "invalid_person_id"),
        ({"person_id": "not a code"}, "invalid_person_id"),
        ({"person_id": None}, "invalid_person_id"),
        ({"previous_person_id": "010190-123"}, "invalid_person_id"),
        ({"municipality_code": "999"}, "unknown_municipality"),
        ({"municipality_code": "91"}, "unknown_municipality"),
        ({"previous_municipality_code": "000"}, "unknown_municipality"),
        ({"move_date": dt.date(2026, 6, 1)}, "future_date"),
        ({"death_date": dt.date(2027, 1, 1)}, "future_date"),
        ({"occurred_at": NOW + dt.timedelta(hours=1)}, "future_date"),
        ({"mother_tongue": "zz"}, "invalid_language"),
        ({"mother_tongue": "ara"}, "invalid_language"),
        ({"contact_language": "F"}, "invalid_language"),
        ({"nationalities": ["999"]}, "invalid_country"),
        ({"previous_country": "ZZ"}, "invalid_country"),
        ({"destination_country": "se"}, "invalid_country"),
    ],
)
def test_each_problem_has_its_reason_code(changes, reason):
    problems = validate(record(**changes), now=NOW, municipalities=MUNICIPALITIES)
    assert [p.reason for p in problems] == [reason]
    assert reason in REASONS
    assert PERSON not in problems[0].message and len(problems[0].message) > 20


def test_small_clock_skew_is_tolerated():
    assert reasons(record(occurred_at=NOW + dt.timedelta(minutes=1))) == []


def test_several_problems_are_all_reported():
    assert sorted(reasons(record(municipality_code="999", mother_tongue="zz"))) == ["invalid_language", "unknown_municipality"]


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2025, 12, 31)), st.integers(900, 999), st.integers(0, 10), st.sampled_from("0123456789ABCDEFHJKLMNPRSTUVWXY-+"))
def test_message_never_contains_the_identity_code(born, serial, pos, char):
    code = make(born, serial)
    broken = code[:pos] + char + code[pos + 1 :]
    for rec in (record(person_id=broken), record(person_id=code, previous_person_id=broken), record(person_id=broken, municipality_code=broken, mother_tongue=broken, nationalities=[broken])):
        for problem in validate(rec, now=NOW, municipalities=MUNICIPALITIES):
            assert code not in problem.message and broken not in problem.message
