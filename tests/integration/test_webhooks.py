"""Webhook delivery on the real broker and PostgreSQL, to a real local HTTP server that answers
500 for a while, times out once, then accepts: every record arrives once from the receiver's point
of view (it drops repeats by webhook-id), in order, with signatures the standardwebhooks library
verifies; a recipient gets only its own records (referrals, plan requests and consent notices,
from the topics `recipient_topics` names); after the last attempt a delivery is parked and
`redeliver` sends it again."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastavro.utils
import pytest
from standardwebhooks.webhooks import Webhook

from hub.adapters import database
from hub.adapters.kafka.admin import ensure_topics
from hub.adapters.kafka.producer import EventProducer
from hub.adapters.webhooks import DELIVERED, PARKED, PENDING, DeliveryWorker, WebhookStore, recipient_topics
from hub.schemas.codec import default_codec
from hub.schemas.envelope import envelope
from hub.schemas.topics import notice_topic, plan_request_topic, referral_topic

pytestmark = pytest.mark.integration

RECIPIENT, OTHER = "wellbeing_area:04", "wellbeing_area:05"


class Receiver:
    """A subscriber's endpoint: answers from a script, then 200; verifies and dedupes like a real one."""

    def __init__(self, secret: str, script: list):
        self.verifier = Webhook(secret)
        self.script = list(script)
        self.requests = 0
        self.accepted: list[dict] = []  # unique by webhook-id, in arrival order
        self.seen_ids: set[str] = set()
        self.bad_signatures = 0
        self.lock = threading.Lock()

    def handle(self, headers: dict, body: bytes) -> tuple[int, float]:
        with self.lock:
            self.requests += 1
            action = self.script.pop(0) if self.script else 200
        try:
            self.verifier.verify(body, headers)
        except Exception:
            with self.lock:
                self.bad_signatures += 1
            return 400, 0
        if action == "timeout":
            status, delay = 200, 1.5  # it is processed, but the answer comes too late for the hub
        else:
            status, delay = action, 0
        if status == 200:
            with self.lock:
                if headers["webhook-id"] not in self.seen_ids:  # a redelivery is recognised by its id
                    self.seen_ids.add(headers["webhook-id"])
                    self.accepted.append(json.loads(body))
        return status, delay


def serve(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, delay = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the hub gave up waiting

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.asynccontextmanager
async def serving(worker: DeliveryWorker, ready_within: float = 60):
    """The production service, `worker.run()`, as a task while the block runs (once every lane's
    consumer has its partitions); stopped as SIGTERM stops it, and it must stop cleanly."""
    stop = asyncio.Event()
    service = asyncio.create_task(worker.run(stop))
    try:
        deadline = time.monotonic() + ready_within
        while not worker.ready():
            assert not service.done(), service.exception() if not service.cancelled() else "cancelled"
            assert time.monotonic() < deadline, "the lanes never started"
            await asyncio.sleep(0.05)
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)  # raises what the service raised


