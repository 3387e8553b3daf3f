"""Supersession is announced (the referral ledger on SQLite): a superseded referral gets a withdrawal
with its recipient's next sequence number, in the ledger's outbox like a referral (published after
the commit, re-sent by a redelivered event, resent by `hub resend`), on a move, on new
circumstances and on an identity-code correction."""

import dataclasses
import datetime as dt
import uuid

import pytest
from sqlalchemy.pool import StaticPool

from hub.adapters import database
from hub.adapters.newcomer_facts import NewcomerFactRow
from hub.adapters.referral_ledger import ReferralLedger
from hub.routing.engine import route
from hub.routing.model import RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules
from hub.schemas.codec import default_codec

NOW = dt.datetime(2025, 6, 15, 12, tzinfo=dt.timezone.utc)


@pytest.fixture
def ledger():
    engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    database.Base.metadata.create_all(engine)
    yield ReferralLedger(engine)
    engine.dispose()


def newcomer(person_key, **fields):
    base = {"event_id": str(uuid.uuid4()), "person_key": person_key, "occurred_at": "2025-06-15T09:00:00Z", "municipality_code": "091",
            "arrival_date": "2025-06-01"}
    return RoutingInput.from_record({**base, **fields})


def routed(ledger, n, publish=True):
    done = ledger.record(n, route(n, default_rules(), default_reference()), NOW)
    if publish:
        ledger.mark_published([r["referral_id"] for r in done.to_publish] + [w["event_id"] for w in done.withdrawals], NOW)
    return done


def test_a_move_withdraws_the_old_municipalitys_referral_with_its_next_sequence(ledger):
    first = routed(ledger, newcomer("pk-a"))
    old = [r for r in first.created if r["to"] == "municipality:091"]
    other = routed(ledger, newcomer("pk-b"))  # another newcomer of 091 takes the next numbers
    last = max(r["sequence"] for r in other.created if r["to"] == "municipality:091")
    moved = routed(ledger, newcomer("pk-a", change="moved", municipality_code="049", previous_municipality_code="091"), publish=False)
    assert {r["to"] for r in moved.created} >= {"municipality:049"}
    withdrawn = [w for w in moved.withdrawals if w["to"] == "municipality:091"]
    assert [w["referral_id"] for w in withdrawn] == [r["referral_id"] for r in old]
    assert [w["sequence"] for w in withdrawn] == list(range(last + 1, last + 1 + len(old)))  # no gap, no repeat
    assert {(w["cause"], w["reason"]) for w in withdrawn} == {("moved", "moved to municipality 049")}
    assert all(ledger.state(r["referral_id"]) == "superseded" for r in old)
    assert ledger.history(old[0]["referral_id"])[-1] == ("superseded", "hub", "moved to municipality 049")
    # crash before the withdrawals were marked published: the redelivered event sends them again, the same
    again = ledger.record(newcomer_like(moved, "pk-a"), [], NOW)
    assert again.duplicate and json(again.withdrawals, "ReferralWithdrawn") == json(moved.withdrawals, "ReferralWithdrawn")
    assert json(again.to_publish, "Referral") == json(moved.to_publish, "Referral")
    ledger.mark_published([w["event_id"] for w in moved.withdrawals] + [r["referral_id"] for r in moved.to_publish], NOW)
    assert ledger.record(newcomer_like(moved, "pk-a"), [], NOW).withdrawals == []
    # hub resend: the recipient's referrals and withdrawals in one numbering
    sent = ledger.published_from("municipality:091", 1)
    assert [r["sequence"] for _, r in sent] == sorted(r["sequence"] for _, r in sent)
    assert [(name, r["sequence"]) for name, r in sent if name == "ReferralWithdrawn"] == [("ReferralWithdrawn", w["sequence"]) for w in withdrawn]
    assert json(ledger.withdrawals("municipality:091"), "ReferralWithdrawn") == json(withdrawn, "ReferralWithdrawn")


def json(records, name):
    return [default_codec().to_jsonable(name, r) for r in records]


def newcomer_like(recorded, person_key):
    """The routed event again (a redelivery): its event id is what the ledger knows it by."""
    event_id = (recorded.created or recorded.withdrawals)[0]["newcomer_event_id"]
    return RoutingInput(event_id=event_id, person_key=person_key, change="moved", municipality_code="049")


