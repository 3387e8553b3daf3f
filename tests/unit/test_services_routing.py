"""The routing use cases (`hub.services.routing`) with fakes: a batch of newcomers becomes referrals
published after the ledger recorded them and marked published only after every acknowledgement;
duplicates create nothing; referral statuses are applied or refused with a reason code."""

import asyncio
import datetime as dt

import pytest

from hub.domain import hetu
from hub.schemas.codec import default_codec
from hub.services.ports import Consumed
from hub.services.routing import Routing
from hub.schemas.envelope import envelope
from tests.fakes import T0, Clock, FakeDeadLetters, FakePublisher, JournalLedger, Outage

codec = default_codec()
ADULT = hetu.make(dt.date(1990, 4, 1), 931)


def decoded(name: str, rec: dict) -> dict:
    return codec.decode(codec.encode(name, rec)).record


def newcomer(person_key: str, **fields) -> dict:
    rec = envelope("hub:newcomer-detection", occurred_at=T0 - dt.timedelta(days=5))
    rec.update(person_key=person_key, person_id=ADULT, municipality_code="092", labour_force_status="unemployed_job_seeker")
    rec.update(fields)
    return decoded("Newcomer", rec)


def status(referral: dict, state: str, **fields) -> dict:
    rec = envelope(referral["to"], occurred_at=T0 - dt.timedelta(hours=1))
    rec.update(referral_id=referral["referral_id"], authority=referral["to"], status=state, reason=None)
    rec.update(fields)
    return decoded("ReferralStatus", rec)


@pytest.fixture
def world():
    journal: list = []
    publisher = FakePublisher(journal)
    ledger = JournalLedger(journal)
    routing = Routing(ledger, publisher, clock=Clock(), skew=dt.timedelta(minutes=5), topic_for=lambda a: f"referrals.{a}")
    return journal, publisher, ledger, routing


def run(coro):
    return asyncio.run(coro)


def test_a_batch_is_recorded_then_published_and_marked_published_only_after_every_acknowledgement(world):
    journal, publisher, _, routing = world
    dead = FakeDeadLetters(journal)
    out = run(routing.route_batch([Consumed("m0", newcomer("pk-a")), Consumed("m1", newcomer("pk-b", municipality_code="091"))], dead))
    assert (out.routed, out.duplicates, out.published) == (2, 0, 4) and dead.sent == []
    assert sorted((r["to"], r["purpose"]) for r in out.created) == [
        ("employment_authority:08", "initial_assessment"), ("employment_authority:43", "initial_assessment"),
        ("municipality:091", "outreach"), ("municipality:092", "outreach")]
    assert out.changed == {r["to"] for r in out.created} and out.waits == [5 * 86400.0] * 2
    sent = [(topic, name, rec["to"], rec["person_id"], key) for topic, name, rec, key in publisher.sent]
    assert all(topic == f"referrals.{to}" and name == "Referral" and pid == ADULT for topic, name, to, pid, _ in sent)  # the identity code travels from the newcomer
    assert sorted(key for *_, key in sent) == ["pk-a", "pk-a", "pk-b", "pk-b"]
    steps = [e[0] for e in journal]
    assert steps == ["dead_letters_kept", "recorded"] + ["sent"] * 4 + ["acked"] * 4 + ["marked_published"]
    assert sorted(journal[-1][1]) == sorted(rec["referral_id"] for _, _, rec, _ in publisher.sent)


def test_a_newcomer_seen_before_is_a_duplicate_and_publishes_nothing(world):
    journal, publisher, _, routing = world
    first = newcomer("pk-a")
    run(routing.route_batch([Consumed("m0", first)], FakeDeadLetters(journal)))
    publisher.sent.clear()
    again = run(routing.route_batch([Consumed("m0", first)], FakeDeadLetters(journal)))
    assert (again.routed, again.duplicates, again.published, again.created, again.changed) == (1, 1, 0, [], set())
    assert publisher.sent == []
    both = run(routing.route_batch([Consumed("m1", newcomer("pk-b")), Consumed("m1", first)], FakeDeadLetters(journal)))
    assert (both.routed, both.duplicates) == (2, 1)


def test_an_unacknowledged_referral_is_not_marked_published_and_the_retry_sends_it_again(world):
    journal, publisher, ledger, routing = world
    publisher.fails = lambda topic, rec, key: Outage("broker gone") if rec["to"] == "municipality:092" else None
    item = Consumed("m0", newcomer("pk-a"))
    with pytest.raises(Outage):
        run(routing.route_batch([item], FakeDeadLetters(journal)))
    assert "marked_published" not in [e[0] for e in journal]
    failed = {rec["referral_id"] for _, _, rec, _ in publisher.sent}
    publisher.fails = lambda topic, rec, key: None
    publisher.sent.clear()
    retry = run(routing.route_batch([item], FakeDeadLetters(journal)))  # the batch read again: a duplicate whose referrals are still unpublished
    assert retry.duplicates == 1 and {rec["referral_id"] for _, _, rec, _ in publisher.sent} == failed
    assert sorted(journal[-1][1]) == sorted(failed)
    publisher.sent.clear()
    run(routing.route_batch([item], FakeDeadLetters(journal)))
    assert publisher.sent == []


