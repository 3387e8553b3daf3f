"""Newcomer detection rules (pure)."""

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain import hetu
from hub.newcomers.detection import Change, PersonState, decode_state, detect, encode_state, merge_identity, newcomer_record, residence_basis

NOW = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.timezone.utc)
PID = hetu.make(dt.date(1990, 5, 17), 901)


def change(n=1, **kw):
    base = dict(event_id=f"e{n}", person_id=PID, change_type="immigration", occurred_at=NOW, municipality_code="091",
                previous_country="SY", nationalities=("SY",), mother_tongue="ar", move_date=dt.date(2025, 2, 20))
    base.update(kw)
    return Change(**base)


def test_arrival_from_abroad_with_a_municipality_is_a_newcomer():
    state, out = detect(None, change())
    assert [e.change for e in out] == ["arrived"]
    assert state.newcomer and state.municipality_code == "091" and state.arrival_date == dt.date(2025, 2, 20)
    assert "arrived from abroad (SY)" in out[0].reasons[0]


def test_duplicate_and_replay_emit_nothing_new():
    state, _ = detect(None, change())
    state2, out = detect(state, change())
    assert out == [] and state2 == state


def test_move_between_municipalities_readdresses_not_a_new_newcomer():
    state, _ = detect(None, change())
    state, out = detect(state, change(2, change_type="move_in", municipality_code="049", previous_municipality_code="091", previous_country=None))
    assert [(e.change, e.previous_municipality_code, e.state.municipality_code) for e in out] == [("moved", "091", "049")]
    _, again = detect(state, change(3, change_type="move_in", municipality_code="049", previous_country=None))
    assert again == []


def test_foreign_national_first_municipality_without_previous_country():
    _, out = detect(None, change(change_type="move_in", previous_country=None, nationalities=("UA",), mother_tongue="uk"))
    assert [e.change for e in out] == ["arrived"]


def test_foreign_mother_tongue_alone_is_enough():
    _, out = detect(None, change(change_type="move_in", previous_country=None, nationalities=(), mother_tongue="so"))
    assert len(out) == 1


def test_finnish_citizen_is_never_a_newcomer():
    _, out = detect(None, change(nationalities=("FI",), mother_tongue="fi"))
    assert out == []
    _, out = detect(None, change(nationalities=("FI", "SE")))
    assert out == []


def test_domestic_person_moving_is_not_a_newcomer():
    _, out = detect(None, change(change_type="move_in", previous_country=None, nationalities=(), mother_tongue="sv"))
    assert out == []


def test_long_time_resident_moving_within_finland_is_not_a_newcomer():
    _, out = detect(None, change(change_type="move_in", previous_country=None, previous_municipality_code="837"))
    assert out == []


def test_the_three_year_window_boundary():
    arrival = NOW.date() - dt.timedelta(days=1095)
    _, out = detect(None, change(move_date=arrival))
    assert len(out) == 1  # exactly at the limit: still covered
    _, out = detect(None, change(move_date=arrival - dt.timedelta(days=1)))
    assert out == []


def test_death_and_emigration():
    state, _ = detect(None, change(1, change_type="death", municipality_code=None))
    assert state.deceased
    _, out = detect(state, change(2))
    assert out == []
    state, _ = detect(None, change(3, change_type="emigration", municipality_code=None))
    state, out = detect(state, change(4, change_type="move_in", previous_country=None))
    assert [e.change for e in out] == ["arrived"] and state.arrived_from_abroad


def test_non_disclosure_marks_and_clears():
    state, _ = detect(None, change(1, change_type="non_disclosure", municipality_code=None, turvakielto=True))
    state, out = detect(state, change(2))
    assert out[0].state.turvakielto
    state, _ = detect(state, change(3, change_type="non_disclosure", municipality_code=None, turvakielto=False))
    assert not state.turvakielto


