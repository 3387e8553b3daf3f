"""Consent-gated propagation on the real broker and the real PostgreSQL.

Each test uses its own app id, its own persons and its own plan-making authority (so its own
plan-request and notice topics); the fixed topics and the assessor's notice topic are shared, so
collectors filter by person key.
"""

import asyncio
import datetime as dt
import random
import uuid

import pytest
import sqlalchemy as sa

from hub import metrics
from hub.adapters import outbox
from hub.config import Settings
from hub.adapters import consent_store as store
from hub.domain import hetu
from hub.routing.reference import known_authority_ids
from hub.schemas import topics
from hub.streams import consent_agents
from hub.streams.app import HubApp
from hub.streams.pipeline import hub_app
from hub.schemas.envelope import envelope
from hub.streams.outbox_relay import OutboxRelay
from hub.streams.runner import running, wait_for
from tests.conftest import TEST_DATA_KEY
from tests.personal_data import clear_in_tables, digits_of

pytestmark = pytest.mark.integration

ASSESSOR = "municipality:091"
SECRET = "integration-test-secret"
_random = random.Random()  # persons differ between runs too, in case the broker outlives the session (HUB_TEST_KAFKA_URL)


DATA_KEY = TEST_DATA_KEY  # HUB_DATA_KEYS of these tests (and of the `hub worker` they start)


def new_person():
    pid = hetu.make(dt.date(1950, 1, 1) + dt.timedelta(days=_random.randrange(20000)), _random.randrange(900, 1000))
    return pid, hetu.person_key(pid, SECRET)


# real employment authorities (the hub accepts only those), each used by one test only, in an order
# that differs per run; the ones other tests use (Helsinki 08, Espoo 01, Vantaa 43) are left out
_UNUSED = iter(random.Random().sample(
    sorted(a for a in known_authority_ids() if a.startswith("employment_authority:") and a not in (
        "employment_authority:08", "employment_authority:01", "employment_authority:43")), k=20))


def unique_authority():
    return next(_UNUSED)


def assessment(pid, plan_authority, assessment_id="as-1", assessor=ASSESSOR):
    rec = envelope(assessor)
    rec.update(assessment_id=assessment_id, person_key=hetu.person_key(pid, SECRET), person_id=pid, assessor=assessor, plan_authority=plan_authority,
               referral_id=None, education="vocational upper secondary", work_history="6 years construction",
               language_skills=[{"language": "fi", "skill": "overall", "cefr_level": "A2"}], literacy="literate in Latin script",
               recommended_path="employment", service_needs=["childcare"])
    return rec


def consent(pid, consent_id, action, recipients=(), categories=()):
    rec = envelope(ASSESSOR)
    rec.update(consent_id=consent_id, person_id=pid, action=action, purpose="integration_plan", data_categories=list(categories),
               recipients=list(recipients), valid_from=None, valid_until=None, evidence="form 2026-17", recorded_by=ASSESSOR)
    return rec


class Collector:
    """Decoded records received on some topics, all together and per topic."""

    def __init__(self, hub: HubApp, *topic_names: str):
        self.records: list[dict] = []
        self.on: dict[str, list[dict]] = {name: [] for name in topic_names}
        for name in topic_names:
            hub.batch_consumer(f"collect-{name}", name, self._collector(hub, name), 500)

    def _collector(self, hub: HubApp, name: str):
        async def collect(batch):
            for msg in batch:
                record = hub.codec.decode(msg.value).record
                self.records.append(record)
                self.on[name].append(record)
        return collect

    def where(self, topic: str | None = None, **match):
        records = self.records if topic is None else self.on[topic]
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def make_hub(kafka_url, name):
    return hub_app(Settings(app_id=f"consent-{name}-{uuid.uuid4().hex[:6]}", person_key_secret=SECRET), kafka_url)


