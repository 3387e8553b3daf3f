"""Routing with circumstances (`hub.services.routing` with a circumstances port, fakes): a fact
updates the person's circumstances and routes the person again; a fact that arrives before the
person's Newcomer is kept and used when the Newcomer arrives; within a batch a later record sees the
earlier ones' changes; a fact that cannot be used is dead-lettered with its reason."""

import asyncio
import dataclasses
import datetime as dt

import pytest

from hub.domain import hetu
from hub.routing import circumstances as c
from hub.routing.model import RoutingInput
from hub.schemas.codec import default_codec
from hub.schemas.envelope import envelope
from hub.services.ports import Consumed
from hub.services.routing import Routing
from tests.fakes import T0, Clock, FakeDeadLetters, FakePublisher, JournalLedger, MemoryCircumstances, Outage

codec = default_codec()
ADULT = hetu.make(dt.date(1990, 4, 1), 931)
KEY = "pk-a"
EMPLOYMENT = ("employment_authority:43", "initial_assessment")


def newcomer(**fields) -> Consumed:
    rec = envelope("hub:newcomer-detection", occurred_at=T0 - dt.timedelta(days=5))
    rec.update(person_key=KEY, person_id=ADULT, municipality_code="092", birth_date=dt.date(1990, 4, 1), arrival_date=dt.date(2025, 6, 1),
               labour_force_status="unknown", residence_basis="unknown", service_needs=[])
    rec.update(fields)
    return Consumed("newcomer-msg", codec.decode(codec.encode("Newcomer", rec)).record, "Newcomer")


def routing_fact(kind: str, input_id: str = "in-1", source: str = "employment_authority:43", **fields) -> Consumed:
    rec = {"occurred_at": T0 - dt.timedelta(days=1), "recorded_at": T0, "source": source, "schema_version": 1, "person_id": ADULT}
    rec.update({"JobseekerStatus": {"status": "registered", "status_date": dt.date(2025, 6, 10), "employment_area": "43"},
                "ResidencePermit": {"basis": "international_protection", "first_permit_date": dt.date(2025, 3, 1)},
                "ServiceNeeds": {"needs": ["social"], "identified_by": "municipality:092", "identified_on": dt.date(2025, 6, 12)}}[kind])
    rec.update(event_id=input_id, **fields)
    out = c.fact_record(kind, rec, KEY, T0)
    return Consumed(f"fact-msg-{input_id}", codec.decode(codec.encode("RoutingFact", out)).record, "RoutingFact")


@pytest.fixture
def world():
    journal: list = []
    publisher = FakePublisher(journal)
    store = MemoryCircumstances(journal)
    routing = Routing(JournalLedger(journal), publisher, clock=Clock(), skew=dt.timedelta(minutes=5), topic_for=lambda a: f"referrals.{a}",
                      circumstances=store)
    return journal, publisher, store, routing


def run(coro):
    return asyncio.run(coro)


def made(out) -> list[tuple[str, str]]:
    return sorted((r["to"], r["purpose"]) for r in out.created)


def test_a_fact_before_the_newcomer_is_kept_and_used_when_the_newcomer_arrives(world):
    journal, publisher, store, routing = world
    dead = FakeDeadLetters(journal)
    out = run(routing.route_batch([routing_fact("JobseekerStatus")], dead))
    assert (out.facts_kept, out.facts_routed, out.published) == (1, 0, 0) and publisher.sent == [] and dead.sent == []
    assert store.rows[KEY].newcomer is None and ADULT not in store.rows[KEY].facts
    out = run(routing.route_batch([newcomer()], FakeDeadLetters(journal)))
    assert made(out) == [EMPLOYMENT, ("municipality:092", "outreach")] and out.routed == 1
    referral = next(r for _, _, r, _ in publisher.sent if r["to"] == EMPLOYMENT[0])
    assert referral["person_id"] == ADULT
    snapshot = c.decode_newcomer(store.rows[KEY].newcomer)
    assert snapshot.labour_force_status == "unknown"  # kept as detection sent it, not merged


def test_a_fact_after_the_newcomer_routes_the_person_again_once(world):
    journal, publisher, store, routing = world
    first = run(routing.route_batch([newcomer()], FakeDeadLetters(journal)))
    assert made(first) == [("municipality:092", "outreach")]
    out = run(routing.route_batch([routing_fact("JobseekerStatus")], FakeDeadLetters(journal)))
    assert made(out) == [EMPLOYMENT] and (out.facts_routed, out.facts_duplicates, out.routed) == (1, 0, 0)
    topic, name, referral, key = publisher.sent[-1]
    assert (topic, name, key, referral["person_id"]) == ("referrals.employment_authority:43", "Referral", KEY, ADULT)
    assert out.waits == []  # not a registration-to-referral step
    again = run(routing.route_batch([routing_fact("JobseekerStatus")], FakeDeadLetters(journal)))  # the same fact read again
    assert (again.facts_routed, again.facts_duplicates, again.created, again.published) == (1, 1, [], 0)


