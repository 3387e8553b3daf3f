"""The delivery service's consumer groups are the deployment's (`<app id>-webhooks.<subscription
id>`), and a group that reads the recipient's topics anew (renamed on an upgrade, another app id,
offsets expired) queues nothing twice and skips nothing: the queue keeps one row per subscription
and event id, and `hub retention` keeps delivered rows (without their bodies) for the replay
horizon. Real broker, real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from hub.adapters import database
from hub.adapters.kafka.admin import ensure_topics
from hub.adapters.kafka.producer import EventProducer
from hub.adapters.retention import run_retention
from hub.adapters.webhooks import DELIVERED, DeliveryWorker, WebhookStore, purge_delivered, recipient_topics
from hub.domain.clock import utcnow

from tests.integration.test_webhooks import referral, serving, until

pytestmark = pytest.mark.integration

RECIPIENT = "municipality:091"


def test_a_renamed_group_neither_redelivers_nor_skips(kafka_url, own_database_url):
    database.upgrade(own_database_url)
    uid = uuid.uuid4().hex[:8]

    def topics_for(recipient):
        return [f"test.{uid}.{topic}" for topic in recipient_topics(recipient)]

    ensure_topics(kafka_url, topics_for(RECIPIENT), 1)
    engine = database.create_engine(own_database_url)
    store = WebhookStore(engine)
    sub, _ = store.add(RECIPIENT, "https://receiver.example.fi/hook")
    posted: list[str] = []

    def sender(url, body, headers, timeout, allow_loopback):
        posted.append(headers["webhook-id"])
        return 204

    def worker(app_id: str) -> DeliveryWorker:
        return DeliveryWorker(store, kafka_url, app_id=app_id, topics_for=topics_for, sender=sender, refresh=0.2, fetch_wait_ms=200,
                              disclosure_check=lambda plan: None)

    sent = [referral(RECIPIENT, n) for n in (1, 2, 3)]

    async def publish(records):
        async with EventProducer(kafka_url) as producer:
            for rec in records:
                await producer.send_event(topics_for(RECIPIENT)[0], "Referral", rec, key="k")

    async def scenario():
        await publish(sent)
        old = worker(f"app-{uid}")
        async with serving(old):
            assert list(old._consumers.values())[0]._group_id == f"app-{uid}-webhooks.{sub.id}"
            await until(lambda: len(posted) == 3, "the first three")
        # `hub retention` a day later with a cut-off of an hour: past the cut-off, but the topic's records are within the
        # replay horizon (the default, the event logs' 30 days)
        with database.session_factory(engine).begin() as s:
            removed = run_retention(s, dt.timedelta(hours=1), utcnow() + dt.timedelta(days=1), "test")
        assert (removed["webhook_deliveries"], removed["webhook_attempts"]) == (0, 0)
        assert [d.body for d in store.deliveries(sub.id)] == ["", "", ""]  # the bodies are gone, the marks stay
        await publish([referral(RECIPIENT, 4)])
        new = worker(f"renamed-{uid}")  # a new group: no committed offsets, starts at the earliest record
        assert list(new._consumers.values()) == []
        async with serving(new):
            assert list(new._consumers.values())[0]._group_id == f"renamed-{uid}-webhooks.{sub.id}"
            # the new record comes after the old ones in the topic: once it is delivered, the group has read them all
            await until(lambda: len(posted) >= 4, "the new record")
            await asyncio.sleep(0.5)  # anything sent twice would be sent by now

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
    assert posted == [str(r["event_id"]) for r in sent] + [posted[-1]] and len(set(posted)) == 4
    assert [d.state for d in store.deliveries(sub.id)] == [DELIVERED] * 4


def test_retention_keeps_the_marks_within_the_replay_horizon_and_removes_them_after(own_database_url):
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    try:
        store = WebhookStore(engine)
        sub, _ = store.add(RECIPIENT, "https://receiver.example.fi/hook")
        now = utcnow()
        store.enqueue(sub.id, "e-1", "t", "Referral", b"{}", now - dt.timedelta(days=40))
        store.enqueue(sub.id, "e-2", "t", "Referral", b"{}", now - dt.timedelta(days=10))
        ids = {d.message_id: d.id for d in store.deliveries(sub.id)}
        store.record_attempt(ids["e-1"], now - dt.timedelta(days=40), 204, None)
        store.record_attempt(ids["e-2"], now - dt.timedelta(days=10), 204, None)
        with database.session_factory(engine).begin() as s:
            removed = purge_delivered(s, now - dt.timedelta(days=1), now - dt.timedelta(days=30))
        assert removed == {"webhook_deliveries": 1, "webhook_attempts": 1}
        assert [(d.message_id, d.body) for d in store.deliveries(sub.id)] == [("e-2", "")]
    finally:
        engine.dispose()
