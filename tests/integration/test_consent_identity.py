"""A consent's identity and a revocation hold on every path, on the real broker and PostgreSQL:
identity codes only in their canonical form, the person key checked against the identity code, a
consent id shared by two persons, and retention followed by a replay.
"""

import asyncio
import datetime as dt
import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from hub.adapters import database
from hub.adapters.replay import Range, replay
from hub.adapters.retention import run_retention
from hub.adapters import consent_store as store
from hub.consent import model
from hub.adapters.consent_uow import SqlConsentUnits
from hub.services.consent import ConsentRegistry
from hub.domain import hetu
from hub.schemas import topics
from hub.streams import consent_agents
from hub.streams.runner import running, wait_for
from tests.integration.test_consent_propagation import ASSESSOR, DATA_KEY, SECRET, Collector, assessment, consent, make_hub, new_person, unique_authority

pytestmark = pytest.mark.integration
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def status(sessions, pid, consent_id, now=None):
    with sessions() as s:
        current = model.current_consents(store.history(s, hetu.person_key(pid, SECRET)))
    return current[consent_id].status(now or dt.datetime.now(dt.timezone.utc)) if consent_id in current else None


def test_a_revocation_with_fullwidth_digits_is_dead_lettered_and_the_consent_stays_as_it_was(kafka_url, sessions):
    """The same code in fullwidth digits is not another person (who has no consent, so the
    revocation would apply to nobody): it is no code at all, and the revocation is dead-lettered."""
    pid, key = new_person()
    plan_authority = unique_authority()
    cid = f"c-fw-{key[:8]}"
    wide = pid.translate(FULLWIDTH)
    assert wide != pid

    async def scenario():
        hub = make_hub(kafka_url, "fullwidth")
        consent_agents.register(hub, sessions, legal_bases=())
        got = Collector(hub, topics.DEAD_LETTERS)
        marker = uuid.uuid4().bytes
        async with running(hub):
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, cid, "granted", [plan_authority], ["education"]), key=key)
            await wait_for(lambda: status(sessions, pid, cid) == "active", 60, "the grant")
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(wide, cid, "revoked"), key=marker)
            await wait_for(lambda: got.where(original_key=marker), 60, "the revocation's dead letter")
        return got.where(original_key=marker)

    [letter] = asyncio.run(scenario())
    assert letter["reason"] == "invalid_person_id" and "ASCII" in letter["message"]
    assert pid not in letter["message"] and wide not in letter["message"]
    assert status(sessions, pid, cid) == "active"  # the operator sees the revocation failed and resends it correctly
    with sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(store.ConsentEvent).where(store.ConsentEvent.person_key == hetu.person_key(wide, SECRET))) == 0


def test_an_assessment_whose_person_key_is_another_persons_is_dead_lettered_and_nothing_is_disclosed(kafka_url, sessions):
    pid, key = new_person()
    _other, other_key = new_person()
    plan_authority = unique_authority()
    plan_topic = topics.plan_request_topic(plan_authority)

    async def scenario():
        hub = make_hub(kafka_url, "keymismatch")
        consent_agents.register(hub, sessions, legal_bases=())
        got = Collector(hub, topics.DEAD_LETTERS, plan_topic)
        marker = uuid.uuid4().bytes
        async with running(hub):
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, f"c-{key[:8]}", "granted", [plan_authority], ["education"]), key=key)
            wrong = assessment(pid, plan_authority, "as-wrong-key")
            wrong["person_key"] = other_key  # keyed to another person, carrying this person's code and data
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", wrong, key=marker)
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, plan_authority, "as-right"), key=key)
            await wait_for(lambda: got.where(original_key=marker) and got.where(plan_topic, assessment_id="as-right"), 60,
                           "the dead letter and the correct assessment's plan request")
            await asyncio.sleep(1.5)  # a relay tick: nothing more arrives
        return got, marker

    got, marker = asyncio.run(scenario())
    [letter] = got.where(original_key=marker)
    assert letter["reason"] == "person_key_mismatch" and pid not in letter["message"]
    assert [p["assessment_id"] for p in got.on[plan_topic]] == ["as-right"]
    assert got.where(person_key=other_key) == []
    with sessions() as s:
        assert [d.assessment_id for d in store.disclosures(s, hetu.person_key(pid, SECRET))] == ["as-right"]
        assert s.scalar(sa.select(sa.func.count()).select_from(store.HeldItem).where(store.HeldItem.assessment_id == "as-wrong-key")) == 0


@pytest.fixture
def own_sessions(own_database_url):
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    yield database.session_factory(engine)
    engine.dispose()


