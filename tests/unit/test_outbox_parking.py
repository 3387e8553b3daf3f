"""The outbox relay tells a row's own failure (parked with a reason, the rows after it go on) from an
outage (the flush stops, nothing is parked, the next flush resumes in order); plan requests wait
until the consents on hub.consents.v1 are applied. The producer is a fake that raises aiokafka's
own errors; the database is real (SQLite)."""

import asyncio
import datetime as dt

import pytest
from aiokafka import errors as kafka_errors

from hub import metrics
from hub.adapters import outbox
from hub.schemas.codec import default_codec
from hub.schemas import topics
from hub.schemas.envelope import cloudevent_headers, envelope
from hub.adapters.kafka.errors import unsendable_reason
from hub.streams.outbox_relay import OutboxRelay

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


class FakeProducer:
    """Sends, or raises `failures[value]` (an exception, or a list of them used one per attempt)."""

    def __init__(self):
        self.sent = []
        self.failures = {}

    async def send_and_wait(self, topic, value, key, **kw):
        failure = self.failures.get(value)
        if isinstance(failure, list):
            failure = failure.pop(0) if failure else None
        if failure is not None:
            raise failure
        self.sent.append((topic, value))


class FakePublisher:
    """What the relay uses of the hub's publisher."""

    def __init__(self):
        self.codec = default_codec()
        self.producer = FakeProducer()

    def producer_here(self):
        return self.producer

    async def ensure_exists(self, name):
        pass

    def signed(self, headers, value):
        return headers


class Consents:
    """Stands for ConsentsApplied: whether the consent consumers are done with hub.consents.v1."""

    def __init__(self, applied=True):
        self.applied = applied

    async def end_offsets(self):
        return {0: 1}

    async def applied_up_to(self, ends):
        return self.applied


def notice(to, text="revoked"):
    rec = envelope("hub:consent", occurred_at=T0)
    rec.update(notice_type="consent_revoked", to=to, person_key="k" * 32, consent_id="c1", assessment_id=None, message=text)
    return rec


def enqueue(sessions, topic, name, record):
    value = default_codec().encode(name, record)
    with sessions.begin() as s:
        row = outbox.enqueue(s, topic, name, record["event_id"], value, record.get("person_key"), cloudevent_headers(name, record), T0)
        return row.id, value


def state(sessions, row_id):
    with sessions() as s:
        row = s.get(outbox.OutboxMessage, row_id)
        return row.sent_at is not None, row.parked_reason


def too_large():
    return kafka_errors.MessageSizeTooLargeError("The message is 1200000 bytes when serialized which is larger than the maximum request size")


def test_the_rows_own_failures_are_told_from_outages():
    assert unsendable_reason(too_large()) == outbox.RECORD_TOO_LARGE
    assert unsendable_reason(kafka_errors.RecordListTooLargeError()) == outbox.RECORD_TOO_LARGE
    assert unsendable_reason(kafka_errors.CorruptRecordException()) == outbox.INVALID_RECORD
    assert unsendable_reason(kafka_errors.InvalidTopicError()) == outbox.INVALID_TOPIC
    for outage in (kafka_errors.KafkaConnectionError("no broker"), kafka_errors.KafkaTimeoutError(), kafka_errors.RequestTimedOutError(),
                   kafka_errors.NotLeaderForPartitionError(), kafka_errors.TopicAuthorizationFailedError(), asyncio.TimeoutError(),
                   ConnectionRefusedError(), RuntimeError("anything unknown")):
        assert unsendable_reason(outage) is None, outage


def test_a_too_large_row_is_parked_with_its_reason_and_the_rows_after_it_go_out(sessions):
    first, v1 = enqueue(sessions, topics.notice_topic("municipality:091"), "Notice", notice("municipality:091", "x" * 2000))
    second, v2 = enqueue(sessions, topics.notice_topic("wellbeing_area:04"), "Notice", notice("wellbeing_area:04"))
    third, v3 = enqueue(sessions, topics.notice_topic("municipality:091"), "Notice", notice("municipality:091"))
    publisher = FakePublisher()
    publisher.producer.failures[v1] = too_large()
    relay = OutboxRelay(publisher, sessions, consents=Consents())
    assert asyncio.run(relay.flush()) == 2
    assert publisher.producer.sent == [(topics.notice_topic("wellbeing_area:04"), v2), (topics.notice_topic("municipality:091"), v3)]
    assert state(sessions, first) == (False, outbox.RECORD_TOO_LARGE)
    assert state(sessions, second)[0] and state(sessions, third)[0]
    with sessions() as s:
        (row,) = outbox.parked(s)
        assert row.id == first and row.parked_detail.startswith("MessageSizeTooLargeError") and outbox.unsent_count(s) == 1
    assert metrics.REGISTRY.get_sample_value("hub_outbox_parked_messages", {"reason": "record_too_large"}) == 1
    assert asyncio.run(relay.flush()) == 0  # parked rows are not tried again ...
    # ... until an operator queues it again (`hub outbox retry`): it goes out first, the gauge drops
    with sessions.begin() as s:
        assert outbox.unpark(s, first) is not None
    publisher.producer.failures.clear()
    assert asyncio.run(relay.flush()) == 1 and state(sessions, first) == (True, None)
    assert metrics.REGISTRY.get_sample_value("hub_outbox_parked_messages", {"reason": "record_too_large"}) == 0