def test_newcomers_the_engine_cannot_route_are_dead_lettered_before_the_batch_is_recorded(world):
    journal, publisher, _, routing = world
    dead = FakeDeadLetters(journal)
    items = [Consumed("no-key", newcomer("")), Consumed("future", newcomer("pk-f", occurred_at=T0 + dt.timedelta(days=1))),
             Consumed("unknown", newcomer("pk-u", municipality_code="999")), Consumed("ok", newcomer("pk-ok"))]
    out = run(routing.route_batch(items, dead))
    assert dead.reasons == [("no-key", "missing_person_key"), ("future", "future_date"), ("unknown", "unknown_municipality")]
    assert out.routed == 1 and {key for *_, key in publisher.sent} == {"pk-ok"}
    steps = [e[0] for e in journal]
    assert steps.index("dead_letters_kept") < steps.index("recorded")


def test_a_batch_of_dead_letters_only_records_nothing(world):
    journal, _, _, routing = world
    out = run(routing.route_batch([Consumed("no-key", newcomer(""))], FakeDeadLetters(journal)))
    assert out.routed == 0 and "recorded" not in [e[0] for e in journal]


def test_statuses_are_applied_or_refused_with_a_reason_and_name_the_authority_whose_counts_changed(world):
    journal, publisher, _, routing = world
    run(routing.route_batch([Consumed("m0", newcomer("pk-a"))], FakeDeadLetters(journal)))
    assessment = next(rec for _, _, rec, _ in publisher.sent if rec["purpose"] == "initial_assessment")
    dead = FakeDeadLetters(journal)
    accepted = status(assessment, "accepted")
    applied = run(routing.apply_status(Consumed("s0", accepted), dead))
    assert (applied.code, applied.accepted, applied.changed, applied.assessment_seconds) == ("applied", True, assessment["to"], None)
    again = run(routing.apply_status(Consumed("s1", accepted), dead))
    assert (again.code, again.accepted, again.changed) == ("duplicate", True, None)
    routing.clock.now = T0 + dt.timedelta(days=2)
    completed = run(routing.apply_status(Consumed("s2", status(assessment, "completed", occurred_at=T0 + dt.timedelta(days=1))), dead))
    assert (completed.code, completed.assessment_seconds) == ("applied", 86400.0)  # from the referral (recorded at T0) to the completion
    unknown = dict(accepted, referral_id="00000000-0000-4000-8000-000000000000", event_id="00000000-0000-4000-8000-000000000001")
    other = dict(accepted, authority="municipality:091", event_id="00000000-0000-4000-8000-000000000002")
    future = dict(accepted, occurred_at=T0 + dt.timedelta(days=10), event_id="00000000-0000-4000-8000-000000000003")
    refused = [run(routing.apply_status(Consumed(name, rec), dead)) for name, rec in (("unknown", unknown), ("other", other), ("future", future))]
    assert [(r.code, r.accepted, r.changed) for r in refused] == [("unknown_referral", False, None), ("forbidden", False, None),
                                                                  ("future_date", False, None)]
    assert dead.reasons == [("unknown", "unknown_referral"), ("other", "forbidden"), ("future", "future_date")]
    assert all(message for _, _, message in dead.sent)


def test_a_superseded_referral_is_withdrawn_on_its_old_recipients_topic_after_the_referrals(world):
    journal, publisher, ledger, routing = world
    run(routing.route_batch([Consumed("m0", newcomer("pk-a", municipality_code="091"))], FakeDeadLetters(journal)))
    first = {rec["to"]: rec for _, name, rec, _ in publisher.sent}
    publisher.sent.clear()
    journal.clear()
    moved = newcomer("pk-a", change="moved", municipality_code="049", previous_municipality_code="091")
    out = run(routing.route_batch([Consumed("m1", moved)], FakeDeadLetters(journal)))
    names = [name for _, name, _, _ in publisher.sent]
    assert names == ["Referral"] * out.published + ["ReferralWithdrawn"] * out.withdrawn and out.withdrawn >= 1
    withdrawals = [(topic, rec, key) for topic, name, rec, key in publisher.sent if name == "ReferralWithdrawn"]
    topic, rec, key = next(w for w in withdrawals if w[1]["to"] == "municipality:091")
    assert topic == "referrals.municipality:091" and key == "pk-a" and rec["referral_id"] == first["municipality:091"]["referral_id"]
    assert rec["sequence"] == first["municipality:091"]["sequence"] + 1 and rec["reason"] == "moved to municipality 049"
    assert "municipality:091" in out.changed and [w["referral_id"] for w in out.withdrawals] == [rec["referral_id"] for _, rec, _ in withdrawals]
    steps = [e[0] for e in journal]
    assert steps[-1] == "marked_published" and steps.index("marked_published") > max(i for i, s in enumerate(steps) if s == "acked")
    assert str(rec["event_id"]) in journal[-1][1]  # the withdrawal is marked published only after its acknowledgement
    assert ledger.ledger.published_from("municipality:091", 1)[-1][0] == "ReferralWithdrawn"
    again = run(routing.route_batch([Consumed("m1", moved)], FakeDeadLetters(journal)))  # a redelivery withdraws nothing more
    assert again.duplicates == 1 and again.withdrawals == [] and again.withdrawn == 0