async def until(condition, what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


def referral(recipient: str, sequence: int) -> dict:
    rec = envelope("hub:routing")
    rec.update(referral_id=f"r-{uuid.uuid4().hex[:8]}", to=recipient, purpose="outreach", person_key=f"pk-{sequence}", reasons=["arrived"],
               rule="outreach", rules_version="2025.1", sequence=sequence)
    return rec


def plan_request() -> dict:
    codec = default_codec()
    rec = next(iter(fastavro.utils.generate_many(codec.parsed_schema("PlanRequest"), 1)))
    rec.update(envelope("hub:consent"))
    return rec


def notice(recipient: str) -> dict:
    rec = envelope("hub:consent")
    rec.update(notice_type="consent_revoked", to=recipient, person_key="pk-1", consent_id="c-1", assessment_id=None,
               message="consent c-1 was revoked: do not use the data received under it")
    return rec


def test_a_recipient_subscription_covers_its_referrals_plan_requests_and_notices():
    assert recipient_topics(RECIPIENT) == [referral_topic(RECIPIENT), plan_request_topic(RECIPIENT), notice_topic(RECIPIENT)]
    assert not set(recipient_topics(RECIPIENT)) & set(recipient_topics(OTHER))


def test_webhook_delivery_retries_parks_and_redelivers(kafka_url, database_url):
    database.upgrade(database_url)
    uid = uuid.uuid4().hex[:8]

    def topics_for(recipient):  # the hub's own choice of topics, in a namespace of this test
        return [f"test.{uid}.{topic}" for topic in recipient_topics(recipient)]

    kind_index = {"Referral": 0, "PlanRequest": 1, "Notice": 2}

    ensure_topics(kafka_url, topics_for(RECIPIENT) + topics_for(OTHER), 1)
    engine = database.create_engine(database_url)
    store = WebhookStore(engine, allow_loopback=True)  # the receiver is on 127.0.0.1 (HUB_WEBHOOKS_ALLOW_LOOPBACK)
    with pytest.raises(ValueError, match="https"):
        store.add(RECIPIENT, "http://receiver.example.fi/hook")
    sub, secret = store.add(RECIPIENT, "http://127.0.0.1:1/placeholder")
    receiver = Receiver(secret, [500, 500, "timeout"])
    server = serve(receiver)
    store.disable(sub.id)
    sub, secret = store.add(RECIPIENT, f"http://127.0.0.1:{server.server_address[1]}/hook", secret=secret)
    sent = [referral(RECIPIENT, 1), referral(RECIPIENT, 2), plan_request(), notice(RECIPIENT), referral(RECIPIENT, 3)]

    async def scenario():
        async with EventProducer(kafka_url) as producer:
            for rec in sent:
                name = "Referral" if "referral_id" in rec else "Notice" if "notice_type" in rec else "PlanRequest"
                await producer.send_event(topics_for(RECIPIENT)[kind_index[name]], name, rec, key="k")
                await producer.flush()
                await asyncio.sleep(0.01)  # distinct timestamps: the queue order is the publish order
            await producer.send_event(topics_for(OTHER)[0], "Referral", referral(OTHER, 1), key="k")
            await producer.send_event(topics_for(OTHER)[2], "Notice", notice(OTHER), key="k")

        # the plan request here is generated, not decided by the hub on a consent: no send-time consent
        # check (tests/integration/test_outbox_parking.py tests that one)
        worker = DeliveryWorker(store, kafka_url, app_id=f"test-{uid}", topics_for=topics_for, base_delay=0.05, timeout=0.5, refresh=0.2,
                                fetch_wait_ms=200, disclosure_check=lambda plan: None)

        def states():
            return [(d.state, d.attempts) for d in store.deliveries(sub.id)]

        async with serving(worker):
            await until(lambda: len(receiver.accepted) == len(sent) and [st for st, _ in states()] == [DELIVERED] * len(sent), f"delivered: {states()}")
            # phase 2: the receiver is down for longer than the attempts allow: parked, never dropped
            worker.max_attempts = 2
            receiver.script = [503, 503]
            async with EventProducer(kafka_url) as producer:
                await producer.send_event(topics_for(RECIPIENT)[0], "Referral", referral(RECIPIENT, 4), key="k")
            await until(lambda: any(d.state == PARKED for d in store.deliveries(sub.id)), f"parked: {states()}", 30)
            # `hub webhooks redeliver` (another process): the service sees the parked one queued again and delivers it
            assert store.redeliver(subscription_id=sub.id) == 1
            await until(lambda: not any(d.state == PENDING for d in store.deliveries(sub.id)), f"redelivered: {states()}", 30)

    try:
        asyncio.run(scenario())
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()

    assert receiver.bad_signatures == 0
    ids = [e["id"] for e in receiver.accepted]
    assert ids == [str(r["event_id"]) for r in sent] + [ids[-1]] and len(set(ids)) == 6  # each once, in order
    assert [e["type"] for e in receiver.accepted] == (["fi.integrationhub.Referral.v1"] * 2 + ["fi.integrationhub.PlanRequest.v1"]
                                                      + ["fi.integrationhub.Notice.v1"] + ["fi.integrationhub.Referral.v1"] * 2)
    # never another recipient's referral or notice (the generated plan request's `to` is random)
    assert all(e["data"]["to"] == RECIPIENT for e in receiver.accepted if e["type"] != "fi.integrationhub.PlanRequest.v1")
    assert [e["data"]["notice_type"] for e in receiver.accepted if "notice_type" in e["data"]] == ["consent_revoked"]
    # the referrals' numbering (plan requests and notices are numbered apart, each per stream)
    assert [e["data"]["sequence"] for e in receiver.accepted if e["type"] == "fi.integrationhub.Referral.v1"] == [1, 2, 3, 4]
    deliveries = store.deliveries(sub.id)
    assert [d.state for d in deliveries] == [DELIVERED] * 6
    first = store.attempts(deliveries[0].id)
    assert [a.status_code for a in first] == [500, 500, None, 200] and first[2].error.startswith("no answer")
    assert receiver.requests == 4 + 4 + 2 + 1  # every attempt reached it: 4 for the first, 1 each for the next 4, 2 + redelivery for the last


def test_the_webhook_models_match_the_migrations(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import hub.adapters.webhooks  # noqa: F401 - the models on Base

    database.upgrade(database_url)
    engine = database.create_engine(database_url)
    ours = {"webhook_subscriptions", "webhook_deliveries", "webhook_attempts"}
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), database.Base.metadata)
    finally:
        engine.dispose()
    assert [d for d in diff if any(t in repr(d) for t in ours)] == []