def test_new_circumstances_withdraw_what_no_longer_applies_but_keep_an_assessment_under_way(ledger):
    jobseeker = newcomer("pk-c", labour_force_status="unemployed_job_seeker", service_needs=["health"])
    first = routed(ledger, jobseeker)
    ia = next(r for r in first.created if r["purpose"] == "initial_assessment")
    assert ia["to"].startswith("employment_authority:")
    ended = newcomer("pk-c", change="circumstances", labour_force_status="home_parent", service_needs=["health"])
    ended = dataclasses.replace(ended, change_reason="registration as a jobseeker ended")  # the caller says what changed
    done = routed(ledger, ended)
    assert [(w["referral_id"], w["cause"], w["reason"]) for w in done.withdrawals] == [
        (ia["referral_id"], "no_longer_applies", "no longer applies: registration as a jobseeker ended")]
    assert any(r["to"] == "municipality:091" and r["purpose"] == "initial_assessment" for r in done.created)  # the municipality assesses now
    # once the assessment has started, new circumstances leave the referral to its assessor
    other = routed(ledger, newcomer("pk-d", labour_force_status="unemployed_job_seeker"))
    ia2 = next(r for r in other.created if r["purpose"] == "initial_assessment")
    status = {"event_id": str(uuid.uuid4()), "occurred_at": NOW, "referral_id": ia2["referral_id"], "authority": ia2["to"], "status": "assessment_started", "reason": None}
    assert ledger.apply_status(status, NOW).code == "applied"
    kept = routed(ledger, newcomer("pk-d", change="circumstances", labour_force_status="home_parent"))
    assert kept.withdrawals == [] and ledger.state(ia2["referral_id"]) == "assessment_started"


def test_an_identity_code_correction_withdraws_the_old_keys_referrals_and_reissues_them(ledger):
    first = routed(ledger, newcomer("pk-old"))
    corrected = routed(ledger, newcomer("pk-new", change="circumstances", previous_person_key="pk-old"))
    assert {(r["to"], r["purpose"]) for r in corrected.created} == {(r["to"], r["purpose"]) for r in first.created}
    assert {w["referral_id"] for w in corrected.withdrawals} == {r["referral_id"] for r in first.created}
    successors = {(r["to"], r["purpose"]): r["referral_id"] for r in corrected.created}
    for w in corrected.withdrawals:
        assert w["cause"] == "identity_corrected" and w["person_key"] == "pk-old" and w["replaced_by"] == successors[(w["to"], w["purpose"])]
        # the withdrawal numbers after the successor referral of the same recipient (published in that order)
        assert w["sequence"] > next(r["sequence"] for r in corrected.created if r["referral_id"] == w["replaced_by"])
    assert ledger.open_referrals() and all(r.person_key == "pk-new" for r in ledger.open_referrals())
    with ledger.Session() as s:  # hub report counts the person once, under the new key
        assert [row.person_key for row in s.query(NewcomerFactRow).all()] == ["pk-new"]


def test_a_decision_that_applies_again_after_its_supersession_is_a_new_referral(ledger):
    from hub.routing.referrals import reissued_id

    first = routed(ledger, newcomer("pk-e", labour_force_status="unemployed_job_seeker"))
    ia = next(r for r in first.created if r["purpose"] == "initial_assessment")
    ended = routed(ledger, newcomer("pk-e", change="circumstances", labour_force_status="home_parent"))
    assert [w["referral_id"] for w in ended.withdrawals] == [ia["referral_id"]]
    again = routed(ledger, newcomer("pk-e", change="circumstances", labour_force_status="unemployed_job_seeker"))
    [back] = [r for r in again.created if r["to"] == ia["to"]]
    assert back["referral_id"] == reissued_id(ia["referral_id"], 2) != ia["referral_id"]  # a new referral, not the withdrawn one
    assert back["event_id"] != ia["event_id"] and back["sequence"] == ended.withdrawals[0]["sequence"] + 1
    assert ledger.state(back["referral_id"]) == "sent" and ledger.state(ia["referral_id"]) == "superseded"
    assert routed(ledger, newcomer("pk-e", change="circumstances", labour_force_status="unemployed_job_seeker")).created == []  # once


def test_moving_back_within_one_batch_withdraws_and_makes_the_referral_again(ledger):
    rules, ref = default_rules(), default_reference()
    arrive = newcomer("pk-f")
    away = newcomer("pk-f", change="moved", municipality_code="049", previous_municipality_code="091")
    back = newcomer("pk-f", change="moved", municipality_code="091", previous_municipality_code="049")
    done = ledger.record_many([(n, route(n, rules, ref)) for n in (arrive, away, back)], NOW)
    helsinki = [r for r in done[0].created if r["to"] == "municipality:091"]
    assert helsinki and {w["referral_id"] for w in done[1].withdrawals} >= {r["referral_id"] for r in helsinki}
    again = [r for r in done[2].created if r["to"] == "municipality:091"]
    assert {(r["purpose"]) for r in again} == {r["purpose"] for r in helsinki}
    assert not {r["referral_id"] for r in again} & {r["referral_id"] for r in helsinki}
    espoo = {w["referral_id"] for w in done[2].withdrawals if w["to"] == "municipality:049"}
    assert espoo == {r["referral_id"] for r in done[1].created if r["to"] == "municipality:049"}
    numbers = sorted([r["sequence"] for d in done for r in d.created if r["to"] == "municipality:091"]
                     + [w["sequence"] for d in done for w in d.withdrawals if w["to"] == "municipality:091"])
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # one numbering, no gap, no repeat
