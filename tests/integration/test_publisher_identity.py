"""Publisher identity on the real broker and PostgreSQL: with HUB_PUBLISHERS configured, a record on
an input topic must be signed by a publisher that may use its identity fields; anything else is a
`forbidden` dead letter (original bytes kept) and has no effect."""

import asyncio
import datetime as dt
import uuid

import pytest

from hub import metrics
from hub.adapters import database
from hub.adapters.referral_ledger import ReferralLedger
from hub.config import Settings
from hub.domain import hetu
from hub.domain.publishers import Publisher, Publishers, sign_headers
from hub.schemas import topics
from hub.streams import consent_agents, routing_agents
from hub.streams.app import HubApp
from hub.streams.pipeline import hub_app
from hub.schemas.envelope import cloudevent_headers, envelope
from hub.streams.runner import running, wait_for
from tests.personal_data import identity_code_in

pytestmark = pytest.mark.integration

SECRET = "identity-test-secret"
KEYS = {"municipality:091": b"helsinki-key-0123456789abcdef", "municipality:092": b"vantaa-key-0123456789abcdef",
        "wellbeing_area:04": b"vantaa-kerava-wellbeing-key-0123"}
HUB_KEY = b"the-hubs-own-signing-key-0123456"


def identity_settings(app_id: str) -> Settings:
    pubs = [Publisher(who, (key,)) for who, key in KEYS.items()]
    pubs.append(Publisher(app_id, (HUB_KEY,), frozenset({"*"}), frozenset({"*"})))
    return Settings(app_id=app_id, person_key_secret=SECRET, publishers=Publishers.of(pubs))


class Collector:
    """Decoded records received on some topics."""

    def __init__(self, hub: HubApp, *topic_names: str):
        self.records: list[dict] = []
        for name in topic_names:
            async def collect(batch):
                self.records.extend(hub.codec.decode(msg.value).record for msg in batch)

            hub.batch_consumer(f"collect-{name}", name, collect, 500)

    def where(self, **match):
        return [r for r in self.records if all(r.get(k) == v for k, v in match.items())]


async def send_as(hub: HubApp, topic: str, name: str, record: dict, key: str, signer: str | None, key_of: str | None = None) -> bytes:
    """Publish as an outside system would: signed by `signer` with the key of `key_of` (default: its own), or unsigned."""
    value = hub.codec.encode(name, record)
    headers = cloudevent_headers(name, record)
    if signer is not None:
        headers = sign_headers(headers, value, signer, KEYS[key_of or signer])
    await hub.producer.send_and_wait(topic, value, key.encode(), headers=headers)
    return value


def test_assessments_and_consents_only_from_the_publisher_they_name(fresh_kafka_url, database_url):
    database.upgrade(database_url)
    engine = database.create_engine(database_url)
    sessions = database.session_factory(engine)
    pid = hetu.make(dt.date(1987, 3, 3), 941)
    key = hetu.person_key(pid, SECRET)
    plan_authority = "employment_authority:43"
    forbidden_before = metrics.dead_letters.labels("forbidden")._value.get()

    def assessment(assessment_id, assessor="municipality:091", source="municipality:091"):
        rec = envelope(source)
        rec.update(assessment_id=assessment_id, person_key=key, person_id=pid, assessor=assessor, plan_authority=plan_authority,
                   referral_id=None, education="upper secondary", work_history=None, language_skills=[], literacy=None,
                   recommended_path="employment", service_needs=[])
        return rec

    def consent(recorded_by):
        rec = envelope(recorded_by)
        rec.update(consent_id=f"c-{key[:8]}", person_id=pid, action="granted", purpose="integration_plan", data_categories=["education"],
                   recipients=[plan_authority], valid_from=None, valid_until=None, evidence="form 1", recorded_by=recorded_by)
        return rec

    async def scenario():
        hub = hub_app(identity_settings(f"identity-consent-{uuid.uuid4().hex[:6]}"), fresh_kafka_url)
        wiring = consent_agents.register(hub, sessions, legal_bases=())
        got = Collector(hub, topics.plan_request_topic(plan_authority), topics.DEAD_LETTERS,
                        topics.notice_topic("municipality:091"), topics.notice_topic("municipality:092"))
        async with running(hub):
            # Vantaa records a consent in Helsinki's name: refused, so nothing is covered by it
            forged_consent = await send_as(hub, topics.CONSENTS, "Consent", consent("municipality:091"), key, "municipality:092")
            # Helsinki's own consent, then assessments: as Vantaa, unsigned, Vantaa's key under Helsinki's name, and its own
            await send_as(hub, topics.CONSENTS, "Consent", consent("municipality:091"), key, "municipality:091")
            # consents and assessments are separate streams: an assessment handled before the consent
            # would be held and released (a consent-required notice), which is not what this test is about
            await wait_for(lambda: wiring.registry.person_view(pid)["consents"], 60, "Helsinki's consent applied")
            as_other = await send_as(hub, topics.ASSESSMENTS, "AssessmentCompleted", assessment("as-other", assessor="municipality:092"), key, "municipality:091")
            unsigned = await send_as(hub, topics.ASSESSMENTS, "AssessmentCompleted", assessment("as-unsigned"), key, None)
            wrong_key = await send_as(hub, topics.ASSESSMENTS, "AssessmentCompleted", assessment("as-wrong-key"), key, "municipality:091", key_of="municipality:092")
            await send_as(hub, topics.ASSESSMENTS, "AssessmentCompleted", assessment("as-good"), key, "municipality:091")
            await wait_for(lambda: len(got.where(to=plan_authority, person_key=key)) == 1, 60, "the plan request of the signed assessment")
            await wait_for(lambda: len(got.where(reason="forbidden")) == 4, 30, "four forbidden dead letters")
            await asyncio.sleep(1.5)  # a relay tick: nothing more arrives
        return got, forged_consent, as_other, unsigned, wrong_key

    try:
        got, forged_consent, as_other, unsigned, wrong_key = asyncio.run(scenario())
    finally:
        engine.dispose()
    assert [p["assessment_id"] for p in got.where(to=plan_authority, person_key=key)] == ["as-good"]
    assert got.where(notice_type="consent_required") == []  # the refused ones were never held either
    dead = {bytes(d["original_value"]): d for d in got.where(reason="forbidden")}
    assert set(dead) == {forged_consent, as_other, unsigned, wrong_key}  # original bytes kept
    assert "municipality:092" in dead[forged_consent]["message"] and "recorded_by=" in dead[forged_consent]["message"]
    assert "municipality:091" in dead[as_other]["message"] and "assessor=" in dead[as_other]["message"]
    assert "not signed" in dead[unsigned]["message"] and "does not verify" in dead[wrong_key]["message"]
    assert all(d["original_topic"] in (topics.CONSENTS, topics.ASSESSMENTS) for d in dead.values())
    assert not any(identity_code_in(d["message"]) for d in dead.values())
    assert metrics.dead_letters.labels("forbidden")._value.get() - forbidden_before == 4


