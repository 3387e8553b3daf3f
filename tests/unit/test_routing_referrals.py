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


# -- supersession and the withdrawal record ---------------------------------------------------------
def _refs(*rows):
    from hub.routing.referrals import OpenRef

    return [OpenRef(*row) for row in rows]


def _decision(authority, purpose):
    from hub.routing.model import Decision

    return Decision(authority=authority, purpose=purpose, reasons=("r",), rule="rule", rules_version="v")


def test_a_move_withdraws_each_referral_whose_recipient_and_purpose_no_longer_apply_in_any_open_state():
    from hub.routing.model import RoutingInput
    from hub.routing.referrals import MOVED, supersessions

    moved = RoutingInput(event_id="e", person_key="k", change="moved", municipality_code="049")
    refs = _refs(("r1", "k", "municipality:091", "outreach", "assessment_started"), ("r2", "k", "wellbeing_area:04", "social_and_health_services", "sent"))
    out = supersessions(moved, [_decision("municipality:049", "outreach"), _decision("wellbeing_area:04", "social_and_health_services")], refs)
    assert [(s.referral_id, s.cause, s.reason, s.replaced_by) for s in out] == [("r1", MOVED, "moved to municipality 049", None)]
    hidden = supersessions(RoutingInput(person_key="k", change="moved", municipality_code="049", turvakielto=True), [], refs)
    assert {s.reason for s in hidden} == {"moved to another municipality (withheld: turvakielto)"}  # never the new municipality


def test_new_circumstances_withdraw_what_no_longer_applies_but_not_an_assessment_under_way():
    from hub.routing.model import RoutingInput
    from hub.routing.referrals import NO_LONGER_APPLIES, supersessions

    update = RoutingInput(person_key="k", change="circumstances", municipality_code="091", change_reason="registration as a jobseeker ended")
    refs = _refs(("r1", "k", "employment_authority:08", "initial_assessment", "contacted"),
                 ("r2", "k", "employment_authority:08", "special_services", "assessment_started"),
                 ("r3", "k", "municipality:091", "outreach", "sent"))
    out = supersessions(update, [_decision("municipality:091", "outreach")], refs)
    assert [(s.referral_id, s.cause, s.reason) for s in out] == [("r1", NO_LONGER_APPLIES, "no longer applies: registration as a jobseeker ended")]
    assert supersessions(RoutingInput(person_key="k", change="arrived"), [], refs) == []  # a first detection withdraws nothing


def test_an_identity_code_correction_withdraws_every_open_referral_of_the_old_key_and_names_the_successor():
    from hub.routing.model import RoutingInput
    from hub.routing.referrals import IDENTITY_CORRECTED, referral_id, supersessions

    update = RoutingInput(person_key="new", previous_person_key="old", change="circumstances", municipality_code="091")
    outreach = _decision("municipality:091", "outreach")
    refs = _refs(("r1", "old", "municipality:091", "outreach", "assessment_started"), ("r2", "old", "employment_authority:08", "initial_assessment", "sent"))
    out = supersessions(update, [outreach], refs)
    assert [(s.referral_id, s.cause, s.replaced_by) for s in out] == [
        ("r1", IDENTITY_CORRECTED, referral_id("new", outreach)), ("r2", IDENTITY_CORRECTED, None)]
    assert referral_id("new", outreach) in out[0].reason and "identity code corrected" in out[1].reason


def test_the_withdrawal_record_is_valid_avro_derived_and_without_the_identity_code():
    import datetime as dt

    from hub.routing.model import RoutingInput
    from hub.routing.referrals import Supersession, withdrawal_event_id, withdrawal_record
    from hub.schemas.codec import default_codec

    now = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
    sup = Supersession("r1", "k", "municipality:091", "outreach", "moved", "moved to municipality 049")
    rec = withdrawal_record(sup, sequence=7, newcomer=RoutingInput(event_id="e9", person_key="k", change="moved"), now=now)
    assert rec["event_id"] == withdrawal_event_id("r1") == withdrawal_record(sup, sequence=7, newcomer=RoutingInput(), now=now)["event_id"]
    codec = default_codec()
    back = codec.decode(codec.encode("ReferralWithdrawn", rec)).record
    assert (back["to"], back["sequence"], back["cause"], back["reason"], back["newcomer_event_id"]) == ("municipality:091", 7, "moved", "moved to municipality 049", "e9")
    assert "person_id" not in rec


def test_a_reissued_referral_has_an_id_of_its_own_per_generation():
    from hub.routing.referrals import reissued_id

    assert reissued_id("r1", 1) == "r1"
    assert len({reissued_id("r1", n) for n in (1, 2, 3)}) == 3 and reissued_id("r1", 2) == reissued_id("r1", 2)
