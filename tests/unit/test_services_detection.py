"""Newcomer detection's use case (`hub.services.detection`) with fakes: newcomers are acknowledged
before the states are written; a change whose newcomer was refused is dead-lettered with the
person's later changes of the batch; an outage writes nothing; bad changes are dead-lettered and
the batch goes on."""

import asyncio
import datetime as dt

import pytest

from hub.domain import hetu
from hub.newcomers.detection import person_keys
from hub.schemas.codec import default_codec
from hub.services import detection as detection_module
from hub.services.detection import Detection
from hub.services.ports import Consumed
from tests.records import population_change
from tests.fakes import FAILURES, Clock, FakeDeadLetters, FakePublisher, MemoryStates, Outage, TooLarge

SECRET = "s"
codec = default_codec()
P1, P2, P3 = (hetu.make(dt.date(1970 + i, 2, 3), 950 + i) for i in range(3))


def key(pid: str) -> str:
    return hetu.person_key(pid, SECRET)


def change(pid: str, change_type: str = "immigration", muni: str = "091", **kw) -> dict:
    """A population change as the detection gets it: decoded from its wire form."""
    return codec.decode(codec.encode("PopulationChange", population_change(pid, change_type, muni, **kw))).record


def batch(*records) -> list[Consumed]:
    return [Consumed(f"m{i}", r) for i, r in enumerate(records)]


@pytest.fixture
def world():
    journal: list = []
    states = MemoryStates(journal)
    publisher = FakePublisher(journal)
    detection = Detection(states, publisher, FAILURES, person_key_secret=SECRET, clock=Clock(), skew=dt.timedelta(minutes=5))
    return journal, states, publisher, detection


def detect(detection, changes, dead):
    return asyncio.run(detection.detect(changes, dead))


def test_newcomers_are_published_and_acknowledged_before_the_states_are_written(world):
    journal, states, publisher, detection = world
    dead = FakeDeadLetters(journal)
    written = detect(detection, batch(change(P1), change(P2, muni="092")), dead)
    assert [(s.key, [e.change for e in s.found]) for s in written] == [(key(P1), ["arrived"]), (key(P2), ["arrived"])]
    assert [(topic, name, rec["person_id"], rec["municipality_code"], k) for topic, name, rec, k in publisher.sent] == [
        ("hub.newcomers.v1", "Newcomer", P1, "091", key(P1)), ("hub.newcomers.v1", "Newcomer", P2, "092", key(P2))]
    assert set(states.states) == {key(P1), key(P2)} and dead.sent == []
    assert [e[0] for e in journal] == ["sent", "sent", "acked", "acked", "states_written", "dead_letters_kept"]


def test_a_change_seen_again_finds_no_newcomer_and_the_derived_event_id_repeats(world):
    journal, states, publisher, detection = world
    first = change(P1)
    detect(detection, batch(first), FakeDeadLetters(journal))
    (newcomer,) = [rec for _, _, rec, _ in publisher.sent]
    again = detect(detection, batch(first), FakeDeadLetters(journal))
    assert [s.found for s in again] == [[]] and len(publisher.sent) == 1
    repeat = FakePublisher([])
    fresh = Detection(MemoryStates([]), repeat, FAILURES, person_key_secret=SECRET, clock=Clock(), skew=dt.timedelta(minutes=5))
    detect(fresh, batch(first), FakeDeadLetters([]))  # a crash before the state was written: detected again
    assert repeat.sent[0][2]["event_id"] == newcomer["event_id"]


def test_a_refused_newcomer_dead_letters_that_change_and_the_persons_later_changes_of_the_batch(world):
    journal, states, publisher, detection = world
    publisher.fails = lambda topic, rec, k: TooLarge("too large") if k == key(P2) else None
    dead = FakeDeadLetters(journal)
    records = batch(change(P1), change(P2), change(P2, "move_in", "049", previous_municipality_code="091"), change(P3))
    written = detect(detection, records, dead)
    assert [s.key for s in written] == [key(P1), key(P3)]
    assert dead.reasons == [("m1", "unprocessable"), ("m2", "unprocessable")]
    assert all("could not publish the newcomer (TooLarge)" in message for _, _, message in dead.sent)
    assert set(states.states) == {key(P1), key(P3)}  # not the refused person's


