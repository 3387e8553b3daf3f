"""Newcomer detection on the real broker and the real PostgreSQL (the persons' states): duplicates,
bad records, a restart in the middle, states across partitions."""

import asyncio
import datetime as dt

import pytest

from hub.adapters import database
from hub.adapters.person_states import SqlPersonStates
from hub.config import Settings
from hub.domain import hetu
from hub.schemas import topics
from hub.streams import newcomer_agents
from hub.streams.pipeline import hub_app
from hub.streams.runner import running, wait_for
from tests.kafka_helpers import decoded, produce, read_topic
from hub.newcomers.detection import decode_state
from tests.records import population_change as change
from tests.personal_data import clear_in_tables, digits_of, identity_code_in

pytestmark = pytest.mark.integration
SECRET = "test-secret"


@pytest.fixture
def states_url(own_database_url):
    """A migrated PostgreSQL database of this test's own: the states the detection agent keeps."""
    database.upgrade(own_database_url)
    return own_database_url


def stored_states(url: str, keys) -> dict:
    engine = database.create_engine(url)
    try:
        return SqlPersonStates(engine).get_many(keys)
    finally:
        engine.dispose()


def test_each_newcomer_exactly_once_across_duplicates_and_a_restart(fresh_kafka_url, states_url):
    people = [hetu.make(dt.date(1980 + i, 1, 1), 900 + i) for i in range(4)]
    first = [change(p) for p in people[:2]]
    moved = change(people[0], "move_in", "049", previous_municipality_code="091")
    second = [change(p) for p in people[2:]]
    settings = Settings(app_id="newcomer-it", person_key_secret=SECRET)

    async def phase(records, expect_consumed):
        hub = hub_app(settings, fresh_kafka_url)
        seen = newcomer_agents.register(hub, database_url=states_url)
        async with running(hub):
            for r in records:
                await hub.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", r, key=hetu.person_key(r["person_id"], SECRET))
            await wait_for(lambda: seen.consumed >= expect_consumed, 60, "detection to consume")
            await asyncio.sleep(1.5)  # let offsets be committed before the "crash"

    # first worker: two arrivals, one duplicated, and a garbage record
    async def first_phase():
        hub = hub_app(settings, fresh_kafka_url)
        seen = newcomer_agents.register(hub, database_url=states_url)
        async with running(hub):
            for r in first + [first[0]]:
                await hub.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", r, key=hetu.person_key(r["person_id"], SECRET))
            await hub.producer.send_and_wait(topics.POPULATION_CHANGES, b"\x00garbage", b"x")
            bad = change(people[0])
            bad["person_id"] = people[0][:-1] + ("A" if people[0][-1] != "A" else "B")
            await hub.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", bad, key=b"y")
            await wait_for(lambda: seen.consumed >= 5, 60, "the first worker to consume")
            await asyncio.sleep(1.5)

    asyncio.run(first_phase())
    # second worker (same group, states from the database): replays of the first, a move, two new
    asyncio.run(phase(first + [moved] + second, 5))

    out = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=5)))
    # exactly once by event id: a change processed again after a restart or rebalance (at-least-once
    # delivery) re-sends the
    # same newcomer under the same derived event id, which routing removes (processed_events)
    arrived = {r["event_id"]: r for r in out if r["change"] == "arrived"}
    assert sorted(r["person_id"] for r in arrived.values()) == sorted(people)
    assert all(r == arrived[r["event_id"]] | {"recorded_at": r["recorded_at"]} for r in out if r["change"] == "arrived")
    moved = {r["event_id"]: r for r in out if r["change"] == "moved"}
    assert [(r["change"], r["municipality_code"], r["previous_municipality_code"]) for r in moved.values()] == [("moved", "049", "091")]
    assert all(r["person_key"] == hetu.person_key(r["person_id"], SECRET) for r in out)

    dead = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=2)))
    assert sorted(d["reason"] for d in dead) == ["invalid_person_id", "unknown_schema_id"]
    assert any(d["original_value"] == b"\x00garbage" for d in dead)
    for d in dead:
        assert not identity_code_in(d["message"])


