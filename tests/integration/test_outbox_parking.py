"""One unsendable outbox row never stops the others, and a plan request never goes out after a
revocation the hub has received: on the real broker and the real PostgreSQL.

- a ~1 MB plan request (over the producer's max_request_size) is parked with its reason while the
  rows after it (another recipient's plan request, a revocation notice) go out;
- a revocation published on hub.consents.v1 before an assessment on hub.assessments.v1 stops the
  assessment's plan request although the consent agent applies it late (held back here);
- a revoked consent's plan request queued for webhook delivery is delivered neither by a retry nor
  after `hub webhooks redeliver`.
"""

import asyncio
import datetime as dt
import inspect
import time
import uuid

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub import metrics
from hub.adapters import database, outbox
from hub.adapters.kafka.admin import ensure_topics
from hub.adapters.kafka.producer import EventProducer
from hub.adapters.webhooks import DELIVERED, PARKED, PENDING, WITHDRAWN, DeliveryWorker, WebhookStore, recipient_topics
from hub.consent import records
from hub.adapters.disclosure_check import DisclosureWithdrawal
from hub.adapters.consent_uow import SqlConsentUnits
from hub.services.consent import ConsentRegistry
from hub.schemas import topics
from hub.streams import consent_agents
from hub.streams.pipeline import hub_app
from hub.streams.runner import running, wait_for
from tests.integration.test_consent_propagation import (
    DATA_KEY, SECRET, Collector, assessment, consent, make_hub, new_person, unique_authority)
from tests.integration.test_webhooks import Receiver, serve

pytestmark = pytest.mark.integration


def registry(sessions):
    return ConsentRegistry(SqlConsentUnits(sessions), legal_bases=(), person_key_secret=SECRET)


def record_consent(reg, pid, consent_id, action, recipients=(), categories=("education",)):
    rec = records.consent_from_avro(consent(pid, consent_id, action, recipients, categories))
    return reg.record_consent(rec)


def assess(reg, pid, recipient, assessment_id, education=None):
    rec = assessment(pid, recipient, assessment_id)
    if education is not None:
        rec["education"] = education
    out = reg.handle_assessment(records.assessment_from_avro(rec), reg.codec.encode("AssessmentCompleted", rec))
    assert out.disclosed, out
    return rec


def rows_to(sessions, topic):
    with sessions() as s:
        return list(s.scalars(sa.select(outbox.OutboxMessage).where(outbox.OutboxMessage.topic == topic).order_by(outbox.OutboxMessage.id)))


def test_a_plan_request_over_the_size_limit_is_parked_and_the_rows_after_it_go_out(kafka_url, sessions):
    reg = registry(sessions)
    (big_pid, big_key), (pid, key), (old_pid, old_key) = new_person(), new_person(), new_person()
    big_to, other_to, earlier_to = unique_authority(), unique_authority(), unique_authority()

    async def scenario():
        hub = make_hub(kafka_url, "park")
        consent_agents.register(hub, sessions, legal_bases=(), relay_interval=0.2)
        got = Collector(hub, topics.plan_request_topic(big_to), topics.plan_request_topic(other_to), topics.plan_request_topic(earlier_to),
                        topics.notice_topic(earlier_to))
        record_consent(reg, old_pid, f"c-{old_key[:8]}", "granted", [earlier_to])
        assess(reg, old_pid, earlier_to, "as-earlier")
        async with running(hub):
            await wait_for(lambda: got.where(to=earlier_to, assessment_id="as-earlier"), 60, "an earlier plan request")
            # a valid assessment of ~1.1 MB: its plan request is over the producer's 1 MB max_request_size
            record_consent(reg, big_pid, f"c-{big_key[:8]}", "granted", [big_to])
            assess(reg, big_pid, big_to, "as-big", education="vocational " * 120_000)
            record_consent(reg, pid, f"c-{key[:8]}", "granted", [other_to])
            assess(reg, pid, other_to, "as-other")
            record_consent(reg, old_pid, f"c-{old_key[:8]}", "revoked")  # a revocation notice to the earlier recipient
            await wait_for(lambda: got.where(to=other_to, assessment_id="as-other") and got.where(to=earlier_to, notice_type="consent_revoked"),
                           60, "the rows after the unsendable one")
            await asyncio.sleep(1.0)  # relay ticks: the parked row is not tried again
        return got

    got = asyncio.run(scenario())
    assert got.where(topics.plan_request_topic(big_to)) == []
    (big,) = rows_to(sessions, topics.plan_request_topic(big_to))
    assert big.sent_at is None and big.parked_reason == outbox.RECORD_TOO_LARGE and len(big.value) > 1_000_000
    assert "MessageSizeTooLargeError" in big.parked_detail and "vocational" not in big.parked_detail  # the error, not the content
    assert metrics.REGISTRY.get_sample_value("hub_outbox_parked_messages", {"reason": "record_too_large"}) >= 1
    # an operator may queue it again; it is parked again while the limit stays
    with sessions.begin() as s:
        assert outbox.unpark(s, big.id) is not None
    with sessions() as s:
        assert big.id in [r.id for r in outbox.pending(s, 100_000)]


