"""`hub webhooks redeliver --subscription ID --stream S --from N [--to M]` on SQLite and PostgreSQL,
to a real local receiver that verifies the signatures: a subscription's delivered records of one
stream go out again by number, in order, with their webhook-ids, attempts starting over, ahead of
what was queued since; other streams and other subscriptions are untouched; a plan request whose
consent ended since is withdrawn at its next attempt, not posted; numbers not queued again are
named with why; a delivery queued before the number was kept gets it from its stored body."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from hub.adapters import database
from hub.adapters.webhooks import DELIVERED, WITHDRAWN, DeliveryWorker, WebhookDelivery, WebhookStore
from hub.schemas.envelope import cloudevent_body
from hub.schemas.topics import notice_topic, plan_request_topic, referral_topic
from tests.integration.test_webhook_safety import deliver_until_settled

pytestmark = pytest.mark.integration

RECIPIENT = "wellbeing_area:04"
NOW = dt.datetime.now(dt.timezone.utc)


class Receiver:
    """A local endpoint answering 204; it keeps (webhook-id, CloudEvents type, sequence) of each POST
    whose signature the standardwebhooks library verifies."""

    def __init__(self, secret: str):
        verifier, received = Webhook(secret), []
        self.received, self.bodies = received, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verifier.verify(body, headers)
                event = json.loads(body)
                received.append((headers["webhook-id"], event["type"], event["data"]["sequence"]))
                receiver.bodies.append(event)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("own_database_url")
    database.upgrade(url)
    engine = database.create_engine(url)
    yield WebhookStore(engine, allow_loopback=True)
    engine.dispose()


def record(name: str, sequence: int) -> tuple[str, bytes]:
    event_id = str(uuid.uuid4())
    data = {"event_id": event_id, "to": RECIPIENT, "sequence": sequence, "person_key": f"pk-{sequence}"}
    return event_id, cloudevent_body(name, {"event_id": event_id, "source": "hub:test"}, data)


def test_delivered_records_go_again_by_sequence_in_order(store):
    sub, secret = store.add(RECIPIENT, "http://127.0.0.1:1/placeholder")
    store.disable(sub.id)
    receiver = Receiver(secret)
    ended: set[int] = set()  # plan requests (by sequence) whose consent has ended
    worker = DeliveryWorker(store, "kafka://unused:9092", base_delay=0.01,
                            disclosure_check=lambda plan: "consent_revoked" if plan.get("sequence") in ended else None)
    try:
        sub, _ = store.add(RECIPIENT, f"http://127.0.0.1:{receiver.port}/hook", secret=secret)
        other, _ = store.add(RECIPIENT, f"http://127.0.0.1:{receiver.port}/other", secret=secret)
        ids = {}
        entries = []
        for n in range(1, 6):  # referrals 1-5, plan requests 1-3, notices 1-2, interleaved as they came
            for topic, name, last in ((referral_topic(RECIPIENT), "Referral", 5), (plan_request_topic(RECIPIENT), "PlanRequest", 3),
                                      (notice_topic(RECIPIENT), "Notice", 2)):
                if n <= last:
                    event_id, body = record(name, n)
                    ids[(name, n)] = event_id
                    entries += [(s, event_id, topic, name, body, NOW, n) for s in (sub.id, other.id)]
        store.queue(entries, NOW)
        deliver_until_settled(worker, store, sub.id)
        deliver_until_settled(worker, store, other.id)
        first = len(receiver.received)
        assert first == 2 * 10
        # a record queued meanwhile, not delivered yet: the ones queued again go out before it
        later_id, later = record("Referral", 6)
        store.queue([(sub.id, later_id, referral_topic(RECIPIENT), "Referral", later, NOW, 6)], NOW)

        done = store.redeliver_sequences(sub.id, referral_topic(RECIPIENT), 2, 4)
        assert done.queued == [2, 3, 4] and done.skipped == {} and done.missing == []
        ended.add(2)  # plan request 2's consent ended after it was delivered
        done = store.redeliver_sequences(sub.id, plan_request_topic(RECIPIENT), 1)
        assert done.queued == [1, 2, 3]
        deliver_until_settled(worker, store, sub.id)
        # in the order they were first queued (the streams interleaved as they came), plan request 2 withdrawn, then the newer one
        again = [(webhook_id, kind.split(".")[2], n) for webhook_id, kind, n in receiver.received[first:]]
        assert again == [(ids[("PlanRequest", 1)], "PlanRequest", 1), (ids[("Referral", 2)], "Referral", 2), (ids[("Referral", 3)], "Referral", 3),
                         (ids[("PlanRequest", 3)], "PlanRequest", 3), (ids[("Referral", 4)], "Referral", 4), (later_id, "Referral", 6)]
        rows = {(d.topic, d.sequence): d for d in store.deliveries(sub.id)}
        assert rows[(referral_topic(RECIPIENT), 3)].state == DELIVERED and rows[(referral_topic(RECIPIENT), 3)].attempts == 1  # started over
        assert rows[(plan_request_topic(RECIPIENT), 2)].state == WITHDRAWN
        assert all(d.state == DELIVERED for d in store.deliveries(other.id))  # the other subscription: untouched

        # what is not queued again is named: the withdrawn one, numbers never delivered, a body gone with retention
        with store.Session.begin() as s:
            row = s.get(WebhookDelivery, rows[(plan_request_topic(RECIPIENT), 3)].id)
            row.body = ""
        done = store.redeliver_sequences(sub.id, plan_request_topic(RECIPIENT), 1, 5)
        assert done.queued == [1] and done.missing == [4, 5]
        assert done.skipped[2].startswith("withdrawn") and "retention" in done.skipped[3]
        store.redeliver(subscription_id=sub.id)  # nothing parked: nothing else changes
        deliver_until_settled(worker, store, sub.id)

        # a delivery queued before the number was kept (migration 0024): its number comes from its body
        with store.engine.begin() as conn:
            conn.execute(sa.update(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id, WebhookDelivery.topic == notice_topic(RECIPIENT))
                         .values(sequence=None))
        before = len(receiver.received)
        done = store.redeliver_sequences(sub.id, notice_topic(RECIPIENT), 2)
        assert done.queued == [2]
        deliver_until_settled(worker, store, sub.id)
        assert [(webhook_id, n) for webhook_id, _, n in receiver.received[before:]] == [(ids[("Notice", 2)], 2)]
    finally:
        receiver.close()


def test_a_numbered_plan_request_withdrawn_before_delivery_leaves_a_content_free_notice_of_its_number(store):
    """The record on the topic has its number, so the receiver is told that number was withdrawn: a
    `SequenceWithdrawn` with the stream and the number only, after what was queued before; never for
    one delivered before (a redelivery), never twice; `redeliver --stream --from` sends it again."""
    sub, secret = store.add(RECIPIENT, "http://127.0.0.1:1/placeholder")
    store.disable(sub.id)
    receiver = Receiver(secret)
    worker = DeliveryWorker(store, "kafka://unused:9092", base_delay=0.01,
                            disclosure_check=lambda plan: "consent_revoked" if plan.get("sequence") == 2 else None)
    try:
        sub, _ = store.add(RECIPIENT, f"http://127.0.0.1:{receiver.port}/hook", secret=secret)
        topic = plan_request_topic(RECIPIENT)
        ids = {}
        for n in (1, 2, 3):
            event_id, body = record("PlanRequest", n)
            ids[n] = event_id
            store.enqueue(sub.id, event_id, topic, "PlanRequest", body, NOW, sequence=n)
        deliver_until_settled(worker, store, sub.id)
        assert [n for _, _, n in receiver.received] == [1, 3, 2]
        webhook_id, kind, _ = receiver.received[2]
        assert kind == "fi.integrationhub.SequenceWithdrawn.v1" and webhook_id not in ids.values()
        notice = receiver.bodies[2]
        assert notice["data"] == {"stream": "plan-requests", "sequence": 2}
        assert set(notice) == {"specversion", "id", "type", "source", "datacontenttype", "data"}  # no time, nothing of the plan request
        assert ids[2] not in json.dumps(notice) and "pk-2" not in json.dumps(notice)
        states = [(d.schema, d.sequence, d.state) for d in store.deliveries(sub.id)]
        assert states == [("PlanRequest", 1, DELIVERED), ("PlanRequest", 2, WITHDRAWN), ("PlanRequest", 3, DELIVERED),
                          ("SequenceWithdrawn", 2, DELIVERED)]

        done = store.redeliver_sequences(sub.id, topic, 2, 2)  # the receiver lost it: the notice goes again, same webhook-id
        assert done.queued == [2] and done.skipped == {}
        deliver_until_settled(worker, store, sub.id)
        assert receiver.received[-1] == (webhook_id, kind, 2)
        assert len(store.deliveries(sub.id)) == 4  # no second notice
    finally:
        receiver.close()