def test_an_assessor_that_makes_the_plan_gets_its_plan_request_with_nothing_held_or_audited(kafka_url, sessions):
    pid, key = new_person()
    authority = unique_authority()  # assesses and makes the plan
    plan_topic, notice_topic = topics.plan_request_topic(authority), topics.notice_topic(authority)

    async def scenario():
        hub = make_hub(kafka_url, "own")
        consent_agents.register(hub, sessions, legal_bases=())  # no consent, no legal basis
        got = Collector(hub, plan_topic, notice_topic)
        async with running(hub):
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, authority, "as-own", assessor=authority), key=key)
            await wait_for(lambda: len(got.where(plan_topic, person_key=key)) == 1, 60, "the assessor's own plan request")
            await asyncio.sleep(1.5)  # a relay tick: nothing more arrives
        return got

    got = asyncio.run(scenario())
    [plan] = got.where(plan_topic, person_key=key)
    assert plan["to"] == plan["assessor"] == authority and plan["consent_id"] is None and plan["legal_basis"] is None
    assert plan["data_categories"] == ["education", "work_history", "language_skills", "literacy", "service_needs", "recommended_path"]
    assert plan["service_needs"] == ["childcare"]  # its own data, health category included
    assert got.where(notice_topic, person_key=key) == []  # no consent-required notice
    assert metrics.REGISTRY.get_sample_value("hub_disclosures_total", {"recipient": authority}) is None
    assert metrics.REGISTRY.get_sample_value("hub_events_consumed_total", {"topic": topics.ASSESSMENTS, "outcome": "own_plan"}) >= 1
    with sessions() as s:
        assert store.disclosures(s, key) == []  # no audit row as a disclosure
        [row] = s.scalars(sa.select(store.Disclosure).where(store.Disclosure.person_key == key))
        assert row.disclosed is False and row.request_id == plan["request_id"]  # the plan-request ledger's row
        assert list(s.scalars(sa.select(store.HeldItem).where(store.HeldItem.person_key == key))) == []


def test_held_then_granted_then_released_with_only_the_covered_categories(kafka_url, sessions):
    pid, key = new_person()
    plan_authority = unique_authority()
    plan_topic = topics.plan_request_topic(plan_authority)

    async def scenario():
        hub = make_hub(kafka_url, "release")
        consent_agents.register(hub, sessions, legal_bases=())
        got = Collector(hub, plan_topic, topics.notice_topic(ASSESSOR), topics.notice_topic(plan_authority))
        async with running(hub):
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, plan_authority, "as-1"), key=key)
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, plan_authority, "as-2"), key=key)
            await wait_for(lambda: len(got.where(person_key=key, notice_type="consent_required")) == 2, 60, "two consent-required notices")
            assert got.where(to=plan_authority) == []
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, f"c-{key[:8]}", "granted", [plan_authority], ["education", "language_skills"]), key=key)
            await wait_for(lambda: len(got.where(to=plan_authority, person_key=key)) == 2, 60, "two released plan requests")
            await asyncio.sleep(1.5)  # a relay tick: nothing more arrives
        return got

    got = asyncio.run(scenario())
    assert metrics.REGISTRY.get_sample_value("hub_disclosures_total", {"recipient": plan_authority}) == 2
    assert metrics.REGISTRY.get_sample_value("hub_events_consumed_total", {"topic": topics.ASSESSMENTS, "outcome": "held"}) >= 2
    assert metrics.REGISTRY.get_sample_value("hub_assessment_to_plan_request_seconds_count") >= 2
    notices = got.where(person_key=key, notice_type="consent_required")
    assert {n["to"] for n in notices} == {ASSESSOR} and all(plan_authority in n["message"] for n in notices)
    assert got.where(topics.notice_topic(ASSESSOR), person_key=key) == notices  # on the assessor's own notice topic ...
    assert got.where(topics.notice_topic(plan_authority)) == []  # ... and not on the plan-making authority's
    plans = got.where(to=plan_authority, person_key=key)
    assert [p["assessment_id"] for p in plans] == ["as-1", "as-2"]  # released in order
    for p in plans:
        assert p["data_categories"] == ["education", "language_skills"] and p["consent_id"] == f"c-{key[:8]}"
        assert p["work_history"] is None and p["literacy"] is None and p["recommended_path"] is None and p["service_needs"] == []
        assert p["language_skills"][0]["cefr_level"] == "A2"
    with sessions() as s:
        audit = store.disclosures(s, key)
        assert [(d.recipient, d.consent_id) for d in audit] == [(plan_authority, f"c-{key[:8]}")] * 2
        held = list(s.scalars(sa.select(store.HeldItem).where(store.HeldItem.person_key == key).order_by(store.HeldItem.id)))
        # the originals are released; their health data (service_needs), which the consent does not cover, stays held apart
        assert sorted((h.assessment_id, h.released_at is None, h.reason) for h in held) == [
            ("as-1", False, "no_consent"), ("as-1", True, "no_category_covered"), ("as-2", False, "no_consent"), ("as-2", True, "no_category_covered")]
        assert store.history(s, key)[0].person_id == pid  # the identity code is kept, sealed
        # the raw rows hold neither the identity code (nor its digits) nor the assessment's data in clear
        clear = clear_in_tables(s.get_bind(), ["consent_events", "held_items", "disclosures", "outbox"],
                                [pid, digits_of(pid), "6 years construction", "literate in Latin script", "vocational upper secondary"])
        assert clear == []