def test_a_refusal_covers_only_the_persons_changes_from_the_refused_one_on(world):
    journal, states, publisher, detection = world
    refused = []

    def fails(topic, rec, k):
        if k == key(P1) and rec["change"] == "moved":
            refused.append(rec)
            return TooLarge("too large")
        return None

    publisher.fails = fails
    dead = FakeDeadLetters(journal)
    records = batch(change(P1), change(P1, "move_in", "049", previous_municipality_code="091"))
    written = detect(detection, records, dead)
    assert refused and dead.reasons == [("m1", "unprocessable")]
    assert [s.key for s in written] == [key(P1)] and states.states[key(P1)] == written[0].state  # the arrival's state


def test_an_unacknowledged_newcomer_is_an_outage_nothing_is_written_nor_dead_lettered(world):
    journal, states, publisher, detection = world
    publisher.fails = lambda topic, rec, k: TimeoutError("not acknowledged") if k == key(P2) else None
    dead = FakeDeadLetters(journal)
    with pytest.raises(TimeoutError):
        detect(detection, batch(change(P1), change(P2)), dead)
    assert states.states == {} and dead.sent == []


def test_invalid_changes_and_a_bug_on_one_change_are_dead_lettered_and_the_batch_goes_on(world, monkeypatch):
    journal, states, publisher, detection = world
    real_step = detection_module.step

    def buggy_step(record, *args, **kwargs):
        if record["person_id"] == P3:
            raise KeyError("a bug")
        return real_step(record, *args, **kwargs)

    monkeypatch.setattr(detection_module, "step", buggy_step)
    dead = FakeDeadLetters(journal)
    records = batch(change(P1, muni="999"), change(P2), change(P3), change(P1, occurred_at=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)))
    written = detect(detection, records, dead)
    assert [s.key for s in written] == [key(P2)] and set(states.states) == {key(P2)}
    assert dead.reasons == [("m0", "unknown_municipality"), ("m3", "future_date"), ("m2", "internal_error")]
    assert dead.sent[2][2] == "newcomer detection failed with KeyError; the record is kept for replay after a fix"


def test_a_send_the_producer_refuses_at_once_dead_letters_the_change_only(world):
    journal, states, publisher, detection = world
    publisher.refuses = lambda topic, rec, k: TooLarge("too large") if k == key(P1) else None
    dead = FakeDeadLetters(journal)
    written = detect(detection, batch(change(P1), change(P2)), dead)
    assert [s.key for s in written] == [key(P2)] and dead.reasons == [("m0", "unprocessable")]


def test_an_outage_of_the_states_or_of_a_dead_letter_leaves_the_batch_to_be_read_again(world):
    journal, states, publisher, detection = world
    states.fails = Outage("database gone")
    with pytest.raises(Outage):
        detect(detection, batch(change(P1)), FakeDeadLetters(journal))
    states.fails = None
    dead = FakeDeadLetters(journal, fails=Outage("dead letter not kept"))
    with pytest.raises(Outage):
        detect(detection, batch(change(P1, muni="999"), change(P2)), dead)


def test_an_identity_code_correction_moves_the_state_to_the_new_key(world):
    journal, states, publisher, detection = world
    detect(detection, batch(change(P1)), FakeDeadLetters(journal))
    corrected = change(P2, "identity_correction", previous_person_id=P1)
    (done,) = detect(detection, batch(corrected), FakeDeadLetters(journal))
    assert person_keys(corrected, SECRET) == (key(P2), key(P1)) and done.old_key == key(P1)
    assert set(states.states) == {key(P2)}
