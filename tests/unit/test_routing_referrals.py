"""Referral ids, the Referral record (turvakielto), and the lifecycle state machine."""

import datetime as dt

import pytest

from hub.routing.engine import route
from hub.routing.model import RoutingInput
from hub.routing.reference import default_reference
from hub.routing.referrals import TransitionError, is_open, referral_id, referral_record, transition
from hub.routing.rules import default_rules
from hub.schemas.codec import default_codec

NOW = dt.datetime(2025, 6, 15, 12, tzinfo=dt.timezone.utc)


def decisions(**fields):
    base = {"event_id": "7d1c1b3e-8a4f-4b8e-9d51-1f0c7e7a0001", "person_key": "pk-1", "occurred_at": "2025-06-15T09:00:00Z", "municipality_code": "092"}
    n = RoutingInput.from_record({**base, **fields})
    return n, route(n, default_rules(), default_reference())


def test_referral_id_is_deterministic_per_person_recipient_and_purpose():
    n, ds = decisions(service_needs=["health"])
    ids = [referral_id("pk-1", d) for d in ds]
    assert ids == [referral_id("pk-1", d) for d in decisions(service_needs=["health"])[1]]
    assert len(set(ids)) == len(ids)
    assert referral_id("pk-2", ds[0]) != ids[0]


def test_the_record_is_a_valid_referral_event():
    n, ds = decisions(service_needs=["health"], mother_tongue="ar")
    rec = referral_record(n, ds[1], sequence=7, person_id=None, now=NOW)
    data = default_codec().encode("Referral", rec)
    back = default_codec().decode(data, "Referral").record
    assert back["sequence"] == 7 and back["to"] == "wellbeing_area:04" and back["mother_tongue"] == "ar"
    assert back["municipality_code"] == "092" and back["decision_trace"]
    assert rec["event_id"] == referral_record(n, ds[1], sequence=7, person_id=None, now=NOW)["event_id"]


def test_turvakielto_withholds_the_municipality_from_other_recipients_only():
    n, ds = decisions(service_needs=["health"], turvakielto=True)
    by_to = {d.authority: referral_record(n, d, sequence=1, person_id=None, now=NOW) for d in ds}
    wb = by_to["wellbeing_area:04"]
    assert wb["turvakielto"] is True and wb["municipality_code"] is None
    assert wb["decision_trace"] == ["withheld: turvakielto"]
    assert "092" not in " ".join(wb["reasons"]) and "Vantaa" not in " ".join(wb["reasons"])
    own = by_to["municipality:092"]
    assert own["turvakielto"] is True and own["municipality_code"] == "092"


@pytest.mark.parametrize(
    "current, status, expected",
    [
        ("sent", "accepted", "accepted"),
        ("sent", "assessment_started", "assessment_started"),
        ("accepted", "contacted", "contacted"),
        ("contacted", "unreachable", "unreachable"),
        ("unreachable", "contacted", "contacted"),
        ("contacted", "contacted", "contacted"),
        ("assessment_started", "completed", "completed"),
    ],
)
def test_allowed_transitions(current, status, expected):
    assert transition(current, status, None) == expected


@pytest.mark.parametrize(
    "current, status, reason, code",
    [
        ("contacted", "accepted", None, "invalid_transition"),
        ("completed", "accepted", None, "invalid_transition"),
        ("declined", "contacted", None, "invalid_transition"),
        ("superseded", "accepted", None, "invalid_transition"),
        ("sent", "declined", None, "invalid_status"),
        ("sent", "declined", "  ", "invalid_status"),
        ("sent", "sent", None, "invalid_status"),
    ],
)
def test_rejected_transitions(current, status, reason, code):
    with pytest.raises(TransitionError) as info:
        transition(current, status, reason)
    assert info.value.reason == code


def test_declined_with_reason_closes():
    assert transition("accepted", "declined", "moved abroad") == "declined"
    assert not is_open("declined") and is_open("unreachable")
