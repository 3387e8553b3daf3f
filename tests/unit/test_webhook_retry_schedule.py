"""Webhook retries follow a schedule spanning hours (Standard Webhooks' recommended one by default:
immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), each wait jittered, and a delivery is
parked after the last; with a fake clock and a fake receiver (no waiting), on SQLite in memory.
Also what a lane logs of an error (never a callback URL's credentials) and that a record that does
not decode is counted (`hub_webhook_deliveries_total{outcome="undecodable"}`) while the rest flows on."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest
from sqlalchemy.pool import StaticPool

from hub.adapters import database
from hub.adapters.webhooks import DELIVERED, PARKED, PENDING, DeliveryWorker, WebhookStore, _Lane
from hub.config import Settings
from hub.webhooks import policy

T0 = dt.datetime(2026, 11, 16, 8, 0, tzinfo=dt.timezone.utc)
STANDARD = [5, 300, 1800, 7200, 18000, 36000, 36000]


def test_the_default_schedule_is_standard_webhooks_and_spans_more_than_a_day():
    assert list(policy.RETRY_SCHEDULE) == STANDARD and policy.MAX_ATTEMPTS == 8
    assert policy.parse_schedule(policy.RETRY_SCHEDULE_TEXT) == policy.RETRY_SCHEDULE
    assert Settings.from_env({}).webhooks_retry_schedule == policy.RETRY_SCHEDULE
    assert sum(policy.RETRY_SCHEDULE) > 24 * 3600


def test_the_default_schedule_is_written_once_and_the_rest_derived_from_it():
    from pathlib import Path

    from hub.config import SETTINGS

    setting = next(s for s in SETTINGS if s.env == "HUB_WEBHOOKS_RETRY_SCHEDULE")
    assert setting.default is policy.RETRY_SCHEDULE
    assert policy.RETRY_SCHEDULE_TEXT in setting.default_doc
    assert f"about {round(sum(policy.RETRY_SCHEDULE) / 3600)} hours" in setting.help
    # the schedule as text or as seconds appears in one place of the code only
    hub = Path(__file__).resolve().parents[2] / "hub"
    spelled = ("5s,5m,30m,2h,5h,10h,10h", "36000", "5 min, 30 min", "about 28 hours")
    hits = [f"{p.relative_to(hub)}: {line.strip()}" for p in sorted(hub.rglob("*.py")) for line in p.read_text().splitlines()
            if any(s in line for s in spelled)]
    assert hits == ['webhooks/policy.py: RETRY_SCHEDULE_TEXT = "5s,5m,30m,2h,5h,10h,10h"'], hits


def test_each_wait_is_jittered_within_the_bound_and_the_schedule_ends():
    rng = random.Random(7)
    for n, step in enumerate(STANDARD, start=1):
        waits = [policy.retry_delay(n, rng=rng, jitter=0.2) for _ in range(200)]
        assert all(0.8 * step <= w <= 1.2 * step for w in waits), n
        assert len({round(w, 3) for w in waits}) > 100  # spread, not one value
    assert policy.retry_delay(len(STANDARD) + 1) is None and policy.retry_delay(0) is None
    assert policy.retry_delay(1, (5.0,), jitter=0) == 5.0


@pytest.mark.parametrize("text, seconds", [("5s,5m,30m,2h", (5, 300, 1800, 7200)), ("250ms, 1.5, 1d", (0.25, 1.5, 86400)), ("10 m", (600,))])
def test_schedules_are_read_with_units(text, seconds):
    assert policy.parse_schedule(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5x", "-5s", "soon"])
def test_a_bad_schedule_is_refused_naming_the_setting(bad):
    with pytest.raises(ValueError, match="HUB_WEBHOOKS_RETRY_SCHEDULE" if bad else "empty|schedule"):
        Settings.from_env({"HUB_WEBHOOKS_RETRY_SCHEDULE": bad or ","})
    with pytest.raises(ValueError, match="HUB_WEBHOOKS_RETRY_JITTER"):
        Settings.from_env({"HUB_WEBHOOKS_RETRY_JITTER": "1.5"})


class FakeReceiver:
    """Answers each POST from `answers` (then 200), recording the fake time of each."""

    def __init__(self, clock: dict, answers: list):
        self.clock, self.answers, self.at = clock, list(answers), []

    def __call__(self, url, body, headers, timeout, allow_loopback):
        self.at.append(self.clock["now"])
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer


def _setup(answers, **kw):
    engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    database.Base.metadata.create_all(engine)
    store = WebhookStore(engine, allow_loopback=True)
    clock = {"now": T0}
    receiver = FakeReceiver(clock, answers)
    worker = DeliveryWorker(store, "kafka://unused:9092", clock=lambda: clock["now"], rng=random.Random(3), sender=receiver,
                            disclosure_check=lambda plan: None, **kw)
    sub, _ = store.add("wellbeing_area:04", "http://127.0.0.1:9/hook")
    return engine, store, clock, receiver, worker, sub


def _run_until_settled(worker, store, clock, sub_id, step=1.0, limit=dt.timedelta(days=3)):
    """Advance the fake clock by `step` seconds between passes (jumping to the head's due time when
    it is later), until nothing is pending."""
    async def run():
        while any(d.state == PENDING for d in store.deliveries(sub_id)):
            await worker.deliver_due()
            for head in store.pending(sub_id, 1):
                clock["now"] = max(clock["now"] + dt.timedelta(seconds=step), head.next_attempt_at)
            assert clock["now"] - T0 < limit, "never settled"

    asyncio.run(run())


def test_a_failing_receiver_is_retried_on_the_schedule_then_the_delivery_is_parked():
    engine, store, clock, receiver, worker, sub = _setup([500] * 20)
    try:
        store.enqueue(sub.id, "e-1", "t", "Referral", b'{"id":"e-1"}', T0)
        _run_until_settled(worker, store, clock, sub.id)
        [delivery] = store.deliveries(sub.id)
        assert delivery.state == PARKED and delivery.attempts == 8 and delivery.last_error == "HTTP 500"
        waits = [(b - a).total_seconds() for a, b in zip(receiver.at, receiver.at[1:])]
        assert receiver.at[0] == T0 and len(waits) == 7  # the first attempt immediately, then the 7 waits
        for wait, step in zip(waits, STANDARD):
            assert 0.8 * step <= wait <= 1.2 * step + 1.0, (wait, step)  # + the fake clock's step
        assert (receiver.at[-1] - receiver.at[0]) > dt.timedelta(hours=22)  # spans hours, not minutes
        # parked, not dropped: redeliver sends it again (attempts start over)
        assert store.redeliver(subscription_id=sub.id, now=clock["now"]) == 1
        receiver.answers = [200]
        _run_until_settled(worker, store, clock, sub.id)
        assert store.deliveries(sub.id)[0].state == DELIVERED and len(receiver.at) == 9
    finally:
        engine.dispose()


def test_a_short_outage_is_bridged_without_a_redeliver_and_order_is_kept():
    # down for about an hour (connection refused), then up: every delivery arrives, in order
    engine, store, clock, receiver, worker, sub = _setup([ConnectionRefusedError()] * 4)
    try:
        for i in range(3):
            store.enqueue(sub.id, f"e-{i}", "t", "Referral", f'{{"id":"e-{i}"}}'.encode(), T0)
        sent: list[str] = []
        original = receiver.__call__

        def recording(url, body, headers, timeout, allow_loopback):
            status = original(url, body, headers, timeout, allow_loopback)
            sent.append(headers["webhook-id"])
            return status

        worker.sender = recording
        _run_until_settled(worker, store, clock, sub.id)
        assert [d.state for d in store.deliveries(sub.id)] == [DELIVERED] * 3
        assert sent == ["e-0", "e-1", "e-2"]  # the failed attempts raised before recording: only the successes
        assert [(a.error or "").startswith("no answer") for a in store.attempts(store.deliveries(sub.id)[0].id)] == [True] * 4 + [False]
    finally:
        engine.dispose()


def test_max_attempts_cuts_the_schedule_short():
    engine, store, clock, receiver, worker, sub = _setup([503] * 5, max_attempts=3)
    try:
        store.enqueue(sub.id, "e-1", "t", "Referral", b"{}", T0)
        _run_until_settled(worker, store, clock, sub.id)
        assert store.deliveries(sub.id)[0].state == PARKED and len(receiver.at) == 3
    finally:
        engine.dispose()


def test_a_configured_schedule_is_followed():
    engine, store, clock, receiver, worker, sub = _setup([500] * 5, schedule=(60.0, 120.0), jitter=0.0)
    try:
        store.enqueue(sub.id, "e-1", "t", "Referral", b"{}", T0)
        _run_until_settled(worker, store, clock, sub.id, step=0.5)
        assert [(t - T0).total_seconds() for t in receiver.at] == [0, 60, 180]
        assert store.deliveries(sub.id)[0].state == PARKED
    finally:
        engine.dispose()


def test_health_names_a_stalled_service_or_a_broker_no_subscription_reaches():
    import time

    from hub.adapters.webhooks import _Lane

    engine, store, clock, receiver, worker, sub = _setup([])
    try:
        assert worker.stopped() == ["webhook delivery (no refresh of the subscriptions)"]  # not started
        worker.last_refresh = time.monotonic()
        assert worker.stopped() == []
        worker.refresh_error, worker.last_refresh = "OperationalError", time.monotonic() - 120
        assert worker.stopped() == ["webhook delivery (no refresh of the subscriptions: OperationalError)"]
        worker.last_refresh = time.monotonic()
        worker._lanes = {1: _Lane(sub, error="KafkaConnectionError"), 2: _Lane(sub, ready=True)}
        assert worker.stopped() == []  # one lane in trouble is not the service's trouble
        worker._lanes[2].error = "KafkaConnectionError"
        assert worker.stopped() == ["every subscription's Kafka consumer (KafkaConnectionError)"]
    finally:
        engine.dispose()


def test_gauges_cover_every_active_recipient_and_go_back_to_zero():
    from hub import metrics

    engine, store, clock, receiver, worker, sub = _setup([503])
    try:
        def value(name, **labels):
            return metrics.REGISTRY.get_sample_value(name, labels)

        store.enqueue(sub.id, "e-1", "t", "Referral", b"{}", T0, published_at=T0 - dt.timedelta(seconds=30))
        worker.refresh_gauges()
        assert value("hub_webhook_deliveries_queued", recipient=sub.recipient, state="pending") == 1
        assert value("hub_webhook_deliveries_queued", recipient=sub.recipient, state="parked") == 0
        assert value("hub_webhook_oldest_pending_seconds", recipient=sub.recipient) == 30
        before = value("hub_webhook_delivery_lag_seconds_count") or 0
        _run_until_settled(worker, store, clock, sub.id)  # 503, then delivered at the first retry
        assert value("hub_webhook_deliveries_queued", recipient=sub.recipient, state="pending") == 0
        assert value("hub_webhook_oldest_pending_seconds", recipient=sub.recipient) == 0
        assert value("hub_webhook_delivery_lag_seconds_count") == before + 1
    finally:
        engine.dispose()


def test_a_lane_error_logs_its_type_and_the_url_without_credentials(caplog):
    engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    database.Base.metadata.create_all(engine)
    store = WebhookStore(engine)
    url = "https://hook-user:pa55word@receiver.example.fi:8443/hub/events?token=s3cr3t-t0ken#frag"
    sub, _ = store.add("wellbeing_area:04", url)
    worker = DeliveryWorker(store, "kafka://unused:9092", disclosure_check=lambda plan: None)

    async def failing_consumer(s):
        raise RuntimeError(f"cannot reach {s.url} (token=s3cr3t-t0ken, pa55word)")  # a text that repeats the URL

    worker._consumer = failing_consumer

    async def run():
        stop = asyncio.Event()
        lane = _Lane(sub)
        task = asyncio.create_task(worker._consume(lane, stop))
        for _ in range(100):
            if lane.error:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task
        return lane

    with caplog.at_level("WARNING", logger="hub.adapters.webhooks"):
        lane = asyncio.run(run())
    engine.dispose()
    assert lane.error == "RuntimeError"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in text and "https://receiver.example.fi:8443/hub/events" in text
    for secret in ("pa55word", "hook-user", "s3cr3t", "token", "frag", "cannot reach"):
        assert secret not in text, secret
    assert policy.loggable_url("https://u:p@[2001:db8::1]:8443/x?q=1") == "https://[2001:db8::1]:8443/x"
    assert policy.loggable_url("https://receiver.example.fi") == "https://receiver.example.fi"


def test_an_undecodable_record_is_counted_and_the_rest_flows_on():
    from types import SimpleNamespace

    from hub import metrics
    from hub.schemas.envelope import envelope

    engine, store, clock, receiver, worker, sub = _setup([])
    codec = worker.codec
    good = envelope("hub:routing")
    good.update(referral_id="r-1", to=sub.recipient, purpose="outreach", person_key="pk-1", reasons=["arrived"], rule="outreach",
                rules_version="2025.1", sequence=1)
    records = [SimpleNamespace(topic="t", partition=0, offset=0, timestamp=1, value=b"\x00not avro"),
               SimpleNamespace(topic="t", partition=0, offset=1, timestamp=2, value=codec.encode("Referral", good))]

    counter = metrics.webhook_deliveries.labels(sub.recipient, "undecodable")
    before = counter._value.get()
    lane = _Lane(sub, complete=True)
    assert asyncio.run(worker._queue_records(lane, {"t-0": records})) == 1  # the good one is queued
    assert counter._value.get() == before + 1 and lane.offsets == {"t-0": 2}  # both are behind it
    assert [p.message_id for p in lane.queue] == [str(good["event_id"])]  # handed to the lane's delivery
    assert [d.message_id for d in store.deliveries(sub.id)] == [str(good["event_id"])]
    engine.dispose()
