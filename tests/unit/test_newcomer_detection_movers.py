"""Movers who arrived before the hub saw them, and the register snapshot's residents (pure detection)."""

import datetime as dt

from hub.domain import hetu
from hub.newcomers.detection import Change, PersonState, detect, newcomer_record

NOW = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.timezone.utc)
PID = hetu.make(dt.date(1990, 5, 17), 901)


def move(n=1, **kw):
    """A move 091 -> 049 of a Syrian national the hub has never seen (the DVV mapping of a muutos
    with KOTIKUNTA + EDELLINEN_KOTIKUNTA)."""
    base = dict(event_id=f"m{n}", person_id=PID, change_type="move_in", occurred_at=NOW, municipality_code="049",
                previous_municipality_code="091", nationalities=("SY",), mother_tongue="ar", move_date=dt.date(2025, 2, 20))
    base.update(kw)
    return Change(**base)


def resident(n=1, **kw):
    """A row of a register snapshot taken on NOW."""
    base = dict(event_id=f"r{n}", person_id=PID, change_type="resident", occurred_at=NOW, municipality_code="091",
                nationalities=("UA",), mother_tongue="uk", move_date=dt.date(2023, 6, 1))
    base.update(kw)
    return Change(**base)


# -- a first-seen mover ----------------------------------------------------------------------------
def test_first_seen_mover_inside_the_period_is_a_newcomer_of_the_new_municipality():
    state, out = detect(None, move(arrived_in_finland=dt.date(2024, 3, 1)))
    assert [(e.change, e.state.municipality_code, e.previous_municipality_code) for e in out] == [("arrived", "049", "091")]
    assert out[0].reasons[0] == "first seen on a move from 091 to 049; in Finland since 2024-03-01, inside the integration period"
    # the period counts from the arrival in Finland, not from the move into 049
    assert state.newcomer and state.arrival_date == dt.date(2024, 3, 1) and out[0].state.arrival_date == dt.date(2024, 3, 1)
    assert newcomer_record(out[0], "k", NOW)["arrival_date"] == dt.date(2024, 3, 1)


def test_first_seen_mover_outside_the_period_is_not_a_newcomer():
    arrived = NOW.date() - dt.timedelta(days=1096)
    state, out = detect(None, move(arrived_in_finland=arrived))
    assert out == [] and not state.newcomer and state.municipality_code == "049"
    _, out = detect(None, move(arrived_in_finland=arrived + dt.timedelta(days=1)))  # exactly 1095 days: still inside
    assert len(out) == 1


def test_first_seen_mover_with_unknown_arrival_is_not_guessed_inside():
    state, out = detect(None, move())  # the move-in date (2025-02-20) is recent, but says nothing of the arrival in Finland
    assert out == [] and not state.newcomer and state.municipality_code == "049"
    # a later move that does carry the date detects them then, in the municipality they live in now
    state, out = detect(state, move(2, municipality_code="837", previous_municipality_code="049", arrived_in_finland=dt.date(2024, 3, 1)))
    assert [(e.change, e.state.municipality_code) for e in out] == [("arrived", "837")]
    assert out[0].reasons[0].startswith("not a newcomer before (no date of moving to Finland), seen on a move from 049 to 837; in Finland since 2024-03-01")


def test_finnish_citizen_mover_is_never_a_newcomer():
    _, out = detect(None, move(nationalities=("FI",), mother_tongue="fi", arrived_in_finland=dt.date(2024, 3, 1)))
    assert out == []
    _, out = detect(None, move(nationalities=("FI", "SY"), arrived_in_finland=dt.date(2024, 3, 1)))
    assert out == []


def test_domestic_mover_with_a_date_of_moving_to_finland_is_not_a_newcomer():
    """A returning emigrant of unknown nationality with Finnish as mother tongue: not foreign."""
    _, out = detect(None, move(nationalities=(), mother_tongue="fi", arrived_in_finland=dt.date(2024, 3, 1)))
    assert out == []