def test_a_revocation_on_the_consents_topic_before_an_assessment_stops_its_plan_request(kafka_url, sessions):
    pid, key = new_person()
    plan_to = unique_authority()
    plan_topic = topics.plan_request_topic(plan_to)
    cid = f"c-{key[:8]}"

    async def scenario():
        hub = make_hub(kafka_url, "late-revocation")
        wiring = consent_agents.register(hub, sessions, legal_bases=(), relay_interval=0.2)
        got = Collector(hub, plan_topic)
        async with running(hub):
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, cid, "granted", [plan_to], ["education"]), key=key)
            await wait_for(lambda: registry(sessions).person_view(pid)["consents"], 60, "the grant applied")
            # the consent agent falls behind: what it takes from hub.consents.v1 now is applied only when released
            release = asyncio.Event()
            apply = wiring.registry.record_consent

            async def slowed(rec, **kw):
                await release.wait()
                return apply(rec, **kw)

            wiring.registry.record_consent = slowed
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, cid, "revoked"), key=key)  # received by the hub (on its topic) ...
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, plan_to, "as-after"), key=key)  # ... before this one
            await wait_for(lambda: rows_to(sessions, plan_topic), 60, "the assessment decided on the stale consent state")
            await asyncio.sleep(3.5)  # relay ticks and the consumer group's commits
            assert got.records == [], "a plan request went out after a revocation the hub had received"
            release.set()
            await wait_for(lambda: rows_to(sessions, plan_topic)[0].parked_reason is not None, 60, "the plan request withdrawn")
            await asyncio.sleep(1.5)
        return got

    got = asyncio.run(scenario())
    assert got.records == []  # never on the plan-request topic
    (row,) = rows_to(sessions, plan_topic)
    assert row.sent_at is None and row.parked_reason == "consent_revoked" and row.value == b""  # the person's data dropped
    (audit,) = registry(sessions).audit(pid)
    assert audit["assessment_id"] == "as-after" and [w["reason"] for w in audit["withdrawn"]] == ["consent_revoked"]
    assert audit["withdrawn"][0]["channel"] == "kafka"