def test_within_a_batch_a_later_record_sees_the_earlier_ones(world):
    journal, publisher, store, routing = world
    out = run(routing.route_batch([routing_fact("ServiceNeeds", "n1", source="municipality:092"), newcomer(),
                                   routing_fact("JobseekerStatus", "j1")], FakeDeadLetters(journal)))
    assert out.facts_kept == 1 and out.facts_routed == 1 and out.routed == 1
    assert made(out) == [EMPLOYMENT, ("municipality:092", "outreach"), ("wellbeing_area:04", "social_and_health_services")]
    stored = c.decode(store.rows[KEY].facts)
    assert stored.jobseeker.status == "registered" and stored.service_needs == ("social",)


def test_a_residence_permit_sets_the_basis_and_the_integration_start_routing_sees(world):
    journal, _, store, routing = world
    seen = []
    original = routing.ledger.record_many

    async def spy(items, now):
        seen.extend(n for n, _ in items)
        return await original(items, now)

    routing.ledger.record_many = spy
    run(routing.route_batch([newcomer(), routing_fact("ResidencePermit", source="migri")], FakeDeadLetters(journal)))
    assert [(n.change, n.residence_basis, n.integration_start) for n in seen] == [
        ("arrived", "unknown", None), ("circumstances", "international_protection", dt.date(2025, 3, 1))]
    assert seen[1].person_key == KEY and seen[1].municipality_code == "092" and seen[1].event_id != seen[0].event_id


def test_a_later_newcomer_is_merged_with_the_stored_facts(world):
    journal, _, store, routing = world
    run(routing.route_batch([routing_fact("JobseekerStatus"), newcomer()], FakeDeadLetters(journal)))
    moved = run(routing.route_batch([newcomer(change="moved", municipality_code="091", previous_municipality_code="092")], FakeDeadLetters(journal)))
    assert ("employment_authority:08", "initial_assessment") in made(moved)
    assert c.decode_newcomer(store.rows[KEY].newcomer).municipality_code == "091"


def test_registration_ended_routes_again_without_the_jobseeker_status(world):
    journal, _, store, routing = world
    run(routing.route_batch([newcomer(labour_force_status="employed"), routing_fact("JobseekerStatus")], FakeDeadLetters(journal)))
    seen = []
    original = routing.ledger.record_many

    async def spy(items, now):
        seen.extend(n for n, _ in items)
        return await original(items, now)

    routing.ledger.record_many = spy
    ended = routing_fact("JobseekerStatus", "j2", status="ended", status_date=dt.date(2025, 6, 18))
    out = run(routing.route_batch([ended], FakeDeadLetters(journal)))
    assert out.facts_routed == 1 and [n.labour_force_status for n in seen] == ["employed"]


@pytest.mark.parametrize("change, reason", [
    ({"kind": "bogus"}, "invalid_field"),
    ({"person_key": ""}, "missing_person_key"),
    ({"person_id": None}, "invalid_person_id"),
    ({"occurred_at": T0 + dt.timedelta(days=1)}, "future_date"),
])
def test_a_fact_that_cannot_be_used_is_dead_lettered_with_its_reason_and_the_rest_flows(world, change, reason):
    journal, _, store, routing = world
    bad = routing_fact("JobseekerStatus", "bad")
    bad = Consumed(bad.source, {**bad.record, **change}, "RoutingFact")
    dead = FakeDeadLetters(journal)
    out = run(routing.route_batch([bad, newcomer()], dead))
    assert dead.reasons == [(bad.source, reason)] and out.routed == 1
    assert c.decode(store.rows[KEY].facts).empty and ADULT not in dead.sent[0][2]


def test_a_newcomer_that_cannot_be_routed_leaves_no_snapshot(world):
    journal, _, store, routing = world
    dead = FakeDeadLetters(journal)
    run(routing.route_batch([newcomer(municipality_code="92")], dead))
    assert dead.reasons == [("newcomer-msg", "invalid_field")] and store.rows == {}
    out = run(routing.route_batch([routing_fact("JobseekerStatus")], FakeDeadLetters(journal)))
    assert out.facts_kept == 1


class SlowCircumstances(MemoryCircumstances):
    """A write that waits for its database (on PostgreSQL a thread of its own) before it is done."""

    async def write(self, rows, now) -> None:
        self.journal.append(("circumstances_writing", sorted(rows)))
        await asyncio.sleep(0.01)
        await super().write(rows, now)