def test_a_referral_status_from_a_forged_authority_is_forbidden(kafka_url, database_url):
    database.upgrade(database_url)
    uid = uuid.uuid4().hex[:8]
    names = {"newcomers": f"test.{uid}.newcomers", "status": f"test.{uid}.referral-status"}
    engine = database.create_engine(database_url)
    ledger = ReferralLedger(engine)
    pid = hetu.make(dt.date(1991, 6, 6), 942)
    pk = f"pk-identity-{uid}"

    def topic_for(authority):
        return f"test.{uid}.{topics.referral_topic(authority)}"

    async def scenario():
        app_id = f"identity-routing-{uid}"
        hub = hub_app(identity_settings(app_id), kafka_url, signed_topics=(names["status"],))
        seen = routing_agents.register(hub, ledger=ledger, newcomers_topic=names["newcomers"], status_topic=names["status"], topic_for=topic_for)
        wellbeing = Collector(hub, topic_for("wellbeing_area:04"), topics.DEAD_LETTERS)
        async with running(hub):
            rec = envelope("hub:newcomer-detection", occurred_at=dt.datetime(2025, 6, 15, 9, tzinfo=dt.timezone.utc))
            rec.update(person_key=pk, person_id=pid, municipality_code="092", labour_force_status="unemployed_job_seeker",
                       service_needs=["health"], arrival_date=dt.date(2025, 5, 1))
            await hub.publisher.publish(names["newcomers"], "Newcomer", rec, key=pk)  # the hub's own record, signed by the hub
            await wait_for(lambda: len(wellbeing.where(person_key=pk)) == 1, 60, "the wellbeing area's referral")
            referral_id = wellbeing.where(person_key=pk)[0]["referral_id"]

            def status(authority, state, source=None):
                s = envelope(source or authority)
                s.update(referral_id=referral_id, authority=authority, status=state, reason=None)
                return s

            # Vantaa's system claims to be the wellbeing area: signed by Vantaa -> forbidden, the ledger unmoved
            forged = await send_as(hub, names["status"], "ReferralStatus", status("wellbeing_area:04", "declined"), referral_id, "municipality:092")
            unsigned = await send_as(hub, names["status"], "ReferralStatus", status("wellbeing_area:04", "declined"), referral_id, None)
            await send_as(hub, names["status"], "ReferralStatus", status("wellbeing_area:04", "accepted"), referral_id, "wellbeing_area:04")
            await wait_for(lambda: seen.consumed[(names["status"], "applied")] == 1, 60, "the genuine status applied")
            await wait_for(lambda: len(wellbeing.where(original_topic=names["status"], reason="forbidden")) == 2, 30, "two forbidden statuses")
        return referral_id, wellbeing, forged, unsigned, seen

    try:
        referral_id, wellbeing, forged, unsigned, seen = asyncio.run(scenario())
        assert ledger.state(referral_id) == "accepted"
        assert [h[:2] for h in ledger.history(referral_id)] == [("sent", "hub"), ("accepted", "wellbeing_area:04")]
    finally:
        engine.dispose()
    dead = {bytes(d["original_value"]): d for d in wellbeing.where(original_topic=names["status"], reason="forbidden")}
    assert set(dead) == {forged, unsigned}
    assert "'municipality:092'" in dead[forged]["message"] and "authority=" in dead[forged]["message"]
    # the routing agent never saw them (its own `forbidden` check is for a genuine authority that is not the recipient)
    assert seen.consumed[(names["status"], "dead_letter")] == 0
