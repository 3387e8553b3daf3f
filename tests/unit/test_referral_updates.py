"""A due date learned later (the referral ledger on SQLite, and routing over it): an update of the
person that keeps an open referral whose decision now has another due date (the first residence
permit, from which the integration period counts, arrived after the referral) moves the referral's
due date and tells its recipient with a ReferralUpdated, numbered in its sequence like a withdrawal:
published after the commit, re-sent by a redelivered event, resent by `hub resend`."""

import asyncio
import dataclasses
import datetime as dt
import uuid

import pytest
from sqlalchemy.pool import StaticPool

from hub.adapters import database
from hub.adapters.referral_ledger import ReferralLedger
from hub.routing.engine import add_period, route
from hub.routing.model import RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules
from hub.schemas.codec import default_codec
from hub.services.routing import Routing
from tests.fakes import Clock, FakeDeadLetters, FakePublisher, JournalLedger, MemoryCircumstances
from tests.unit.test_services_routing_circumstances import KEY, newcomer as newcomer_msg, routing_fact

NOW = dt.datetime(2025, 6, 15, 12, tzinfo=dt.timezone.utc)
ARRIVED, FIRST_PERMIT = dt.date(2025, 6, 1), dt.date(2024, 11, 5)


@pytest.fixture
def ledger():
    engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    database.Base.metadata.create_all(engine)
    yield ReferralLedger(engine)
    engine.dispose()


def jobseeker(person_key, **fields):
    base = {"event_id": str(uuid.uuid4()), "person_key": person_key, "occurred_at": "2025-06-15T09:00:00Z", "municipality_code": "091",
            "arrival_date": ARRIVED.isoformat(), "birth_date": "1990-04-01", "labour_force_status": "unemployed_job_seeker"}
    return RoutingInput.from_record({**base, **fields})


def record(ledger, n):
    return ledger.record(n, route(n, default_rules(), default_reference()), NOW)


def published(ledger, done):
    ledger.mark_published([r["referral_id"] for r in done.to_publish] + [w["event_id"] for w in done.withdrawals + done.updates], NOW)


def json(records, name):
    return [default_codec().to_jsonable(name, r) for r in records]


def test_a_first_permit_after_the_referral_moves_its_due_date_and_tells_the_recipient(ledger):
    first = record(ledger, jobseeker("pk-a"))
    published(ledger, first)
    ia = next(r for r in first.created if r["purpose"] == "initial_assessment")
    assert ia["due"] == add_period(ARRIVED, years=3)
    permit = dataclasses.replace(jobseeker("pk-a", change="circumstances", residence_basis="work", integration_start=FIRST_PERMIT.isoformat()),
                                 change_reason="residence basis reported by migri: work")
    done = record(ledger, permit)
    assert done.created == [] and done.withdrawals == [] and done.superseded == []
    [update] = done.updates
    assert (update["referral_id"], update["to"], update["purpose"], update["person_key"]) == (ia["referral_id"], ia["to"], ia["purpose"], "pk-a")
    assert (update["previous_due"], update["due"]) == (add_period(ARRIVED, years=3), add_period(FIRST_PERMIT, years=3))
    assert update["sequence"] == ia["sequence"] + 1  # the recipient's next number: no gap, no repeat
    assert "the first residence permit or registration, 2024-11-05" in update["reason"] and "migri" in update["reason"]
    assert ia["to"] in done.superseded_authorities  # its overdue count may change
    assert ledger.due(ia["referral_id"]) == add_period(FIRST_PERMIT, years=3) and ledger.state(ia["referral_id"]) == "sent"
    assert [r.due for r in ledger.open_referrals(ia["to"])] == [add_period(FIRST_PERMIT, years=3)]
    assert default_codec().decode(default_codec().encode("ReferralUpdated", update)).record["due"] == update["due"]
    # crash before it was marked published: the redelivered event sends it again, the same record
    again = ledger.record(permit, [], NOW)
    assert again.duplicate and json(again.updates, "ReferralUpdated") == json(done.updates, "ReferralUpdated")
    published(ledger, done)
    assert ledger.record(permit, [], NOW).updates == []
    # the same due date again (another routing of the same facts): nothing to tell
    same = record(ledger, dataclasses.replace(permit, event_id=str(uuid.uuid4())))
    assert same.updates == [] and same.created == []
    # hub resend: the referral as published at its number, then the update at its own
    sent = ledger.published_from(ia["to"], ia["sequence"])
    assert [(name, r["sequence"]) for name, r in sent] == [("Referral", ia["sequence"]), ("ReferralUpdated", update["sequence"])]
    assert sent[0][1]["due"] == ia["due"] and sent[1][1]["due"] == update["due"]
    assert json(ledger.updates(ia["to"]), "ReferralUpdated") == json([update], "ReferralUpdated")


