"""The retention job removes what is past the age, keeps what is not (or still open), and records itself."""

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from hub.adapters.circumstances_store import PersonCircumstancesRow
from hub.adapters.database import create_engine, session_factory, upgrade
from hub.adapters.dead_letter_store import DeadLetterRow
from hub.adapters.idempotency import ProcessedEvent
from hub.adapters.outbox import OutboxMessage
from hub.adapters.referral_ledger import ReferralEventRow, ReferralRow
from hub.adapters.retention import RetentionRun, run_retention
from hub.adapters.consent_store import ConsentEvent, ConsentTombstone, Disclosure
from hub.domain import hetu

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
OLD = NOW - dt.timedelta(days=400)
NEW = NOW - dt.timedelta(days=10)
SECRET = "retention-test-secret"
PERSON, OTHER = "010101-900R", hetu.make(dt.date(1980, 2, 2), 933)


def referral(rid, state, at, seq):
    return ReferralRow(referral_id=rid, authority="municipality:ret-test", purpose="outreach", rule="r", rules_version="1", person_key=f"k-{rid}",
                       newcomer_event_id=None, due=None, created_at=at, updated_at=at, state=state, sequence=seq, turvakielto=False, payload="{}",
                       published_at=at)


def consent_event(cid, action, at, n, person=PERSON):
    return ConsentEvent(event_id=f"{cid}-{n}-{person[-4:]}", consent_id=cid, person_id=person, person_key=hetu.person_key(person, SECRET), action=action, purpose="integration_plan",
                        data_categories="[]", recipients="[]", recorded_by="municipality:091", recorded_at=at, stored_at=at)