def test_a_withdrawal_reaches_the_recipients_webhook_after_its_referral_in_sequence(kafka_url, database_url):
    """A ReferralWithdrawn (and a ReferralUpdated, a new due date) on the recipient's referral topic is
    delivered like a referral: its own CloudEvents type, the next sequence number, in order behind the
    referral it names."""
    from hub.routing.model import RoutingInput
    from hub.routing.referrals import DueUpdate, Supersession, update_record, withdrawal_record

    database.upgrade(database_url)
    uid = uuid.uuid4().hex[:8]

    def topics_for(recipient):
        return [f"test.{uid}.{topic}" for topic in recipient_topics(recipient)]

    ensure_topics(kafka_url, topics_for(RECIPIENT), 1)
    engine = database.create_engine(database_url)
    store = WebhookStore(engine, allow_loopback=True)
    from hub.webhooks.policy import new_secret

    secret = new_secret()
    receiver = Receiver(secret, [])
    server = serve(receiver)
    sub, _ = store.add(RECIPIENT, f"http://127.0.0.1:{server.server_address[1]}/hook", secret=secret)
    ref = referral(RECIPIENT, 1)
    gone = Supersession(ref["referral_id"], ref["person_key"], RECIPIENT, "outreach", "moved", "moved to municipality 049")
    later = DueUpdate(ref["referral_id"], ref["person_key"], RECIPIENT, "outreach", dt.date(2027, 11, 5), None, "due date counted again")
    update = update_record(later, sequence=2, newcomer=RoutingInput(event_id="e-permit", person_key=ref["person_key"], change="circumstances"),
                           now=ref["recorded_at"])
    withdrawal = withdrawal_record(gone, sequence=3, newcomer=RoutingInput(event_id="e-move", person_key=ref["person_key"], change="moved"),
                                   now=ref["recorded_at"])

    async def scenario():
        async with EventProducer(kafka_url) as producer:
            await producer.send_event(topics_for(RECIPIENT)[0], "Referral", ref, key=ref["person_key"])
            await producer.send_event(topics_for(RECIPIENT)[0], "ReferralUpdated", update, key=ref["person_key"])
            await producer.send_event(topics_for(RECIPIENT)[0], "ReferralWithdrawn", withdrawal, key=ref["person_key"])
        worker = DeliveryWorker(store, kafka_url, app_id=f"test-{uid}", topics_for=topics_for, base_delay=0.05, timeout=2, refresh=0.2,
                                fetch_wait_ms=200, disclosure_check=lambda plan: None)
        async with serving(worker):
            await until(lambda: len(receiver.accepted) >= 3, f"delivered: {[(d.state, d.attempts) for d in store.deliveries(sub.id)]}")

    try:
        asyncio.run(scenario())
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()
    assert [(e["type"], e["data"]["sequence"]) for e in receiver.accepted] == [
        ("fi.integrationhub.Referral.v1", 1), ("fi.integrationhub.ReferralUpdated.v1", 2), ("fi.integrationhub.ReferralWithdrawn.v1", 3)]
    moved = receiver.accepted[1]["data"]
    assert (moved["referral_id"], moved["due"], receiver.accepted[1]["id"]) == (ref["referral_id"], "2027-11-05", str(update["event_id"]))
    data = receiver.accepted[2]["data"]
    assert (data["referral_id"], data["cause"], data["reason"], receiver.accepted[2]["id"]) == (
        ref["referral_id"], "moved", "moved to municipality 049", str(withdrawal["event_id"]))