def test_revocation_notifies_each_earlier_recipient_and_stops_disclosure(kafka_url, sessions):
    pid, key = new_person()
    first, second = unique_authority(), unique_authority()
    cid = f"c-{key[:8]}"

    async def scenario():
        hub = make_hub(kafka_url, "revoke")
        consent_agents.register(hub, sessions, legal_bases=())
        got = Collector(hub, topics.plan_request_topic(first), topics.plan_request_topic(second),
                        topics.notice_topic(first), topics.notice_topic(second), topics.notice_topic(ASSESSOR))
        async with running(hub):
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, cid, "granted", [first, second], ["education"]), key=key)
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, first, "as-1"), key=key)
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, second, "as-2"), key=key)
            await wait_for(lambda: len(got.where(person_key=key, assessment_id="as-1", to=first)) == 1
                           and len(got.where(person_key=key, assessment_id="as-2", to=second)) == 1, 60, "two plan requests")
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, cid, "revoked"), key=key)
            await wait_for(lambda: len(got.where(person_key=key, notice_type="consent_revoked")) == 2, 60, "two revocation notices")
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, first, "as-3"), key=key)
            await wait_for(lambda: len(got.where(person_key=key, notice_type="consent_required", assessment_id="as-3")) == 1, 60, "a hold after revocation")
            await asyncio.sleep(1.5)
        return got

    got = asyncio.run(scenario())
    revoked = got.where(person_key=key, notice_type="consent_revoked")
    assert sorted(n["to"] for n in revoked) == sorted([first, second]) and all(n["consent_id"] == cid for n in revoked)
    # each earlier recipient's notice lands on its own notice topic, none on the other's
    for recipient, other in ((first, second), (second, first)):
        on_own = got.where(topics.notice_topic(recipient))
        assert [(n["to"], n["notice_type"], n["consent_id"]) for n in on_own] == [(recipient, "consent_revoked", cid)]
        assert not any(n["to"] == other for n in on_own)
    # the assessor's topic has only its own consent-required notices (the hold of as-3; as-1 may also have been
    # held for a moment, when it overtook the grant on another topic), never the recipients' revocations
    to_assessor = got.where(topics.notice_topic(ASSESSOR), person_key=key)
    assert "as-3" in [n["assessment_id"] for n in to_assessor]
    assert all(n["to"] == ASSESSOR and n["notice_type"] == "consent_required" for n in to_assessor)
    assert got.where(assessment_id="as-3", to=first) == []  # no disclosure after the revocation
    with sessions() as s:
        assert [d.assessment_id for d in store.disclosures(s, key)] == ["as-1", "as-2"]


class CrashAfterPublish(OutboxRelay):
    """A relay whose process dies after the broker acknowledged a message but before it was marked sent."""

    def _mark_sent(self, row_id):
        raise RuntimeError("simulated crash between the publish and marking the row sent")


@pytest.mark.parametrize("crash", ["after_commit", pytest.param("after_publish", marks=pytest.mark.xfail(
    strict=False, reason="on main the first (crashed) relay's acknowledged copy is not seen on the wire, only the resend: "
    "one request id either way (the effect holds), but the at-least-once copy count is under investigation"))])
def test_worker_dies_between_commit_and_publish_and_the_plan_request_arrives_once(kafka_url, sessions, crash):
    pid, key = new_person()
    plan_authority = unique_authority()
    plan_topic = topics.plan_request_topic(plan_authority)

    def unsent_plan_rows():
        with sessions() as s:
            return [r for r in outbox.pending(s, 10_000) if r.topic == plan_topic]

    async def first_worker():
        hub = make_hub(kafka_url, f"crash1-{crash}")
        # relay=False: the worker commits the outbox row, the audit row and the processed mark, then dies
        wiring = consent_agents.register(hub, sessions, legal_bases=(), relay=False)
        async with running(hub):
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, f"c-{key[:8]}", "granted", [plan_authority], ["education"]), key=key)
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, plan_authority, "as-1"), key=key)
            await wait_for(lambda: len(unsent_plan_rows()) == 1, 60, "the plan request committed to the outbox")
            if crash == "after_publish":
                with pytest.raises(RuntimeError, match="simulated crash"):
                    await CrashAfterPublish(hub, sessions).flush()
        return wiring

    async def second_worker():
        hub = make_hub(kafka_url, f"crash2-{crash}")
        consent_agents.register(hub, sessions, legal_bases=(), relay_interval=0.2)
        got = Collector(hub, plan_topic)
        async with running(hub):
            await wait_for(lambda: unsent_plan_rows() == [] and got.records, 60, "the restarted worker's relay")
            await asyncio.sleep(2)  # several relay ticks: nothing is sent again
        return got

    asyncio.run(first_worker())
    assert len(unsent_plan_rows()) == 1
    got = asyncio.run(second_worker())
    on_the_wire = [r["request_id"] for r in got.records]
    if crash == "after_commit":
        assert len(on_the_wire) == 1  # exactly once, on the wire too
    else:
        assert len(on_the_wire) == 2  # at-least-once on the wire: published, not marked, published again ...
    assert len(set(on_the_wire)) == 1  # ... one request id, so a consumer deduplicating by it sees one request
    with sessions() as s:
        assert len(store.disclosures(s, key)) == 1