def test_an_outage_parks_nothing_and_the_next_flush_resumes_in_order(sessions):
    rows = [enqueue(sessions, topics.notice_topic(to), "Notice", notice(to)) for to in ("municipality:091", "wellbeing_area:04", "municipality:092")]
    publisher = FakePublisher()
    publisher.producer.failures[rows[1][1]] = [kafka_errors.KafkaConnectionError("Unable to bootstrap from 127.0.0.1:9092")]
    relay = OutboxRelay(publisher, sessions, consents=Consents())
    with pytest.raises(kafka_errors.KafkaConnectionError):
        asyncio.run(relay.flush())
    assert [v for _, v in publisher.producer.sent] == [rows[0][1]]  # stopped at the failing row: the third did not overtake it
    with sessions() as s:
        assert outbox.parked(s) == [] and outbox.unsent_count(s) == 2
    assert asyncio.run(relay.flush_or_log()) == 2  # the broker is back
    assert [v for _, v in publisher.producer.sent] == [v for _, v in rows]


def test_an_unencodable_row_is_parked_and_the_rows_after_it_go_out(sessions):
    bad, _ = enqueue(sessions, topics.notice_topic("municipality:091"), "Notice", notice("municipality:091"))
    good, v = enqueue(sessions, topics.notice_topic("municipality:091"), "Notice", notice("municipality:091"))
    with sessions.begin() as s:
        s.get(outbox.OutboxMessage, bad).headers = "not json"
    publisher = FakePublisher()
    assert asyncio.run(OutboxRelay(publisher, sessions, consents=Consents()).flush()) == 1
    assert state(sessions, bad) == (False, outbox.ENCODING_ERROR) and state(sessions, good) == (True, None)


def test_plan_requests_wait_for_the_consents_while_other_rows_go_out(sessions):
    import fastavro.utils

    plan = next(iter(fastavro.utils.generate_many(default_codec().parsed_schema("PlanRequest"), 1)))
    plan.update(envelope("hub:consent"), to="municipality:091")
    waiting, _ = enqueue(sessions, topics.plan_request_topic("municipality:091"), "PlanRequest", plan)
    after, v = enqueue(sessions, topics.notice_topic("municipality:091"), "Notice", notice("municipality:091"))
    publisher = FakePublisher()
    relay = OutboxRelay(publisher, sessions, consents=Consents(applied=False))
    assert asyncio.run(relay.flush()) == 1 and relay.waiting == 1
    assert state(sessions, waiting) == (False, None) and state(sessions, after) == (True, None)  # waits, is not parked


class SteadyConsents:
    """Consents keep arriving: every look at the end finds one more record, and the agents trail by one."""

    def __init__(self):
        self.end = 10

    async def end_offsets(self):
        self.end += 1
        return {0: self.end}

    async def applied_up_to(self, ends):
        return ends[0] <= self.end - 1  # applied: everything but the newest record


def test_steady_consent_traffic_does_not_hold_plan_requests_back_forever(sessions, monkeypatch):
    import fastavro.utils

    from hub.adapters import disclosure_check

    plan = next(iter(fastavro.utils.generate_many(default_codec().parsed_schema("PlanRequest"), 1)))
    plan.update(envelope("hub:consent"), to="municipality:091")
    row, _ = enqueue(sessions, topics.plan_request_topic("municipality:091"), "PlanRequest", plan)
    monkeypatch.setattr(disclosure_check.DisclosureCheck, "why_not", lambda self, plan: None)  # the consent rule has its own tests
    consents = SteadyConsents()
    relay = OutboxRelay(FakePublisher(), sessions, consents=consents)
    assert asyncio.run(relay.flush()) == 0  # the ends when the relay looked are not applied yet ...
    consents.end += 1  # ... more consents arrive, and the agents catch up with the ends seen before
    assert asyncio.run(relay.flush()) == 1 and state(sessions, row) == (True, None)