def test_states_are_in_the_database_and_an_identity_correction_finds_the_old_one_on_another_partition(fresh_kafka_url, states_url):
    """The persons' states are rows in the database, written once a batch's newcomers are acknowledged:
    a worker that takes over a partition has nothing to restore, and an identity-code correction
    finds the old code's state whichever partition it was written from (a faust table only sees the
    partitions this worker owns). Three partitions, 60 persons, then one person's code corrected."""
    settings = Settings(app_id="newcomer-partitions-it", person_key_secret=SECRET, topic_partitions=3)
    people = [hetu.make(dt.date(1960, 1, 1) + dt.timedelta(days=97 * i), 900 + i % 100) for i in range(60)]
    keys = [hetu.person_key(p, SECRET) for p in people]
    old = people[0]
    new = next(p for p in (hetu.make(dt.date(1960, 1, 1), n) for n in range(800, 900))
               if int(hetu.person_key(p, SECRET)[-4:], 16) % 3 != int(keys[0][-4:], 16) % 3)
    new_key = hetu.person_key(new, SECRET)
    correction = change(new, "move_in", "049", previous_municipality_code="091", previous_person_id=old)

    async def send(hub, record, key):
        await hub.producer.send_and_wait(topics.POPULATION_CHANGES, hub.codec.encode("PopulationChange", record), key.encode(),
                                         partition=int(key[-4:], 16) % 3)

    async def scenario():
        hub = hub_app(settings, fresh_kafka_url)
        seen = newcomer_agents.register(hub, database_url=states_url, batch_size=500)  # all 60 in few batches
        async with running(hub):
            for p, key in zip(people, keys):
                await send(hub, change(p), key)
            await wait_for(lambda: sum(seen.newcomers.values()) >= len(people), 60, "every newcomer")
            await send(hub, correction, new_key)
            await wait_for(lambda: seen.consumed >= len(people) + 1, 60, "the correction")
        return seen

    seen = asyncio.run(scenario())
    changes = asyncio.run(read_topic(fresh_kafka_url, topics.POPULATION_CHANGES, min_count=len(people) + 1))
    assert len({m.partition for m in changes}) == 3, "the changes are spread over the three partitions"
    states = stored_states(states_url, keys + [new_key])
    assert set(states) == set(keys[1:]) | {new_key}  # the old code's row went with the correction, found by the old code's key
    merged = decode_state(states[new_key], new)
    assert merged.newcomer and merged.municipality_code == "049" and merged.arrival_date == dt.date(2025, 2, 20)
    # the rows are keyed by the person key and hold no identity code: neither the code nor its digits
    engine = database.create_engine(states_url)
    try:
        assert clear_in_tables(engine, ["person_states"], [p for p in people + [new]] + [digits_of(p) for p in people + [new]]) == []
    finally:
        engine.dispose()
    assert sum(seen.newcomers.values()) == len(people) and seen.moved == 1  # the corrected person is the same newcomer, moved
    out = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=len(people) + 1)))
    assert [(r["change"], r["person_id"], r["municipality_code"]) for r in out if r["person_key"] == new_key] == [("moved", new, "049")]


def fail_newcomer_sends(hub, person_key: str, error, failed: list | None = None, times: int | None = None) -> None:
    """Make the send of `person_key`'s newcomers fail with `error()` (as the producer reports it: a failed
    future), `times` times (always when None); each failure is appended to `failed`."""
    publish = hub.publisher.publish
    failed = [] if failed is None else failed

    async def failing_publish(topic, name, record, key=None):
        if topic == topics.NEWCOMERS and key == person_key and (times is None or len(failed) < times):
            failed.append(key)
            future = asyncio.get_running_loop().create_future()
            future.set_exception(error())
            return future
        return await publish(topic, name, record, key)

    hub.publisher.publish = failing_publish


def test_a_newcomer_the_broker_refuses_dead_letters_that_persons_changes_of_the_batch(fresh_kafka_url, tmp_path):
    """In a batch, one person's newcomer is refused for its own sake (here: too large for the
    producer): that change and the person's later changes of the batch go to dead letters with their
    bytes (`unprocessable`, for replay) and the person's state is not written; the other persons of
    the batch are written and their newcomers published."""
    from aiokafka.errors import MessageSizeTooLargeError

    settings = Settings(app_id="newcomer-unacked-it", person_key_secret=SECRET)
    ok1, bad, ok2 = (hetu.make(dt.date(1970 + i, 2, 3), 950 + i) for i in range(3))
    bad_key = hetu.person_key(bad, SECRET)
    records = [change(ok1), change(bad), change(bad, "move_in", "049", previous_municipality_code="091"), change(ok2)]
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"  # the embedded default's database
    database.upgrade(url)

    async def scenario():
        hub = hub_app(settings, fresh_kafka_url)
        seen = newcomer_agents.register(hub, database_url=url, batch_size=100)  # the four in one batch (published before it starts)
        fail_newcomer_sends(hub, bad_key, lambda: MessageSizeTooLargeError("too large"))
        await produce(fresh_kafka_url, topics.POPULATION_CHANGES,
                      [(hetu.person_key(r["person_id"], SECRET).encode(), hub.codec.encode("PopulationChange", r)) for r in records])
        async with running(hub):
            await wait_for(lambda: seen.consumed >= 4 and seen.dead_letters >= 2, 60, "the batch")
            await asyncio.sleep(1.0)
            return seen

    seen = asyncio.run(scenario())
    states = stored_states(url, [bad_key, hetu.person_key(ok1, SECRET), hetu.person_key(ok2, SECRET)])
    assert set(states) == {hetu.person_key(ok1, SECRET), hetu.person_key(ok2, SECRET)}  # not the refused person's
    assert sum(seen.newcomers.values()) == 2 and seen.dead_letters == 2
    dead = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=2)))
    assert [d["reason"] for d in dead] == ["unprocessable", "unprocessable"]
    from hub.schemas.codec import default_codec

    assert [str(default_codec().decode(d["original_value"]).record["event_id"]) for d in dead] == [records[1]["event_id"], records[2]["event_id"]]
    out = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=2)))
    assert sorted(r["person_id"] for r in out) == sorted([ok1, ok2])