def test_identity_correction_merges_state():
    old, _ = detect(None, change())
    new_id = hetu.make(dt.date(1990, 5, 17), 902)
    merged = merge_identity(old, None, new_id)
    assert merged.person_id == new_id and merged.newcomer
    _, out = detect(merged, change(9, person_id=new_id, change_type="identity_correction", municipality_code=None, previous_person_id=PID))
    assert out == []  # the same person: no second newcomer
    both = merge_identity(old, PersonState(person_id=new_id, seen=("x",)), new_id)
    assert both.newcomer and "x" in both.seen and "e1" in both.seen


def test_state_json_round_trip():
    state, _ = detect(None, change())
    assert PersonState.from_json(state.to_json()) == state


def test_residence_basis_from_nationality():
    assert residence_basis(("SE",)) == "eu_citizen"
    assert residence_basis(("SY",)) == "unknown" and residence_basis(()) == "unknown"


def test_newcomer_record_is_valid_avro_and_deterministic():
    from hub.schemas.codec import default_codec

    _, out = detect(None, change())
    rec = newcomer_record(out[0], "k" * 32, NOW)
    assert rec["event_id"] == newcomer_record(out[0], "k" * 32, NOW)["event_id"]
    default_codec().encode("Newcomer", rec)


_states = st.builds(
    PersonState,
    person_id=st.just(PID),
    municipality_code=st.none() | st.sampled_from(["091", "049", "005"]),
    arrived_from_abroad=st.booleans(),
    arrival_date=st.none() | st.dates(),
    birth_date=st.none() | st.dates(),
    mother_tongue=st.none() | st.sampled_from(["ar", "fi", ""]),
    contact_language=st.none() | st.sampled_from(["en", "sv"]),
    nationalities=st.lists(st.sampled_from(["SY", "SE", "UA"]), max_size=3).map(tuple),
    guardian_in_finland=st.none() | st.booleans(),
    turvakielto=st.booleans(),
    newcomer=st.booleans(),
    newcomer_event_id=st.none() | st.uuids().map(str),
    deceased=st.booleans(),
    emigrated=st.booleans(),
    seen=st.lists(st.uuids().map(str), max_size=5).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(_states)
def test_the_stored_state_reads_back_the_same_in_both_forms(state):
    """encode_state drops fields at their defaults: a False must not come back as None (a guardian
    not in Finland is an unaccompanied minor), and a dict stored by an earlier version still reads."""
    assert decode_state(encode_state(state), state.person_id) == state
    assert decode_state(state.to_json()) == state
    assert len(encode_state(state)) <= len(json.dumps(state.to_json()))


@settings(max_examples=300, deadline=None)
@given(_states)
def test_the_stored_state_is_to_json_without_its_defaults(state):
    """encode_state builds its JSON straight from the fields (faster); it must say exactly what the
    reference form says: to_json() minus the identity code and the fields at their defaults, in the same order."""
    from dataclasses import MISSING, fields

    defaults = {f.name: (list(f.default) if isinstance(f.default, tuple) else f.default) for f in fields(PersonState) if f.default is not MISSING}

    def is_default(name, value):  # False is not None: guardian_in_finland
        return name in defaults and type(value) is type(defaults[name]) and value == defaults[name]

    reference = json.dumps({k: v for k, v in state.to_json().items() if k != "person_id" and not is_default(k, v)}, separators=(",", ":"),
                           ensure_ascii=False)
    assert encode_state(state) == reference


@settings(max_examples=300, deadline=None)
@given(_states, st.sampled_from(["immigration", "move_in", "death", "emigration", "move_out", "non_disclosure"]))
def test_detect_never_changes_the_state_it_was_given(state, change_type):
    """States are values: detect returns a new one (the fast copy must not share or edit the old)."""
    before = PersonState.from_json(state.to_json())
    c = Change(event_id="e-1", person_id=PID, change_type=change_type, occurred_at=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc),
               municipality_code="091" if change_type in ("immigration", "move_in") else None, nationalities=("SY",))
    after, _ = detect(state, c)
    assert state == before
    assert "e-1" in after.seen and after is not state