def test_retention_then_a_replay_neither_resurrects_a_revoked_consent_nor_releases_what_it_held(kafka_url, own_sessions):
    """Retention removes the revoked consent's history while hub.consents.v1 still holds its grant;
    replaying the topic brings nothing back: the idempotency marks stay for the replay horizon, and a
    grant of the consent under a new event id meets the consent's tombstone. (A database of its own:
    the retention run removes everything past its cut-off.)"""
    sessions = own_sessions
    pid, key = new_person()
    plan_authority = unique_authority()
    plan_topic = topics.plan_request_topic(plan_authority)
    cid = f"c-ret-{key[:8]}"
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)

    def replayed_duplicates():
        from hub import metrics

        return metrics.REGISTRY.get_sample_value("hub_events_consumed_total", {"topic": topics.CONSENTS, "outcome": "duplicate"}) or 0

    async def scenario():
        hub = make_hub(kafka_url, "retention")
        consent_agents.register(hub, sessions, legal_bases=())
        got = Collector(hub, plan_topic, topics.DEAD_LETTERS)
        async with running(hub):
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, cid, "granted", [plan_authority], ["education"]), key=key)
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, plan_authority, "as-1"), key=key)
            await wait_for(lambda: got.where(plan_topic, assessment_id="as-1"), 60, "the first plan request")
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, cid, "revoked"), key=key)
            await wait_for(lambda: status(sessions, pid, cid) == "revoked", 60, "the revocation")
            await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", assessment(pid, plan_authority, "as-2"), key=key)
            # as-1's health data (service_needs), which the consent does not cover, is held apart; as-2 is held whole
            await wait_for(lambda: _held(sessions, pid) == ["as-1", "as-2"], 60, "the second assessment held")

            with sessions.begin() as s:  # the consent ended before the cut-off: its history goes
                now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
                removed = run_retention(s, dt.timedelta(seconds=1), now, "test")
            assert removed["consent_events"] >= 2 and status(sessions, pid, cid) is None

            before = replayed_duplicates()
            result = await replay(kafka_url, topics.CONSENTS, Range(from_time=started))
            assert result.republished >= 2
            await wait_for(lambda: replayed_duplicates() >= before + 2, 60, "the replayed grant and revocation seen as duplicates")

            # the same consent under a new event id, after the replayed records in the person's partition
            await hub.publisher.publish(topics.CONSENTS, "Consent", consent(pid, cid, "granted", [plan_authority], ["education"]), key=key)
            await wait_for(lambda: got.where(topics.DEAD_LETTERS, original_key=key.encode()), 60, "the re-grant's dead letter")
            await asyncio.sleep(1.5)  # a relay tick: nothing more arrives
        return got

    got = asyncio.run(scenario())
    [letter] = got.where(topics.DEAD_LETTERS, original_key=key.encode())
    assert letter["reason"] == "consent_ended" and cid in letter["message"] and pid not in letter["message"]
    assert [p["assessment_id"] for p in got.on[plan_topic]] == ["as-1"]
    assert _held(sessions, pid) == ["as-1", "as-2"] and status(sessions, pid, cid) is None
    with sessions() as s:
        stone = s.get(store.ConsentTombstone, (key, cid))
        assert stone is not None and stone.ended_action == "revoked"
        assert store.disclosures(s, hetu.person_key(pid, SECRET)) == []  # as-1's audit row went with the retention run; nothing new


def _held(sessions, pid):
    with sessions() as s:
        return [h.assessment_id for h in store.held(s, hetu.person_key(pid, SECRET))]


def test_hub_consent_revoke_refuses_an_id_two_persons_share_and_revokes_the_one_named(own_database_url, tmp_path):
    """Consent ids are the publishers' free text: two persons' consents may share one. `hub consent
    revoke ID` revokes nobody's until --person says whose, and then only that person's."""
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    registry = ConsentRegistry(SqlConsentUnits(database.session_factory(engine)), person_key_secret=SECRET)
    first, _ = new_person()
    second, _ = new_person()
    plan_authority = unique_authority()
    for pid in (first, second):  # as the consent agent records them from two publishers
        registry.record_consent(model.ConsentRecord(event_id=str(uuid.uuid4()), consent_id="form-1", person_id=pid, action=model.GRANTED,
                                                    recorded_by=ASSESSOR, recorded_at=dt.datetime.now(dt.timezone.utc),
                                                    data_categories=frozenset({"education"}), recipients=frozenset({plan_authority})))
    env = {**os.environ, "HUB_DATABASE_URL": own_database_url, "HUB_KAFKA_URL": "", "HUB_DATA_DIR": str(tmp_path),
           "HUB_PERSON_KEY_SECRET": SECRET, "HUB_DATA_KEYS": DATA_KEY, "HUB_CONSENT_LEGAL_BASES": ""}

    def hub(*args, person=None):  # the identity code on standard input (`--person -`), never in the arguments
        return subprocess.run([sys.executable, "-m", "hub.cli", "consent", *args], capture_output=True, text=True, timeout=120, env=env,
                              **({"input": f"{person}\n"} if person is not None else {"stdin": subprocess.DEVNULL}))

    ambiguous = hub("revoke", "form-1", "--recorded-by", ASSESSOR)
    assert ambiguous.returncode == 2 and "Traceback" not in ambiguous.stderr
    assert "held by 2 persons" in ambiguous.stderr and "--person" in ambiguous.stderr and "nothing was revoked" in ambiguous.stderr
    assert first not in ambiguous.stderr + ambiguous.stdout and second not in ambiguous.stderr + ambiguous.stdout
    with registry.units.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(store.ConsentEvent).where(store.ConsentEvent.action == "revoked")) == 0

    stranger, _ = new_person()
    nobody = hub("revoke", "form-1", "--person", "-", "--recorded-by", ASSESSOR, person=stranger)
    assert nobody.returncode == 1 and "this person has no consent form-1" in nobody.stderr and stranger not in nobody.stderr

    wide = hub("revoke", "form-1", "--person", "-", "--recorded-by", ASSESSOR, person=second.translate(FULLWIDTH))
    assert wide.returncode == 2 and "ASCII" in wide.stderr and "Traceback" not in wide.stderr

    named = hub("revoke", "form-1", "--person", "-", "--recorded-by", ASSESSOR, person=second)
    assert named.returncode == 0, named.stderr
    assert "consent form-1 revoked" in named.stdout and second not in named.stdout
    now = dt.datetime.now(dt.timezone.utc)
    with registry.units.sessions() as s:
        assert model.current_consents(store.history(s, hetu.person_key(second, SECRET)))["form-1"].status(now) == "revoked"
        assert model.current_consents(store.history(s, hetu.person_key(first, SECRET)))["form-1"].status(now) == "active"
    engine.dispose()