def test_a_restarted_service_resumes_where_it_stopped(kafka_url, database_url):
    """Stopped while a delivery waits for its retry (SIGTERM), the service commits the offsets of what
    it queued; started again, it retries that one first, then the rest in order, and sends nothing
    that was delivered already."""
    database.upgrade(database_url)
    uid = uuid.uuid4().hex[:8]

    def topics_for(recipient):
        return [f"test.{uid}.{topic}" for topic in recipient_topics(recipient)]

    ensure_topics(kafka_url, topics_for(RECIPIENT), 1)
    engine = database.create_engine(database_url)
    store = WebhookStore(engine, allow_loopback=True)
    from hub.webhooks.policy import new_secret

    secret = new_secret()
    receiver = Receiver(secret, [])
    server = serve(receiver)
    sub, _ = store.add(RECIPIENT, f"http://127.0.0.1:{server.server_address[1]}/hook", secret=secret)
    sent = [referral(RECIPIENT, n) for n in range(1, 6)]

    def worker():
        return DeliveryWorker(store, kafka_url, app_id=f"test-{uid}", topics_for=topics_for, schedule=(1.0,), jitter=0.0, timeout=2, refresh=0.2,
                              fetch_wait_ms=200, disclosure_check=lambda plan: None)

    async def publish(records):
        async with EventProducer(kafka_url) as producer:
            for rec in records:
                await producer.send_event(topics_for(RECIPIENT)[0], "Referral", rec, key="k")

    async def scenario():
        await publish(sent[:2])
        first = worker()
        async with serving(first):
            await until(lambda: len(receiver.accepted) == 2, "the first two")
            receiver.script = [503]  # the next one fails once: it waits for its retry when the service stops
            await publish(sent[2:])
            await until(lambda: receiver.requests == 3, "a failed attempt at the third")
        assert [(d.state, d.attempts) for d in store.deliveries(sub.id)] == [(DELIVERED, 1)] * 2 + [(PENDING, 1), (PENDING, 0), (PENDING, 0)]
        from tests.integration.test_webhook_service import _committed
        from hub.webhooks.policy import consumer_group

        assert await _committed(kafka_url, consumer_group(f"test-{uid}", sub.id), topics_for(RECIPIENT)[0]) == 5  # every record queued
        async with serving(worker()):
            await until(lambda: len(receiver.accepted) == 5, f"the rest: {[(d.state, d.attempts) for d in store.deliveries(sub.id)]}")

    try:
        asyncio.run(scenario())
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()
    assert [e["id"] for e in receiver.accepted] == [str(r["event_id"]) for r in sent]  # in order, each once
    assert receiver.requests == 6 and receiver.bad_signatures == 0  # 5, and the third's retry
    assert [(d.state, d.attempts) for d in store.deliveries(sub.id)] == [(DELIVERED, 1)] * 2 + [(DELIVERED, 2), (DELIVERED, 1), (DELIVERED, 1)]