def test_change_from_record_sets_every_field_as_the_constructor_would():
    """from_record fills the frozen dataclass without its __init__ (speed): no field may be left out."""
    from dataclasses import fields

    record = {"event_id": "e-7", "person_id": PID, "change_type": "immigration", "occurred_at": dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc),
              "municipality_code": "091", "previous_country": "SY", "nationalities": ["SY"], "mother_tongue": "ar", "turvakielto": None}
    c = Change.from_record(record)
    assert set(vars(c)) == {f.name for f in fields(Change)}
    assert c == Change(event_id="e-7", person_id=PID, change_type="immigration", occurred_at=record["occurred_at"], municipality_code="091",
                       previous_country="SY", nationalities=("SY",), mother_tongue="ar", turvakielto=False)


def test_a_stored_state_with_an_unknown_or_missing_field_is_refused():
    import pytest

    with pytest.raises(TypeError):
        PersonState.from_json({"person_id": PID, "from_a_newer_version": 1})
    with pytest.raises(TypeError):
        PersonState.from_json({"municipality_code": "091"})
    state = PersonState.from_json({"person_id": PID})
    assert state == PersonState(person_id=PID) and vars(state).keys() == vars(PersonState(person_id=PID)).keys()


@settings(max_examples=200, deadline=None)
@given(_states)
def test_the_stored_state_holds_no_identity_code(state):
    """A state row is keyed by the person key: its text must not give the identity code back (nor
    its digits); the change being applied brings the code."""
    stored = encode_state(state)
    assert state.person_id not in stored
    assert "person_id" not in json.loads(stored)
    digits = "".join(ch for ch in state.person_id if ch.isdigit())
    assert digits not in stored.replace("-", "")
    assert decode_state(stored, "131052-308T").person_id == "131052-308T"


def _record(event_id, person_id, change_type, **kw):
    rec = {"event_id": event_id, "person_id": person_id, "change_type": change_type, "occurred_at": NOW}
    rec.update(kw)
    return rec


def test_an_identity_code_correction_of_a_newcomer_is_a_circumstances_update_naming_the_old_key():
    from hub.newcomers.detection import person_keys, step
    from hub.schemas.codec import default_codec

    secret = "s" * 32
    states: dict = {}
    arrival = _record("e1", PID, "immigration", municipality_code="091", previous_country="SY", nationalities=["SY"], mother_tongue="ar")
    first = step(arrival, states.get, secret)
    states[first.key] = first.state
    new_id = hetu.make(dt.date(1990, 5, 17), 902)
    correction = _record("e2", new_id, "identity_correction", previous_person_id=PID)
    done = step(correction, states.get, secret)
    new_key, old_key = person_keys(correction, secret)
    assert (done.key, done.old_key) == (new_key, first.key) and old_key == first.key
    [ev] = done.found
    assert (ev.change, ev.previous_person_key, ev.state.municipality_code, ev.state.person_id) == ("circumstances", first.key, "091", new_id)
    rec = newcomer_record(ev, done.key, NOW)
    assert rec["previous_person_key"] == first.key and rec["person_key"] == new_key
    assert default_codec().decode(default_codec().encode("Newcomer", rec)).record["previous_person_key"] == first.key
    # the same correction again (the old key's state already gone) names nothing new
    states[done.key] = done.state
    states.pop(first.key)
    assert step(correction, states.get, secret).found == []


def test_an_identity_code_correction_of_a_person_who_is_no_newcomer_routes_nothing():
    from hub.newcomers.detection import step

    secret = "s" * 32
    states: dict = {}
    finn = _record("e1", PID, "move_in", municipality_code="091", nationalities=["FI"], mother_tongue="fi")
    first = step(finn, states.get, secret)
    states[first.key] = first.state
    correction = _record("e2", hetu.make(dt.date(1990, 5, 17), 902), "identity_correction", previous_person_id=PID)
    assert step(correction, states.get, secret).found == []
