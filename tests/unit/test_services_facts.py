"""The fact intake (`hub.services.facts`) with fakes: each checked input record becomes one RoutingFact
keyed by the person key, under an event id derived from the input's; a record that fails a check or
whose RoutingFact is refused for its own sake is dead-lettered with its reason; an outage raises."""

import asyncio
import datetime as dt

import pytest

from hub.domain import hetu
from hub.routing import circumstances as c
from hub.schemas.codec import default_codec
from hub.schemas.envelope import envelope
from hub.services.facts import FactIntake
from hub.services.ports import Consumed
from tests.fakes import FAILURES, T0, Clock, FakeDeadLetters, FakePublisher, Outage, TooLarge

codec = default_codec()
SECRET = "test-secret"
PID = hetu.make(dt.date(1990, 4, 1), 931)

FIELDS = {
    "JobseekerStatus": ("employment_authority:43", {"status": "registered", "status_date": dt.date(2025, 6, 10), "employment_area": "43"}),
    "ResidencePermit": ("migri", {"basis": "eu_registration", "first_permit_date": dt.date(2025, 3, 1)}),
    "ServiceNeeds": ("municipality:092", {"needs": ["social", "literacy"], "identified_by": "municipality:092", "identified_on": dt.date(2025, 6, 12)}),
}


def item(name: str, msg: str = "m0", **fields) -> Consumed:
    source, own = FIELDS[name]
    rec = envelope(source, occurred_at=T0 - dt.timedelta(days=1))
    rec.update(person_id=PID, **own)
    rec.update(fields)
    return Consumed(msg, codec.decode(codec.encode(name, rec), name).record, name)


def run(coro):
    return asyncio.run(coro)


def intake(publisher) -> FactIntake:
    return FactIntake(publisher, FAILURES, person_key_secret=SECRET, clock=Clock(), skew=dt.timedelta(minutes=5), facts_topic="facts")


def test_each_input_becomes_one_routing_fact_keyed_by_the_person_key():
    journal: list = []
    publisher, dead = FakePublisher(journal), FakeDeadLetters(journal)
    items = [item(name, f"m{i}") for i, name in enumerate(sorted(FIELDS))]
    out = run(intake(publisher).take(items, dead))
    assert dict(out.published) == {name: 1 for name in FIELDS} and dead.sent == []
    key = hetu.person_key(PID, SECRET)
    assert [(topic, name, k) for topic, name, _, k in publisher.sent] == [("facts", "RoutingFact", key)] * 3
    for (_, _, record, _), source in zip(publisher.sent, items):
        assert record["event_id"] == c.fact_event_id(source.name, source.record) and record["source"] == source.record["source"]
        codec.encode("RoutingFact", record)  # the contract holds
    kinds = {r["kind"]: r for _, _, r, _ in publisher.sent}
    assert kinds["residence_permit"]["residence_basis"] == "eu_citizen"
    assert kinds["jobseeker_status"]["employment_area"] == "43"
    assert journal[-1] == ("dead_letters_kept", 0)
    assert PID not in repr([k for *_, k in publisher.sent])


@pytest.mark.parametrize("name, fields, reason", [
    ("JobseekerStatus", {"person_id": "010190-1234"}, "invalid_person_id"),
    ("ResidencePermit", {"first_permit_date": dt.date(1980, 1, 1)}, "invalid_field"),
    ("ServiceNeeds", {"identified_on": T0.date() + dt.timedelta(days=3)}, "invalid_field"),
    ("JobseekerStatus", {"occurred_at": T0 + dt.timedelta(days=1)}, "future_date"),
])
def test_a_record_that_fails_a_check_is_dead_lettered_and_the_rest_flows(name, fields, reason):
    journal: list = []
    publisher, dead = FakePublisher(journal), FakeDeadLetters(journal)
    bad, good = item(name, "bad", **fields), item("ResidencePermit", "good")
    out = run(intake(publisher).take([bad, good], dead))
    assert dead.reasons == [("bad", reason)] and sum(out.published.values()) == 1
    assert name in dead.sent[0][2] and PID not in dead.sent[0][2]


def test_a_routing_fact_refused_for_its_own_sake_dead_letters_its_record():
    journal: list = []
    publisher = FakePublisher(journal, fails=lambda topic, record, key: TooLarge() if record["kind"] == "service_needs" else None)
    dead = FakeDeadLetters(journal)
    out = run(intake(publisher).take([item("ServiceNeeds", "big"), item("JobseekerStatus", "ok")], dead))
    assert dead.reasons == [("big", "unprocessable")] and dict(out.published) == {"JobseekerStatus": 1}


def test_an_outage_raises_and_dead_letters_nothing():
    journal: list = []
    publisher = FakePublisher(journal, fails=lambda topic, record, key: Outage())
    dead = FakeDeadLetters(journal)
    with pytest.raises(Outage):
        run(intake(publisher).take([item("JobseekerStatus")], dead))
    assert dead.sent == []