def test_a_newcomer_the_broker_does_not_acknowledge_reads_the_batch_again_and_nothing_is_dead_lettered(fresh_kafka_url, tmp_path):
    """A newcomer not acknowledged in time (HUB_KAFKA_PRODUCER_TIMEOUT: an outage, not the record's
    fault): nothing of the batch is written, the batch is read again and then every newcomer is
    published; no dead letter."""
    settings = Settings(app_id="newcomer-timeout-it", person_key_secret=SECRET)
    persons = [hetu.make(dt.date(1975 + i, 2, 3), 970 + i) for i in range(3)]
    late_key = hetu.person_key(persons[1], SECRET)
    records = [change(p) for p in persons]
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    database.upgrade(url)
    timeouts = []

    async def scenario():
        hub = hub_app(settings, fresh_kafka_url)
        seen = newcomer_agents.register(hub, database_url=url, batch_size=100)
        consumer = hub.batch_consumers[-1]
        fail_newcomer_sends(hub, late_key, lambda: TimeoutError("not acknowledged"), failed=timeouts, times=1)
        await produce(fresh_kafka_url, topics.POPULATION_CHANGES,
                      [(hetu.person_key(r["person_id"], SECRET).encode(), hub.codec.encode("PopulationChange", r)) for r in records])
        async with running(hub):
            await wait_for(lambda: sum(seen.newcomers.values()) >= 3, 60, "every newcomer after the batch was read again")
            return seen, consumer.retries

    seen, retries = asyncio.run(scenario())
    assert timeouts and retries == 1 and seen.dead_letters == 0
    assert set(stored_states(url, [hetu.person_key(p, SECRET) for p in persons])) == {hetu.person_key(p, SECRET) for p in persons}
    out = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=3)))
    assert {r["person_id"] for r in out} == set(persons)
    assert asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, timeout=2)) == []


def test_a_bug_on_one_change_dead_letters_that_change_and_the_batch_goes_on(fresh_kafka_url, tmp_path, monkeypatch):
    """Detection raising on one change (a bug) sends that change to dead letters (`internal_error`,
    the error's type named, its bytes kept for replay); the other changes of the same batch are
    detected, their states written and their newcomers published."""
    settings = Settings(app_id="newcomer-bug-it", person_key_secret=SECRET)
    ok1, bad, ok2 = (hetu.make(dt.date(1980 + i, 4, 5), 960 + i) for i in range(3))
    records = [change(ok1), change(bad), change(ok2)]
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    database.upgrade(url)
    from hub.services import detection as detection_service

    real_step = detection_service.step

    def buggy_step(record, *args, **kwargs):
        if record["person_id"] == bad:
            raise KeyError("a bug")
        return real_step(record, *args, **kwargs)

    monkeypatch.setattr(detection_service, "step", buggy_step)

    async def scenario():
        hub = hub_app(settings, fresh_kafka_url)
        seen = newcomer_agents.register(hub, database_url=url, batch_size=100)  # the three in one batch
        await produce(fresh_kafka_url, topics.POPULATION_CHANGES,
                      [(hetu.person_key(r["person_id"], SECRET).encode(), hub.codec.encode("PopulationChange", r)) for r in records])
        async with running(hub):
            await wait_for(lambda: seen.consumed >= 3 and sum(seen.newcomers.values()) >= 2, 60, "the batch")
            return seen

    seen = asyncio.run(scenario())
    assert seen.consumed == 3 and sum(seen.newcomers.values()) == 2
    keys = [hetu.person_key(p, SECRET) for p in (ok1, bad, ok2)]
    assert set(stored_states(url, keys)) == {keys[0], keys[2]}
    dead = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=1)))
    assert [(d["reason"], d["message"]) for d in dead] == [("internal_error", "newcomer detection failed with KeyError; the record is kept for replay after a fix")]
    from hub.schemas.codec import default_codec

    assert str(default_codec().decode(dead[0]["original_value"]).record["event_id"]) == records[1]["event_id"]
    out = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=2)))
    assert sorted(r["person_id"] for r in out) == sorted([ok1, ok2])
