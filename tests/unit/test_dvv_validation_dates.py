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