def test_a_second_update_of_the_same_referral_is_another_event(ledger):
    first = record(ledger, jobseeker("pk-b"))
    ia = next(r for r in first.created if r["purpose"] == "initial_assessment")
    one = record(ledger, jobseeker("pk-b", change="circumstances", integration_start=FIRST_PERMIT.isoformat()))
    two = record(ledger, jobseeker("pk-b", change="circumstances", integration_start="2025-01-10"))
    assert [u["due"] for u in one.updates + two.updates] == [add_period(FIRST_PERMIT, years=3), add_period(dt.date(2025, 1, 10), years=3)]
    assert two.updates[0]["previous_due"] == one.updates[0]["due"] and two.updates[0]["event_id"] != one.updates[0]["event_id"]
    assert [u["sequence"] for u in one.updates + two.updates] == [ia["sequence"] + 1, ia["sequence"] + 2]


def test_a_new_arrival_a_closed_referral_and_the_replaced_key_of_a_correction_get_no_update(ledger):
    first = record(ledger, jobseeker("pk-c"))
    ia = next(r for r in first.created if r["purpose"] == "initial_assessment")
    assert record(ledger, jobseeker("pk-c", integration_start=FIRST_PERMIT.isoformat())).updates == []  # `arrived` again: no update
    status = {"event_id": str(uuid.uuid4()), "occurred_at": NOW, "referral_id": ia["referral_id"], "authority": ia["to"], "status": "completed",
              "reason": None}
    assert ledger.apply_status(status, NOW).code == "applied"
    assert record(ledger, jobseeker("pk-c", change="circumstances", integration_start=FIRST_PERMIT.isoformat())).updates == []  # closed
    record(ledger, jobseeker("pk-d"))
    corrected = record(ledger, jobseeker("pk-e", change="circumstances", previous_person_key="pk-d", integration_start=FIRST_PERMIT.isoformat()))
    assert corrected.updates == [] and {w["cause"] for w in corrected.withdrawals} == {"identity_corrected"}
    assert {r["due"] for r in corrected.created if r["purpose"] == "initial_assessment"} == {add_period(FIRST_PERMIT, years=3)}


def test_routing_publishes_the_update_on_the_recipients_topic_after_the_ledger_recorded_it():
    journal: list = []
    publisher, ledger = FakePublisher(journal), JournalLedger(journal)
    routing = Routing(ledger, publisher, clock=Clock(), skew=dt.timedelta(minutes=5), topic_for=lambda a: f"referrals.{a}",
                      circumstances=MemoryCircumstances(journal))
    run = asyncio.run
    run(routing.route_batch([newcomer_msg(), routing_fact("JobseekerStatus")], FakeDeadLetters(journal)))
    [referral] = [rec for _, name, rec, _ in publisher.sent if rec.get("purpose") == "initial_assessment"]
    publisher.sent.clear()
    out = run(routing.route_batch([routing_fact("ResidencePermit", input_id="in-2", source="migri", basis="work")], FakeDeadLetters(journal)))
    assert (out.facts_routed, out.published, out.withdrawn, out.updated) == (1, 0, 0, 1)
    [(topic, name, update, key)] = publisher.sent
    assert (topic, name, key) == (f"referrals.{referral['to']}", "ReferralUpdated", KEY)
    assert update["referral_id"] == referral["referral_id"] and update["sequence"] == referral["sequence"] + 1
    assert update["due"] == add_period(dt.date(2025, 3, 1), years=3) != referral["due"]
    assert out.updates == [update] and referral["to"] in out.changed
    assert str(update["event_id"]) in journal[-1][1]  # marked published only after its acknowledgement
    again = run(routing.route_batch([routing_fact("ResidencePermit", input_id="in-2", source="migri", basis="work")], FakeDeadLetters(journal)))
    assert again.updated == 0 and again.updates == []