def test_bad_records_are_dead_lettered_with_a_reason_and_processing_goes_on(kafka_url, sessions):
    pid, key = new_person()
    plan_authority = unique_authority()
    bad_pid = pid[:-1] + ("X" if pid[-1] != "X" else "Y")

    async def scenario():
        hub = make_hub(kafka_url, "dead")
        consent_agents.register(hub, sessions, legal_bases=())
        got = Collector(hub, topics.DEAD_LETTERS, topics.plan_request_topic(plan_authority))
        marker = uuid.uuid4().bytes
        async with running(hub):
            await hub.producer.send_and_wait(topics.ASSESSMENTS, b"not avro", marker)
            bad = consent(bad_pid, "c-bad", "granted", [plan_authority], ["education"])
            await hub.publisher.publish(topics.CONSENTS, "Consent", bad, key=marker)
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, f"c-{key[:8]}", "granted", [plan_authority], ["education"]), key=key)
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, plan_authority), key=key)
            await wait_for(lambda: len(got.where(original_key=marker)) == 2 and got.where(to=plan_authority), 60, "two dead letters and the plan request")
        return got, marker

    got, marker = asyncio.run(scenario())
    letters = got.where(original_key=marker)
    assert sorted(d["reason"] for d in letters) == ["invalid_person_id", "wrong_magic"]
    assert all(bad_pid not in d["message"] for d in letters)


def test_hub_worker_killed_after_the_commit_and_restarted_sends_the_plan_request_once(kafka_url, sessions, database_url, tmp_path):
    """Real processes: `hub worker` commits the plan request to the outbox (its relay switched off, so
    the publish cannot happen first), is killed with SIGKILL, and a restarted worker (same consumer
    group) publishes it: it arrives exactly once, and the redelivered input events change nothing."""
    import os
    import signal
    import subprocess
    import sys

    pid, key = new_person()
    plan_authority = unique_authority()
    plan_topic = topics.plan_request_topic(plan_authority)
    env = {**os.environ, "HUB_KAFKA_URL": kafka_url, "HUB_DATABASE_URL": database_url, "HUB_APP_ID": f"consent-worker-{uuid.uuid4().hex[:6]}",
           "HUB_PERSON_KEY_SECRET": SECRET, "HUB_DATA_KEYS": DATA_KEY, "HUB_DATA_DIR": str(tmp_path), "HUB_LOG_LEVEL": "WARNING", "HUB_CONSENT_LEGAL_BASES": "", "HUB_METRICS_PORT": "0"}

    def start_worker(**extra):
        log = open(tmp_path / f"worker-{len(list(tmp_path.glob('worker-*')))}.log", "w")
        return subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def unsent_plan_rows():
        with sessions() as s:
            return [r for r in outbox.pending(s, 10_000) if r.topic == plan_topic]

    def stop(proc, sig=signal.SIGTERM):
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    async def scenario():
        hub = make_hub(kafka_url, "observer")
        got = Collector(hub, plan_topic)
        async with running(hub):
            first = start_worker(HUB_OUTBOX_RELAY="off")
            try:
                await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, f"c-{key[:8]}", "granted", [plan_authority], ["education"]), key=key)
                await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, plan_authority, "as-1"), key=key)
                await wait_for(lambda: len(unsent_plan_rows()) == 1, 90, "the first worker's commit to the outbox")
            finally:
                stop(first, signal.SIGKILL)
            assert got.records == []
            second = start_worker()
            try:
                await wait_for(lambda: got.records and unsent_plan_rows() == [], 90, "the restarted worker's publish")
                await asyncio.sleep(2)
            finally:
                stop(second)
        return got

    got = asyncio.run(scenario())
    assert [r["assessment_id"] for r in got.records] == ["as-1"]
    with sessions() as s:
        assert len(store.disclosures(s, key)) == 1