def seed(s):
    s.add_all([referral("old-closed", "completed", OLD, 1), referral("old-open", "accepted", OLD, 2), referral("new-closed", "declined", NEW, 3)])
    s.flush()
    s.add_all([ReferralEventRow(referral_id=r, event_id=None, state="accepted", reason=None, reported_by="x", occurred_at=OLD, recorded_at=OLD)
               for r in ("old-closed", "old-open")])
    s.add_all([consent_event("c-ended", "granted", OLD - dt.timedelta(days=5), 1), consent_event("c-ended", "revoked", OLD, 2),
               consent_event("c-active", "granted", OLD, 1),
               # two persons' consents with one id (ids are the publishers' free text): one ended, one in force
               consent_event("c-shared", "granted", OLD - dt.timedelta(days=5), 1), consent_event("c-shared", "revoked", OLD, 2),
               consent_event("c-shared", "granted", OLD, 1, person=OTHER)])
    box = [OutboxMessage(topic="t", key=None, schema_name="PlanRequest", event_id=f"e{i}", value=b"x", headers="[]", created_at=at, sent_at=at)
           for i, at in enumerate((OLD, NEW))]
    s.add_all(box)
    s.flush()
    s.add_all([Disclosure(request_id=f"rq{i}", person_key="k", recipient="municipality:091", assessor="employment_authority:08",
                          assessment_id="a", data_categories="[]", consent_id="c-active", legal_basis=None, disclosed_at=b.sent_at, outbox_id=b.id)
               for i, b in enumerate(box)])
    s.add_all([ProcessedEvent(consumer="c", event_id="old", processed_at=OLD), ProcessedEvent(consumer="c", event_id="new", processed_at=NEW)])
    # routing's circumstances: an old row no referral needs goes (a fact whose newcomer never came),
    # a recent one and one of a person with an open referral stay
    s.add_all([PersonCircumstancesRow(person_key=key, facts="{}", newcomer=None, updated_at=at)
               for key, at in (("ret-pc-old", OLD), ("ret-pc-new", NEW), ("k-old-open", OLD))])
    s.add_all([DeadLetterRow(event_id=f"ret-dl-{name}", original_value=b"x", reason="unprocessable", message="m", created_at=at)
               for name, at in (("old", OLD), ("new", NEW))])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_retention_removes_only_what_is_past_the_age_and_records_the_run(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}" if backend == "sqlite" else request.getfixturevalue("database_url")
    upgrade(url)
    engine = create_engine(url)
    Session = session_factory(engine)
    with Session.begin() as s:  # the PostgreSQL database is shared: only this test's rows are old, and only they are checked
        seed(s)
    with Session.begin() as s:
        removed = run_retention(s, dt.timedelta(days=365), NOW, "test")
    with Session() as s:
        mine = ReferralRow.authority == "municipality:ret-test"
        assert sorted(s.scalars(sa.select(ReferralRow.referral_id).where(mine))) == ["new-closed", "old-open"]
        assert [e.referral_id for e in s.scalars(sa.select(ReferralEventRow).where(ReferralEventRow.referral_id.in_(["old-closed", "old-open"])))] == ["old-open"]
        assert sorted(set(s.scalars(sa.select(ConsentEvent.consent_id).where(ConsentEvent.consent_id.in_(["c-ended", "c-active"]))))) == ["c-active"]
        # the other person's consent that shares the id stays whole; the ended one leaves a tombstone (key, not code)
        assert [(e.person_id, e.action) for e in s.scalars(sa.select(ConsentEvent).where(ConsentEvent.consent_id == "c-shared"))] == [(OTHER, "granted")]
        stones = {(t.consent_id, t.ended_action) for t in s.scalars(sa.select(ConsentTombstone).where(ConsentTombstone.person_key == hetu.person_key(PERSON, SECRET)))}
        assert stones == {("c-ended", "revoked"), ("c-shared", "revoked")}
        assert s.get(ConsentTombstone, (hetu.person_key(OTHER, SECRET), "c-shared")) is None
        assert sorted(s.scalars(sa.select(Disclosure.request_id).where(Disclosure.request_id.in_(["rq0", "rq1"])))) == ["rq1"]
        assert sorted(s.scalars(sa.select(OutboxMessage.event_id).where(OutboxMessage.event_id.in_(["e0", "e1"])))) == ["e1"]
        assert sorted(s.scalars(sa.select(ProcessedEvent.event_id).where(ProcessedEvent.consumer == "c", ProcessedEvent.event_id.in_(["old", "new"])))) == ["new"]
        assert sorted(s.scalars(sa.select(DeadLetterRow.event_id).where(DeadLetterRow.event_id.like("ret-dl-%")))) == ["ret-dl-new"]
        kept = s.scalars(sa.select(PersonCircumstancesRow.person_key).where(PersonCircumstancesRow.person_key.in_(["ret-pc-old", "ret-pc-new", "k-old-open"])))
        assert sorted(kept) == ["k-old-open", "ret-pc-new"]
        run = s.scalars(sa.select(RetentionRun).where(RetentionRun.run_by == "test").order_by(RetentionRun.id.desc())).first()
        assert run.run_by == "test" and json.loads(run.removed) == removed
        assert "010101" not in run.removed
    assert removed["referrals"] >= 1 and removed["consent_events"] >= 2 and removed["disclosures"] >= 1
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_idempotency_marks_and_tombstones_stay_for_the_replay_horizon(backend, tmp_path, request):
    """A short retention age does not remove what a replay could still need: marks and tombstones
    younger than the replay horizon (the topics' retention) stay; older ones go."""
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}" if backend == "sqlite" else request.getfixturevalue("database_url")
    upgrade(url)
    engine = create_engine(url)
    Session = session_factory(engine)
    day = dt.timedelta(days=1)
    with Session.begin() as s:
        s.add_all([ProcessedEvent(consumer="consent-registry", event_id=f"hz-{n}", processed_at=NOW - n * day) for n in (5, 40)])
        s.add_all([ConsentTombstone(person_key=f"hz-key-{n}", consent_id="c", ended_action="revoked", ended_at=OLD, last_seen_at=NOW - n * day) for n in (5, 40)])
    with Session.begin() as s:
        run_retention(s, day, NOW, "test", replay_horizon=30 * day)
    with Session() as s:
        assert list(s.scalars(sa.select(ProcessedEvent.event_id).where(ProcessedEvent.event_id.in_(["hz-5", "hz-40"])))) == ["hz-5"]
        assert list(s.scalars(sa.select(ConsentTombstone.person_key).where(ConsentTombstone.person_key.in_(["hz-key-5", "hz-key-40"])))) == ["hz-key-5"]
    engine.dispose()


def test_retention_cli(tmp_path):
    env = {**os.environ, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": ""}
    out = subprocess.run([sys.executable, "-m", "hub.cli", "retention", "--older-than", "365", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["referrals"] == 0
    bad = subprocess.run([sys.executable, "-m", "hub.cli", "retention", "--older-than", "0"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
