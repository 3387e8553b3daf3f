"""The outbox relay sends each row to its topic; a notice committed by an earlier version to the
shared hub.notices.v1 (which no recipient could read) goes to its addressee's own notice topic."""

import asyncio
import datetime as dt

import sqlalchemy as sa

from hub.adapters import outbox
from hub.schemas.codec import default_codec
from hub.schemas import topics
from hub.schemas.envelope import cloudevent_headers, envelope
from hub.streams.outbox_relay import LEGACY_NOTICES, OutboxRelay

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


class FakeProducer:
    def __init__(self):
        self.sent = []

    async def send_and_wait(self, topic, value, key, **kw):
        self.sent.append((topic, key, value))


class FakePublisher:
    """What the relay uses of the hub's publisher: the codec, topic creation, the producer, signing."""

    def __init__(self):
        self.codec = default_codec()
        self.declared = []
        self.producer = FakeProducer()

    def producer_here(self):
        return self.producer

    async def ensure_exists(self, name):
        self.declared.append(name)

    def signed(self, headers, value):
        return headers


def notice(to):
    rec = envelope("hub:consent", occurred_at=T0)
    rec.update(notice_type="consent_revoked", to=to, person_key="k" * 32, consent_id="c1", assessment_id=None, message="revoked")
    return rec


def enqueue(sessions, topic, name, record):
    value = default_codec().encode(name, record)
    with sessions.begin() as s:
        outbox.enqueue(s, topic, name, record["event_id"], value, record.get("person_key"), cloudevent_headers(name, record), T0)
    return value


def test_rows_go_to_their_own_topic_and_old_shared_notices_to_the_addressees(sessions):
    new = enqueue(sessions, topics.notice_topic("municipality:091"), "Notice", notice("municipality:091"))
    old_a = enqueue(sessions, LEGACY_NOTICES, "Notice", notice("employment_authority:08"))
    old_b = enqueue(sessions, LEGACY_NOTICES, "Notice", notice("wellbeing_area:04"))
    publisher = FakePublisher()
    relay = OutboxRelay(publisher, sessions, consents=None)  # no plan request among the rows: consents are not asked
    assert asyncio.run(relay.flush()) == 3
    assert publisher.producer.sent == [
        (topics.notice_topic("municipality:091"), b"k" * 32, new),
        (topics.notice_topic("employment_authority:08"), b"k" * 32, old_a),  # in order, keyed as committed
        (topics.notice_topic("wellbeing_area:04"), b"k" * 32, old_b),
    ]
    assert LEGACY_NOTICES not in publisher.declared and all(t.startswith("hub.notices.") for t in publisher.declared)
    with sessions() as s:
        assert outbox.unsent_count(s) == 0
        assert {r.topic for r in s.scalars(sa.select(outbox.OutboxMessage))} == {topics.notice_topic("municipality:091"), LEGACY_NOTICES}