def test_a_revoked_consents_plan_request_is_not_delivered_by_webhook_retries_nor_redeliver(kafka_url, database_url, sessions):
    reg = registry(sessions)
    uid = uuid.uuid4().hex[:8]
    recipient = unique_authority()

    def topics_for(name):
        return [f"test.{uid}.{t}" for t in recipient_topics(name)]

    ensure_topics(kafka_url, topics_for(recipient), 1)
    persons = {name: new_person() for name in ("retried", "parked", "kept")}
    plans = {}
    for name, (pid, key) in persons.items():
        record_consent(reg, pid, f"c-{key[:8]}", "granted", [recipient])
        assess(reg, pid, recipient, f"as-{name}")
        (row,) = [r for r in rows_to(sessions, topics.plan_request_topic(recipient)) if reg.codec.decode(r.value).record["person_id"] == pid]
        plans[name] = reg.codec.decode(row.value).record
        with sessions.begin() as s:  # published by the relay, which this test does not run
            outbox.mark_sent(s, [row.id], dt.datetime.now(dt.timezone.utc))

    engine = database.create_engine(database_url)
    # a local receiver: loopback targets allowed where the store refuses them by default
    store = WebhookStore(engine, **({"allow_loopback": True} if "allow_loopback" in inspect.signature(WebhookStore).parameters else {}))
    sub, secret = store.add(recipient, "http://127.0.0.1:1/placeholder")
    store.disable(sub.id)
    receiver = Receiver(secret, [503])
    server = serve(receiver)
    sub, _ = store.add(recipient, f"http://127.0.0.1:{server.server_address[1]}/hook", secret=secret)

    def state_of(name):
        found = [d for d in store.deliveries(sub.id) if d.message_id == str(plans[name]["event_id"])]
        return found[0] if found else type("NotQueued", (), {"state": None, "attempts": 0})

    async def publish(name):
        async with EventProducer(kafka_url) as producer:
            await producer.send_event(topics_for(recipient)[1], "PlanRequest", plans[name], key=persons[name][1])

    async def scenario():
        # the first retry comes 1-2 s after a failed attempt: time to revoke in between
        worker = DeliveryWorker(store, kafka_url, topics_for=topics_for, base_delay=2.0, timeout=2, max_attempts=5, refresh=0.2, fetch_wait_ms=200)

        async def until(condition, what):
            deadline = time.monotonic() + 60
            while not condition():
                assert time.monotonic() < deadline, f"timed out: {what} {[(d.message_id, d.state, d.attempts) for d in store.deliveries(sub.id)]}"
                assert not service.done(), "the delivery service stopped"
                await asyncio.sleep(0.05)

        stop = asyncio.Event()
        service = asyncio.create_task(worker.run(stop))  # the service `hub webhooks serve` runs
        try:
            # a retry: the first attempt fails (503), the consent is revoked, the retry must not deliver it
            await publish("retried")
            await until(lambda: state_of("retried").attempts == 1, "a failed first attempt")
            assert state_of("retried").state == PENDING
            record_consent(reg, persons["retried"][0], f"c-{persons['retried'][1][:8]}", "revoked")
            await until(lambda: state_of("retried").state not in (None, PENDING), "the retry")
            # a redelivery: parked after its attempts, the consent is revoked, `hub webhooks redeliver` queues it again
            worker.max_attempts, worker.base_delay = 2, 0.05
            receiver.script = [503, 503]
            await publish("parked")
            await until(lambda: state_of("parked").state == PARKED, "parked")
            record_consent(reg, persons["parked"][0], f"c-{persons['parked'][1][:8]}", "revoked")
            result = CliRunner().invoke(__import__("hub.cli", fromlist=["main"]).main, ["webhooks", "redeliver", "--subscription", str(sub.id)],
                                        env={"HUB_DATABASE_URL": database_url, "HUB_PERSON_KEY_SECRET": SECRET, "HUB_DATA_KEYS": DATA_KEY})
            assert result.exit_code == 0 and "1 parked delivery queued again" in result.output, result.output
            await until(lambda: state_of("parked").state != PENDING, "the redelivery")
            # a plan request whose consent holds is delivered as before
            await publish("kept")
            await until(lambda: state_of("kept").state == DELIVERED, "the plan request with a consent in force")
        finally:
            stop.set()
            await asyncio.wait_for(service, 30)

    try:
        asyncio.run(scenario())
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()

    assert [e["data"]["assessment_id"] for e in receiver.accepted] == ["as-kept"]
    for name in ("retried", "parked"):
        d = state_of(name)
        assert (d.state, d.last_error, d.body) == (WITHDRAWN, "consent_revoked", ""), name
    assert len(store.attempts(state_of("retried").id)) == 1 and len(store.attempts(state_of("parked").id)) == 2  # no attempt after the revocation
    with sessions() as s:
        withdrawn = {w.request_id: (w.reason, w.channel) for w in s.scalars(sa.select(DisclosureWithdrawal).where(DisclosureWithdrawal.recipient == recipient))}
    assert withdrawn == {plans["retried"]["request_id"]: ("consent_revoked", "webhook"), plans["parked"]["request_id"]: ("consent_revoked", "webhook")}


def test_the_outbox_and_withdrawal_models_match_the_migrations(database_url, tmp_path):
    from tests.integration.test_consent_migration import migration_diff

    import hub.adapters.disclosure_check  # noqa: F401 - the withdrawals table on Base

    for url in (database_url, f"sqlite:///{tmp_path / 'hub.sqlite3'}"):
        assert migration_diff(url, {"outbox", "disclosure_withdrawals"}) == []


def test_consents_applied_by_another_worker_count_through_the_groups_committed_offsets(kafka_url, sessions):
    """A relay whose own worker applied none of hub.consents.v1 (other workers own its partitions)
    relies on the consumer group's committed offsets; a group that never applied them waits."""
    from hub.streams.outbox_relay import ConsentsApplied

    pid, key = new_person()

    async def scenario():
        hub = make_hub(kafka_url, "applied-elsewhere")
        consent_agents.register(hub, sessions, legal_bases=())
        async with running(hub):
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, f"c-{key[:8]}", "granted", [unique_authority()], ["education"]), key=key)
            await wait_for(lambda: registry(sessions).person_view(pid)["consents"], 60, "the grant applied")
            same_group = ConsentsApplied(hub_app(hub.settings, kafka_url))  # another worker of the same app (same consumer group)
            other_group = ConsentsApplied(make_hub(kafka_url, "never-ran"))  # an app whose consumers never ran
            try:
                deadline = time.monotonic() + 30
                while not await same_group.all_applied():  # the batch consumer commits after each batch
                    assert time.monotonic() < deadline, "the group's commits never covered the consents"
                    await asyncio.sleep(0.5)
                assert not await other_group.all_applied()
            finally:
                await same_group.on_stop()
                await other_group.on_stop()

    asyncio.run(scenario())