def test_duplicate_mover_change_and_later_moves_make_no_second_arrival():
    state, first = detect(None, move(arrived_in_finland=dt.date(2024, 3, 1)))
    again, out = detect(state, move(arrived_in_finland=dt.date(2024, 3, 1)))
    assert len(first) == 1 and out == [] and again == state
    _, out = detect(state, move(2, municipality_code="837", previous_municipality_code="049", arrived_in_finland=dt.date(2024, 3, 1)))
    assert [e.change for e in out] == ["moved"]


def test_the_change_record_carries_the_date_of_moving_to_finland():
    record = {"event_id": "e", "person_id": PID, "change_type": "move_in", "occurred_at": NOW, "arrived_in_finland": dt.date(2024, 3, 1)}
    assert Change.from_record(record).arrived_in_finland == dt.date(2024, 3, 1)
    assert Change.from_record({**record, "arrived_in_finland": None}).arrived_in_finland is None


# -- the register snapshot (go-live backfill) -----------------------------------------------------------
def test_resident_inside_the_period_by_the_date_of_moving_to_finland_is_detected_once():
    state, out = detect(None, resident(previous_municipality_code="049", arrived_in_finland=dt.date(2023, 1, 10)))
    assert [(e.change, e.state.municipality_code) for e in out] == [("arrived", "091")]
    assert out[0].reasons[0] == "resident of 091 in the register snapshot of 2025-03-01; in Finland since 2023-01-10, inside the integration period"
    assert state.arrival_date == dt.date(2023, 1, 10)
    # the same row again (a re-run) and a later snapshot: nothing new
    assert detect(state, resident(previous_municipality_code="049", arrived_in_finland=dt.date(2023, 1, 10)))[1] == []
    later = resident(2, occurred_at=NOW + dt.timedelta(days=30), municipality_code="049", arrived_in_finland=dt.date(2023, 1, 10))
    state2, out = detect(state, later)
    assert out == [] and state2.municipality_code == "091"  # a snapshot never re-addresses: the change feed is newer


def test_resident_whose_first_home_municipality_is_recent_is_detected_without_a_date_of_moving_to_finland():
    _, out = detect(None, resident())  # no earlier home municipality named: the first one began 2023-06-01
    assert len(out) == 1 and "the first the register names (no date of moving to Finland)" in out[0].reasons[0]


def test_resident_outside_the_period_or_with_unknown_arrival_is_not_detected():
    assert detect(None, resident(arrived_in_finland=dt.date(2015, 1, 1)))[1] == []
    assert detect(None, resident(move_date=dt.date(2020, 1, 1)))[1] == []
    # an earlier home municipality and no date of moving to Finland: when they came is unknown
    state, out = detect(None, resident(previous_municipality_code="049"))
    assert out == [] and not state.newcomer and state.municipality_code == "091"
    assert detect(None, resident(move_date=None))[1] == []


def test_resident_finnish_citizen_deceased_or_without_municipality_is_not_detected():
    assert detect(None, resident(nationalities=("FI",), mother_tongue="fi", arrived_in_finland=dt.date(2024, 1, 1)))[1] == []
    assert detect(None, resident(municipality_code=None, arrived_in_finland=dt.date(2024, 1, 1)))[1] == []
    dead = PersonState(person_id=PID, deceased=True)
    assert detect(dead, resident(arrived_in_finland=dt.date(2024, 1, 1)))[1] == []


def test_resident_already_detected_by_the_change_feed_is_not_detected_again():
    state, first = detect(None, move(arrived_in_finland=dt.date(2024, 3, 1)))
    state, out = detect(state, resident(municipality_code="091", arrived_in_finland=dt.date(2024, 3, 1)))
    assert len(first) == 1 and out == [] and state.municipality_code == "049"


def test_resident_seen_by_the_feed_without_a_date_keeps_the_feeds_municipality_and_is_detected_by_the_snapshots_date():
    state, _ = detect(None, move())  # first seen on a move without a date: not detected
    state, out = detect(state, resident(municipality_code="091", previous_municipality_code="837", arrived_in_finland=dt.date(2024, 3, 1)))
    assert [(e.change, e.state.municipality_code) for e in out] == [("arrived", "049")]
