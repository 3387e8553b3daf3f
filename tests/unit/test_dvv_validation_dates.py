"""A move before the person's birth is stopped at ingest (found by the soak test: routing rejected the newcomer later,
so the dead letter held the derived Newcomer instead of DVV's original record)."""

import datetime as dt

from hub.domain.population_change import validate
from hub.routing.reference import municipality_codes
from tests.unit.test_dvv_validation import NOW, PERSON, reasons, record

MUNICIPALITIES = municipality_codes()


def test_a_move_date_before_the_birth_date_is_an_invalid_date():
    problems = validate(record(birth_date=dt.date(2026, 5, 10), move_date=dt.date(2026, 5, 4)), now=NOW, municipalities=MUNICIPALITIES)
    assert [p.reason for p in problems] == ["invalid_date"]
    assert PERSON not in problems[0].message


def test_a_move_on_the_birth_day_or_later_is_fine():
    assert reasons(record(birth_date=dt.date(2026, 5, 4), move_date=dt.date(2026, 5, 4))) == []
    assert reasons(record(birth_date=None)) == []


def test_a_date_of_moving_to_finland_in_the_future_or_before_birth_is_refused():
    future = validate(record(arrived_in_finland=NOW.date() + dt.timedelta(days=3)), now=NOW, municipalities=MUNICIPALITIES)
    assert [p.reason for p in future] == ["future_date"] and "date of moving to Finland" in future[0].message
    before_birth = validate(record(birth_date=dt.date(2026, 5, 10), move_date=None, arrived_in_finland=dt.date(2026, 5, 4)), now=NOW, municipalities=MUNICIPALITIES)
    assert [p.reason for p in before_birth] == ["invalid_date"] and PERSON not in before_birth[0].message
    assert reasons(record(arrived_in_finland=dt.date(2024, 3, 1))) == []
