"""Routing on the real broker and the real PostgreSQL: newcomers in, referrals out on per-recipient
topics (each recipient's consumer sees only its own), statuses update the ledger, duplicates
make no duplicate referrals, bad records go to dead letters."""

import asyncio
import datetime as dt
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from hub import metrics
from hub.adapters import database
from hub.adapters.referral_ledger import ReferralLedger
from hub.config import Settings
from hub.domain.hetu import make
from hub.schemas.codec import default_codec
from hub.streams.pipeline import hub_app
from hub.schemas.envelope import envelope
from hub.streams.routing_agents import register
from hub.streams.runner import running, wait_for
from hub.schemas.topics import referral_topic

pytestmark = pytest.mark.integration


async def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list:
    """Everything on `topic` as an independent consumer (a recipient's system) sees it."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                records += msgs
        for msgs in (await consumer.getmany(timeout_ms=1500)).values():  # anything extra, e.g. a duplicate
            records += msgs
    finally:
        await consumer.stop()
    return records


def newcomer(person_key, **fields):
    rec = envelope("hub:newcomer-detection", occurred_at=dt.datetime(2025, 6, 15, 9, tzinfo=dt.timezone.utc))
    rec.update(person_key=person_key, municipality_code="092")
    rec.update(fields)
    return rec


def test_newcomers_become_referrals_on_each_recipients_own_topic(kafka_url, database_url):
    database.upgrade(database_url)
    uid = uuid.uuid4().hex[:8]
    names = {"newcomers": f"test.{uid}.newcomers", "status": f"test.{uid}.referral-status"}

    def topic_for(authority):
        return f"test.{uid}.{referral_topic(authority)}"

    adult = make(dt.date(1990, 4, 1), 931)
    minor = make(dt.date(2010, 5, 5), 932)
    pk_adult, pk_minor = f"pk-adult-{uid}", f"pk-minor-{uid}"
    engine = database.create_engine(database_url)
    ledger = ReferralLedger(engine)
    codec = default_codec()
    before = metrics.referrals.labels("wellbeing_area:04", "unaccompanied_minor")._value.get()

    async def scenario():
        hub = hub_app(Settings(app_id=f"routing-test-{uid}"), kafka_url)
        seen = register(hub, ledger=ledger, newcomers_topic=names["newcomers"], status_topic=names["status"], topic_for=topic_for)
        async with running(hub):
            first = newcomer(pk_adult, person_id=adult, labour_force_status="unemployed_job_seeker", service_needs=["health"], arrival_date=dt.date(2025, 5, 1))
            await hub.publisher.publish(names["newcomers"], "Newcomer", first, key=pk_adult)
            await hub.publisher.publish(names["newcomers"], "Newcomer", first, key=pk_adult)  # delivered twice
            await hub.publisher.publish(
                names["newcomers"], "Newcomer", newcomer(pk_minor, person_id=minor, guardian_in_finland=False, turvakielto=True, arrival_date=dt.date(2025, 6, 1)), key=pk_minor
            )
            await hub.publisher.publish(names["newcomers"], "Newcomer", newcomer(f"pk-x-{uid}", municipality_code="999"), key="x")
            await hub.producer.send_and_wait(names["newcomers"], b"\x07not avro at all", b"garbage")
            await wait_for(lambda: sum(n for (t, _), n in seen.consumed.items() if t == names["newcomers"]) == 5, 60, "five newcomer records processed")
            assert seen.consumed[(names["newcomers"], "routed")] == 2
            assert seen.consumed[(names["newcomers"], "duplicate")] == 1
            assert seen.dead_letters["unknown_municipality"] == 1 and seen.dead_letters["wrong_magic"] == 1

            topics = {a: await read_topic(kafka_url.split("://", 1)[1], topic_for(a), n) for a, n in (("municipality:092", 3), ("wellbeing_area:04", 2), ("employment_authority:43", 1))}
            got = {a: [codec.decode(m.value, "Referral").record for m in msgs] for a, msgs in topics.items()}

            # each recipient's topic holds its own referrals only, each once, numbered without gaps
            for authority, records in got.items():
                assert {r["to"] for r in records} == {authority}
                assert len({r["referral_id"] for r in records}) == len(records)
                seqs = sorted(r["sequence"] for r in records)
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert sorted((r["person_key"], r["purpose"]) for r in got["municipality:092"]) == sorted(
                [(pk_adult, "outreach"), (pk_minor, "outreach"), (pk_minor, "initial_assessment")]
            )
            assert [(r["person_key"], r["purpose"]) for r in got["employment_authority:43"]] == [(pk_adult, "initial_assessment")]
            assert sorted((r["person_key"], r["purpose"]) for r in got["wellbeing_area:04"]) == sorted(
                [(pk_adult, "social_and_health_services"), (pk_minor, "unaccompanied_minor")]
            )
            assert all(m.key.decode() in (pk_adult, pk_minor) for msgs in topics.values() for m in msgs)  # keyed by person, never the code
            # turvakielto: the wellbeing area does not learn the home municipality; the municipality does
            uam = next(r for r in got["wellbeing_area:04"] if r["person_key"] == pk_minor)
            assert uam["turvakielto"] and uam["municipality_code"] is None and uam["decision_trace"] == ["withheld: turvakielto"]
            own = next(r for r in got["municipality:092"] if r["person_key"] == pk_minor)
            assert own["turvakielto"] and own["municipality_code"] == "092"
            assert next(r for r in got["employment_authority:43"])["person_id"] == adult  # for the recipient's task
            assert all(r["rules_version"] == "2025.1" and r["rule"] and r["reasons"] for rs in got.values() for r in rs)

            # statuses: the recipient's one is applied, idempotently; others are dead letters
            target = next(r for r in got["wellbeing_area:04"] if r["person_key"] == pk_adult)

            def status(authority, state, referral_id=target["referral_id"], reason=None):
                rec = envelope(authority)
                rec.update(referral_id=referral_id, authority=authority, status=state, reason=reason)
                return rec

            accepted = status("wellbeing_area:04", "accepted")
            await hub.publisher.publish(names["status"], "ReferralStatus", accepted, key=target["referral_id"])
            await hub.publisher.publish(names["status"], "ReferralStatus", accepted, key=target["referral_id"])
            await hub.publisher.publish(names["status"], "ReferralStatus", status("municipality:092", "declined", reason="not ours"), key=target["referral_id"])
            await hub.publisher.publish(names["status"], "ReferralStatus", status("wellbeing_area:04", "accepted", referral_id=str(uuid.uuid4())), key="nope")
            await hub.publisher.publish(names["status"], "ReferralStatus", status("wellbeing_area:04", "assessment_started"), key=target["referral_id"])
            await wait_for(lambda: sum(n for (t, _), n in seen.consumed.items() if t == names["status"]) == 5, 60, "five status records processed")
            assert seen.consumed[(names["status"], "applied")] == 2 and seen.consumed[(names["status"], "duplicate")] == 1
            assert seen.dead_letters["forbidden"] == 1 and seen.dead_letters["unknown_referral"] == 1
            assert seen.referrals == {"municipality:092": 3, "wellbeing_area:04": 2, "employment_authority:43": 1}

            # the adult moves from Vantaa to Kerava: Kerava and its employment area get referrals,
            # the shared wellbeing area (04) gets nothing twice, Vantaa's open referrals are superseded
            moved = dict(first, **envelope("hub:newcomer-detection", occurred_at=first["occurred_at"]))
            moved.update(change="moved", municipality_code="245", previous_municipality_code="092")
            await hub.publisher.publish(names["newcomers"], "Newcomer", moved, key=pk_adult)
            await wait_for(lambda: seen.consumed[(names["newcomers"], "routed")] == 3, 60, "the move processed")
            assert seen.referrals["municipality:245"] == 1 and seen.referrals["employment_authority:11"] == 1
            assert seen.referrals["wellbeing_area:04"] == 2
            kerava = await read_topic(kafka_url.split("://", 1)[1], topic_for("municipality:245"), 1)
            assert [(r["person_key"], r["purpose"]) for r in (codec.decode(m.value).record for m in kerava)] == [(pk_adult, "outreach")]
            vantaa_outreach = next(r for r in got["municipality:092"] if r["person_key"] == pk_adult)
            assert ledger.state(vantaa_outreach["referral_id"]) == "superseded"

        assert ledger.state(target["referral_id"]) == "assessment_started"
        assert [h[:2] for h in ledger.history(target["referral_id"])] == [("sent", "hub"), ("accepted", "wellbeing_area:04"), ("assessment_started", "wellbeing_area:04")]
        open_ids = {r.referral_id for r in ledger.open_referrals("wellbeing_area:04")}
        assert target["referral_id"] in open_ids
        assert metrics.referrals.labels("wellbeing_area:04", "unaccompanied_minor")._value.get() == before + 1
        assert metrics.open_referrals.labels("wellbeing_area:04")._value.get() >= 2

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


def test_a_slow_gauge_recount_does_not_hold_up_routing(kafka_url, database_url, monkeypatch):
    """The open/overdue refresh may wait (its daily step waits for the ledger's writers that count
    against the old day); it runs beside the ledger's writes, not before them: here a refresh that
    does not finish until the newcomer is routed (on the ledger's own thread it would never let it be)."""
    import threading

    from hub.streams import routing_agents

    database.upgrade(database_url)
    uid = uuid.uuid4().hex[:8]
    names = {"newcomers": f"test.{uid}.newcomers", "status": f"test.{uid}.referral-status"}
    recounting, routed = threading.Event(), threading.Event()

    def slow_recount(ledger, today, authorities=None):
        recounting.set()
        routed.wait(60)

    monkeypatch.setattr(routing_agents, "refresh_gauges", slow_recount)
    engine = database.create_engine(database_url)

    async def scenario():
        hub = hub_app(Settings(app_id=f"routing-gauges-{uid}"), kafka_url)
        seen = register(hub, ledger=ReferralLedger(engine), newcomers_topic=names["newcomers"], status_topic=names["status"],
                        topic_for=lambda a: f"test.{uid}.{referral_topic(a)}", gauge_interval=0.1)
        async with running(hub):
            try:
                await wait_for(recounting.is_set, 30, "the full recount to start")
                pk = f"pk-gauges-{uid}"
                await hub.publisher.publish(names["newcomers"], "Newcomer", newcomer(pk, labour_force_status="unemployed_job_seeker"), key=pk)
                await wait_for(lambda: seen.consumed[(names["newcomers"], "routed")] == 1, 30, "the newcomer routed while the recount runs")
                assert seen.published >= 1 and not routed.is_set()
            finally:
                routed.set()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