def test_circumstances_are_written_while_the_referrals_are_recorded_both_before_anything_is_published():
    journal: list = []
    publisher = FakePublisher(journal)
    routing = Routing(JournalLedger(journal), publisher, clock=Clock(), skew=dt.timedelta(minutes=5), topic_for=lambda a: f"referrals.{a}",
                      circumstances=SlowCircumstances(journal))
    out = run(routing.route_batch([newcomer()], FakeDeadLetters(journal)))
    assert out.published > 0
    steps = [e[0] for e in journal]
    # the ledger does not wait for the circumstances' write; nothing is sent before both are done
    assert steps.index("circumstances_writing") < steps.index("recorded") < steps.index("circumstances_written") < steps.index("sent")


def test_a_failed_circumstances_write_fails_the_batch_after_the_ledger_is_done_and_publishes_nothing():
    journal: list = []
    publisher = FakePublisher(journal)
    routing = Routing(JournalLedger(journal), publisher, clock=Clock(), skew=dt.timedelta(minutes=5), topic_for=lambda a: f"referrals.{a}",
                      circumstances=MemoryCircumstances(journal, fails=Outage("database unreachable")))
    msg = newcomer()
    with pytest.raises(Outage):
        run(routing.route_batch([msg], FakeDeadLetters(journal)))
    assert [e[0] for e in journal] == ["dead_letters_kept", "recorded"] and publisher.sent == []
    # read again: the referrals were recorded, not published, so they go out now
    routing.circumstances = MemoryCircumstances(journal)
    again = run(routing.route_batch([msg], FakeDeadLetters(journal)))
    assert again.duplicates == 1 and again.published > 0


def test_without_a_circumstances_store_a_fact_is_refused_and_newcomers_route_as_before():
    journal: list = []
    routing = Routing(JournalLedger(journal), FakePublisher(journal), clock=Clock(), skew=dt.timedelta(minutes=5), topic_for=lambda a: a)
    dead = FakeDeadLetters(journal)
    fact = routing_fact("JobseekerStatus")
    out = run(routing.route_batch([fact, newcomer()], dead))
    assert dead.reasons == [(fact.source, "unexpected_schema")] and made(out) == [("municipality:092", "outreach")]


@pytest.mark.skipif("previous_person_key" not in {f.name for f in dataclasses.fields(RoutingInput)},
                    reason="the Newcomer names no replaced person key in this version")
def test_after_an_identity_code_correction_the_facts_kept_under_the_old_key_are_used(world):
    journal, publisher, store, routing = world
    run(routing.route_batch([routing_fact("JobseekerStatus")], FakeDeadLetters(journal)))  # kept under the old code's key
    corrected = newcomer(person_key="pk-new", previous_person_key=KEY)
    out = run(routing.route_batch([corrected], FakeDeadLetters(journal)))
    assert EMPLOYMENT in made(out)
    assert c.decode(store.rows["pk-new"].facts).jobseeker.status == "registered"


def test_an_identity_code_correction_moves_the_facts_to_the_new_key_and_reissues_the_referrals_they_made(world):
    journal, publisher, store, routing = world
    first = run(routing.route_batch([newcomer(), routing_fact("JobseekerStatus")], FakeDeadLetters(journal)))
    [old] = [r for r in first.created if (r["to"], r["purpose"]) == EMPLOYMENT]
    out = run(routing.route_batch([newcomer(person_key="pk-new", previous_person_key=KEY)], FakeDeadLetters(journal)))
    [new] = [r for r in out.created if (r["to"], r["purpose"]) == EMPLOYMENT]  # the fact's referral, issued again under the new key
    assert new["person_key"] == "pk-new" and new["referral_id"] != old["referral_id"]
    [withdrawn] = [w for w in out.withdrawals if w["referral_id"] == old["referral_id"]]
    assert (withdrawn["cause"], withdrawn["replaced_by"]) == ("identity_corrected", new["referral_id"])
    # the facts moved: the new key holds them with the snapshot, the replaced key holds nothing
    assert c.decode(store.rows["pk-new"].facts).jobseeker.status == "registered" and store.rows["pk-new"].newcomer is not None
    assert c.decode(store.rows[KEY].facts) == c.Circumstances() and store.rows[KEY].newcomer is None
    # a late fact under the replaced code routes nobody again: it waits like a fact before its newcomer
    publisher.sent.clear()
    late = run(routing.route_batch([routing_fact("ResidencePermit", input_id="in-late", source="migri")], FakeDeadLetters(journal)))
    assert (late.facts_kept, late.facts_routed, publisher.sent) == (1, 0, [])
