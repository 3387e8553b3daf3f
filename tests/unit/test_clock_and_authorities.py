"""The input checks closed after the fuzz test found them open: one clock-skew policy for every input
topic (`future_date`), authority ids that must exist (`unknown_authority`), a Newcomer's identity code
validated by routing (`invalid_person_id`). Pure functions; the agents' use of them is proven by
tests/integration/test_fuzz_inputs.py on the real broker."""

import datetime as dt

import pytest

from hub.config import Settings
from hub.consent import model, records
from hub.domain import hetu, population_change
from hub.domain.clock import DEFAULT_CLOCK_SKEW, FutureDate, check_not_future
from hub.routing.model import InputError, RoutingInput
from hub.routing.reference import default_reference, known_authority_ids, municipality_codes
from tests.unit.test_consent_model import EMPLOY, MUNI, PERSON, assessment, grant

MUNICIPALITIES = municipality_codes()

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("ahead, refused", [(dt.timedelta(0), False), (DEFAULT_CLOCK_SKEW, False), (DEFAULT_CLOCK_SKEW + dt.timedelta(seconds=1), True),
                                            (dt.timedelta(days=365 * 30), True), (-dt.timedelta(days=3650), False)])
def test_an_event_time_more_than_the_tolerated_skew_after_now_is_future_date(ahead, refused):
    if refused:
        with pytest.raises(FutureDate) as info:
            check_not_future(NOW + ahead, NOW)
        assert info.value.reason == "future_date" and "occurred_at" in info.value.message and "300 s" in info.value.message
    else:
        check_not_future(NOW + ahead, NOW)


def test_the_check_takes_naive_times_as_utc_ignores_non_datetimes_and_survives_the_end_of_the_calendar():
    with pytest.raises(FutureDate):
        check_not_future(dt.datetime(2030, 1, 1), NOW)
    check_not_future(None, NOW)
    check_not_future("2099-01-01", NOW)  # not a datetime: the schema's business
    check_not_future(dt.datetime.max.replace(tzinfo=dt.timezone.utc), dt.datetime.max.replace(tzinfo=dt.timezone.utc))


def test_the_skew_is_a_setting():
    assert Settings.from_env({}).clock_skew_delta == DEFAULT_CLOCK_SKEW
    assert Settings.from_env({"HUB_CLOCK_SKEW": "30"}).clock_skew_delta == dt.timedelta(seconds=30)
    with pytest.raises(ValueError, match="HUB_CLOCK_SKEW"):
        Settings.from_env({"HUB_CLOCK_SKEW": "soon"})


def test_a_population_change_uses_the_same_skew():
    rec = {"person_id": PERSON, "occurred_at": NOW + dt.timedelta(minutes=10)}
    assert [p.reason for p in population_change.validate(rec, now=NOW, municipalities=MUNICIPALITIES)] == ["future_date"]
    assert population_change.validate(rec, now=NOW, municipalities=MUNICIPALITIES, skew=dt.timedelta(minutes=15)) == []


def test_consents_and_assessments_dated_after_now_are_future_date_but_only_when_a_clock_is_given():
    consent = records.consent_to_avro(grant(when=NOW + dt.timedelta(days=1)))
    assert records.consent_from_avro(consent).consent_id == "c1"  # re-reading stored history: no clock
    with pytest.raises(model.InvalidConsent) as info:
        records.consent_from_avro(consent, now=NOW)
    assert info.value.reason == "future_date"
    a = _assessment_avro(occurred_at=NOW + dt.timedelta(hours=1))
    assert records.assessment_from_avro(a, now=NOW + dt.timedelta(hours=1)).assessment_id == "as-a1"
    with pytest.raises(model.InvalidConsent) as info:
        records.assessment_from_avro(a, now=NOW)
    assert info.value.reason == "future_date" and PERSON not in str(info.value)


def _assessment_avro(**changes):
    a = assessment()
    rec = {"event_id": a.event_id, "occurred_at": a.occurred_at, "assessment_id": a.assessment_id, "person_id": a.person_id, "person_key": a.person_key,
           "assessor": a.assessor, "plan_authority": a.plan_authority, **a.data}
    rec.update(changes)
    return rec


def test_known_authorities_are_those_of_the_reference_data():
    known = known_authority_ids()
    ref = default_reference()
    assert len([a for a in known if a.startswith("municipality:")]) == len(ref.municipalities) == 308
    assert {"municipality:091", "wellbeing_area:04", "employment_authority:08"} <= known
    # Helsinki is its own wellbeing area (the city is the authority); Åland has none
    assert "wellbeing_area:90" not in known and "wellbeing_area:91" not in known
    for authority in known:
        assert ref.describe(authority), authority


@pytest.mark.parametrize("field", ["assessor", "plan_authority"])
def test_an_assessment_naming_an_authority_that_does_not_exist_is_unknown_authority(field):
    with pytest.raises(model.InvalidConsent) as info:
        records.assessment_from_avro(_assessment_avro(**{field: "municipality:999"}))
    assert info.value.reason == "unknown_authority" and "municipality:999" in str(info.value) and field in str(info.value)
    with pytest.raises(model.InvalidConsent) as info:
        records.assessment_from_avro(_assessment_avro(**{field: "municipality"}))
    assert info.value.reason == "invalid_authority"


def test_a_consent_naming_a_recipient_or_recorder_that_does_not_exist_is_unknown_authority():
    for changes in ({"recipients": [EMPLOY, "employment_authority:0091"]}, {"recorded_by": "wellbeing_area:90"}):
        rec = dict(records.consent_to_avro(grant()), **changes)
        with pytest.raises(model.InvalidConsent) as info:
            records.consent_from_avro(rec)
        assert info.value.reason == "unknown_authority"
    assert model.check_authority("municipality:999", "x", known={"municipality:999"}) == "municipality:999"
    assert model.check_authority(MUNI, "x") == MUNI


def test_routing_validates_the_identity_code_even_when_the_birth_date_is_given():
    bad = PERSON[:-1] + ("A" if PERSON[-1] != "A" else "B")
    with pytest.raises(InputError) as info:
        RoutingInput.from_record({"person_id": bad, "birth_date": "1990-05-17", "municipality_code": "091"})
    assert info.value.reason == "invalid_person_id" and bad not in info.value.message
    assert RoutingInput.from_record({"person_id": PERSON, "municipality_code": "091"}).birth_date == hetu.birth_date(PERSON)
