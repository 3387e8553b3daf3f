"""The subscribers' side on the real broker and PostgreSQL, with clients we did not write:
confluent-kafka (librdkafka) + its AvroDeserializer against `hub registry`, the CloudEvents SDK's
Kafka binding; replay makes no duplicate referrals; resend fills a subscriber's gap."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from hub.adapters import database
from hub.adapters.referral_ledger import ReferralLedger
from hub.adapters.registry_server import serving
from hub.adapters.replay import REPLAY_HEADER, Range, replay
from hub.adapters.resend import gaps, resend
from hub.config import Settings
from hub.domain.hetu import make
from hub.schemas.codec import default_codec
from hub.streams.pipeline import hub_app
from hub.schemas.envelope import envelope
from hub.streams.routing_agents import register
from hub.streams.runner import running, wait_for
from hub.schemas.topics import referral_topic
from tests.kafka_helpers import bootstrap, read_topic, run

pytestmark = pytest.mark.integration

MUNICIPALITY = "municipality:092"


def newcomer(person_key, person_id, **fields):
    rec = envelope("hub:newcomer-detection", occurred_at=dt.datetime(2025, 6, 15, 9, tzinfo=dt.timezone.utc))
    rec.update(person_key=person_key, person_id=person_id, municipality_code="092", arrival_date=dt.date(2025, 6, 1))
    rec.update(fields)
    return rec


@pytest.fixture(scope="module")
def routed(kafka_url, database_url):
    """Five newcomers routed by the real routing agent; then the newcomers topic replayed in full."""
    database.upgrade(database_url)
    uid = uuid.uuid4().hex[:8]
    newcomers_topic = f"test.{uid}.newcomers"

    def topic_for(authority):
        return f"test.{uid}.{referral_topic(authority)}"

    engine = database.create_engine(database_url)
    ledger = ReferralLedger(engine)
    people = [(f"pk-{uid}-{i}", make(dt.date(1990, 1, 1 + i), 930 + i)) for i in range(5)]
    out = {"uid": uid, "topic_for": topic_for, "ledger": ledger, "newcomers_topic": newcomers_topic, "people": people}

    async def scenario():
        hub = hub_app(Settings(app_id=f"subscribers-test-{uid}"), kafka_url)
        seen = register(hub, ledger=ledger, newcomers_topic=newcomers_topic, status_topic=f"test.{uid}.status", topic_for=topic_for)
        async with running(hub):
            for i, (pk, hetu) in enumerate(people):
                extra = {"labour_force_status": "unemployed_job_seeker", "service_needs": ["health"]} if i == 0 else {}
                await hub.publisher.publish(newcomers_topic, "Newcomer", newcomer(pk, hetu, contact_language="en", **extra), key=pk)
            await wait_for(lambda: seen.consumed[(newcomers_topic, "routed")] == 5, 60, "five newcomers routed")
            out["referrals_before_replay"] = ledger.count()
            out["expected"] = sum(1 for r in ledger.open_referrals(MUNICIPALITY) if r.referral_id in _ids(ledger, people))
            result = await replay(kafka_url, newcomers_topic, Range(from_offset=0))
            out["replayed"] = result
            await wait_for(lambda: seen.consumed[(newcomers_topic, "duplicate")] == 5, 60, "the replayed newcomers processed")
        out["seen"] = seen

    try:
        asyncio.run(scenario())
        yield out
    finally:
        engine.dispose()


def _ids(ledger, people):
    import sqlalchemy as sa

    from hub.adapters.referral_ledger import ReferralRow

    with ledger.Session() as s:
        return set(s.scalars(sa.select(ReferralRow.referral_id).where(ReferralRow.person_key.in_([pk for pk, _ in people]))))


def test_replay_of_newcomers_makes_no_duplicate_referrals(routed, kafka_url):
    assert routed["replayed"].republished == 5 and routed["replayed"].ranges == {0: (0, 4)}
    assert routed["ledger"].count() == routed["referrals_before_replay"]
    n = routed["expected"]
    records = run(read_topic(kafka_url, routed["topic_for"](MUNICIPALITY), min_count=n))
    decoded = [default_codec().decode(m.value).record for m in records]
    assert len(decoded) == n and len({r["referral_id"] for r in decoded}) == n
    seqs = sorted(r["sequence"] for r in decoded)
    assert seqs == list(range(seqs[0], seqs[0] + n))  # numbered without gaps or repeats
    # the replayed newcomers carry where they came from
    newcomers = run(read_topic(kafka_url, routed["newcomers_topic"], min_count=10))
    assert [dict(m.headers).get(REPLAY_HEADER) for m in newcomers[5:]] == [f"{routed['newcomers_topic']}/0/{i}".encode() for i in range(5)]
    assert [dict(m.headers)["ce_id"] for m in newcomers[5:]] == [dict(m.headers)["ce_id"] for m in newcomers[:5]]


def test_confluent_kafka_consumer_reads_referrals_through_the_registry_endpoint(routed, kafka_url):
    from confluent_kafka import Consumer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic = routed["topic_for"](MUNICIPALITY)
    expected = {r["referral_id"]: r for r in (default_codec().decode(m.value).record for m in run(read_topic(kafka_url, topic, min_count=routed["expected"])))}
    with serving() as registry_url:
        deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
        consumer = Consumer({"bootstrap.servers": bootstrap(kafka_url), "group.id": f"subscriber-{routed['uid']}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        got = []
        try:
            for _ in range(120):
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    if len(got) >= len(expected):
                        break
                    continue
                got.append(deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE)))
        finally:
            consumer.close()
    assert len(got) == len(expected) == routed["expected"]
    for record in got:
        ours = expected[record["referral_id"]]
        assert set(record) == set(ours)
        for name, value in ours.items():
            assert _plain(record[name]) == _plain(value), name
    assert {r["to"] for r in got} == {MUNICIPALITY}
    assert {r["person_id"] for r in got} == {hetu for _, hetu in routed["people"]}  # for the recipient's task


def _plain(value):
    """uuid logical types come back as uuid.UUID or text depending on the reader: compare as text."""
    return str(value) if isinstance(value, uuid.UUID) else value


def test_cloudevents_sdk_reads_hub_records(routed, kafka_url):
    from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
    from cloudevents.core.formats.json import JSONFormat

    records = run(read_topic(kafka_url, routed["topic_for"](MUNICIPALITY), min_count=routed["expected"]))
    codec = default_codec()
    for m in records:
        event = from_binary(KafkaMessage(headers=dict(m.headers), key=m.key, value=m.value), JSONFormat())  # Avro data stays bytes
        body = codec.decode(m.value, "Referral").record
        assert event.get_id() == str(body["event_id"])
        assert event.get_type() == "fi.integrationhub.Referral.v1"
        assert event.get_source() == "/hub/routing"  # the record's source hub:routing as a URI-reference
        assert event.get_specversion() == "1.0"
        assert event.get_time() == body["occurred_at"]
        assert event.get_datacontenttype() == "application/avro"
        assert event.get_data() == m.value
        assert event.get_extension("partitionkey") == body["person_key"]


def test_resend_fills_a_subscribers_gap(routed, kafka_url):
    """A subscriber keeps referrals by sequence; one is lost; it sees the gap and asks for a resend."""
    topic = routed["topic_for"](MUNICIPALITY)
    codec = default_codec()
    received = {}
    before = run(read_topic(kafka_url, topic, min_count=routed["expected"]))
    for m in before:
        record = codec.decode(m.value).record
        received[record["sequence"]] = record
    lost = sorted(received)[2]
    del received[lost]  # the subscriber's store lost one consumed record
    assert gaps(received, first=min(received)) == [(lost, lost)]

    sent = run(resend(routed["ledger"], kafka_url, MUNICIPALITY, lost, topic_for=routed["topic_for"]))
    assert sent == sorted(s for s in [*received, lost] if s >= lost)

    seen_positions = {(m.partition, m.offset) for m in before}
    after = run(read_topic(kafka_url, topic, min_count=len(before) + len(sent)))
    again = [codec.decode(m.value).record for m in after if (m.partition, m.offset) not in seen_positions]
    assert sorted(r["sequence"] for r in again) == sent
    for record in again:
        if record["sequence"] not in received:
            received[record["sequence"]] = record
        else:
            assert record["event_id"] == received[record["sequence"]]["event_id"]  # a repeat, recognisable
    assert gaps(received, first=min(received)) == []
    refilled = received[lost]
    assert refilled["to"] == MUNICIPALITY and refilled["person_id"] is None  # the ledger keeps no identity codes
