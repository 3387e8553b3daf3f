"""The registry's use cases on an in-memory SQLite: sweep (expiry by time, consents becoming valid),
legal basis in the audit, repeated revocation, redelivery."""

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from hub.adapters import database, outbox
from hub.adapters import consent_store as store
from hub.consent import model, records
from hub.adapters.consent_uow import SqlConsentUnits
from hub.services.consent import ConsentRegistry
from hub.domain import hetu
from hub.schemas.codec import default_codec
from hub.schemas import topics

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
PERSON = hetu.make(dt.date(1990, 5, 17), 941)
KEY = hetu.person_key(PERSON, "s")  # the registry's secret below
EMPLOY, MUNI = "employment_authority:08", "municipality:091"
LAW = model.LegalBasis("681/2023 § 99 (test)", "681/2023 § 99", "integration_plan", frozenset({"municipality"}), frozenset({"employment_authority"}),
                       frozenset({"language_skills"}))


def grant(cid, **kw):
    base = dict(event_id=f"g-{cid}", consent_id=cid, person_id=PERSON, action="granted", recorded_by=MUNI, recorded_at=T0,
                data_categories=frozenset({"education"}), recipients=frozenset({EMPLOY}))
    return model.ConsentRecord(**{**base, **kw})


def assess(registry, n, **data):
    rec = {"event_id": f"00000000-0000-4000-8000-{n:012d}", "occurred_at": T0, "recorded_at": T0, "source": MUNI, "schema_version": 1,
           "assessment_id": f"as-{n}", "person_key": KEY, "person_id": PERSON, "assessor": MUNI, "plan_authority": EMPLOY, "referral_id": None,
           "education": "university", "work_history": None, "language_skills": [], "literacy": None, "recommended_path": None, "service_needs": []}
    rec.update(data)
    return registry.handle_assessment(records.assessment_from_avro(rec), default_codec().encode("AssessmentCompleted", rec))


def sent(registry, schema):
    with registry.units.sessions() as s:
        return [default_codec().decode(r.value).record for r in s.scalars(sa.select(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id)) if r.schema_name == schema]


def rows(registry, schema):
    with registry.units.sessions() as s:
        return [(r.topic, r.key, default_codec().decode(r.value).record)
                for r in s.scalars(sa.select(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id)) if r.schema_name == schema]


def test_each_notice_goes_to_its_addressees_own_notice_topic(registry):
    second = "employment_authority:43"
    assert assess(registry, 1).held == ["no_consent"]  # consent required: to the assessor
    registry.record_consent(grant("c1", recipients=frozenset({EMPLOY, second})))  # releases as-1 to EMPLOY
    assert assess(registry, 2, plan_authority=second).disclosed
    out = registry.record_consent(model.ConsentRecord(event_id="r1", consent_id="c1", person_id=PERSON, action="revoked", recorded_by=MUNI, recorded_at=T0))
    assert sorted(out.notices) == [("consent_revoked", EMPLOY), ("consent_revoked", second)]
    notices = rows(registry, "Notice")
    assert [(topic, n["notice_type"], n["to"]) for topic, _, n in notices] == [
        (topics.notice_topic(MUNI), "consent_required", MUNI),
        *sorted([(topics.notice_topic(EMPLOY), "consent_revoked", EMPLOY), (topics.notice_topic(second), "consent_revoked", second)]),
    ]
    assert all(topic == topics.notice_topic(n["to"]) for topic, _, n in notices)  # never on another authority's topic
    assert {key for _, key, _ in notices} == {KEY.encode()}  # keyed by the person key, as before
    assert not any(topic == "hub.notices.v1" for topic, _, _ in rows(registry, "Notice"))


def test_sweep_records_expiry_by_time_and_notifies_earlier_recipients_once(registry, clock):
    registry.record_consent(grant("c1", valid_until=T0 + dt.timedelta(days=30)))
    assert assess(registry, 1).disclosed
    assert registry.sweep().recorded == []  # not due yet
    clock["now"] = T0 + dt.timedelta(days=31)
    out = registry.sweep()
    assert out.recorded == ["expired"] and out.notices == [("consent_expired", EMPLOY)]
    assert registry.sweep().notices == []  # already recorded: nothing twice
    notices = [n for n in sent(registry, "Notice") if n["notice_type"] == "consent_expired"]
    assert [(n["to"], n["consent_id"]) for n in notices] == [(EMPLOY, "c1")]
    assert [c["action"] for c in sent(registry, "Consent")] == ["expired"]  # others learn it on hub.consents.v1
    assert assess(registry, 2).held == ["expired"]


def test_sweep_releases_items_held_until_a_consent_becomes_valid(registry, clock):
    assert assess(registry, 1).held == ["no_consent"]
    out = registry.record_consent(grant("c1", valid_from=T0 + dt.timedelta(days=2)))
    assert out.released == 0 and registry.held_count() == 1
    clock["now"] = T0 + dt.timedelta(days=3)
    assert registry.sweep().released == 1 and registry.held_count() == 0
    assert registry.sweep().released == 0


def test_legal_basis_disclosure_is_recorded_in_the_audit(registry):
    registry.legal_bases = (LAW,)
    out = assess(registry, 1, language_skills=[{"language": "fi", "skill": "overall", "cefr_level": "B1"}])
    assert out.disclosed == [(EMPLOY, ("language_skills",), T0)]
    [row] = registry.audit(PERSON)
    assert row["legal_basis"] == LAW.name and row["consent_id"] is None and row["data_categories"] == ["language_skills"]
    [plan] = sent(registry, "PlanRequest")
    assert plan["education"] is None and plan["legal_basis"] == LAW.name


def test_a_second_revocation_or_an_expiry_after_it_notifies_nobody_again(registry):
    registry.record_consent(grant("c1"))
    assess(registry, 1)
    first = registry.record_consent(model.ConsentRecord(event_id="r1", consent_id="c1", person_id=PERSON, action="revoked", recorded_by=MUNI, recorded_at=T0))
    again = registry.record_consent(model.ConsentRecord(event_id="r2", consent_id="c1", person_id=PERSON, action="expired", recorded_by=MUNI, recorded_at=T0))
    assert first.notices == [("consent_revoked", EMPLOY)] and again.notices == []


def test_an_end_of_an_ended_consent_appends_nothing_and_says_what_ended_it(registry):
    registry.record_consent(grant("c1"))
    registry.record_consent(model.ConsentRecord(event_id="r1", consent_id="c1", person_id=PERSON, action="revoked", recorded_by=MUNI, recorded_at=T0))
    again = registry.record_consent(model.ConsentRecord(event_id="r2", consent_id="c1", person_id=PERSON, action="revoked", recorded_by=MUNI,
                                                        recorded_at=T0), publish=True)
    assert again.duplicate and again.recorded == [] and again.already_ended.event_id == "r1"
    assert [h["action"] for h in registry.person_view(PERSON)["history"]] == ["granted", "revoked"]
    assert [c["action"] for c in sent(registry, "Consent")] == []  # nothing queued for hub.consents.v1 either


def test_an_expiry_found_by_the_sweep_is_recorded_by_the_hub_not_by_the_grants_recorder(clock):
    engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    database.Base.metadata.create_all(engine)
    registry = ConsentRegistry(SqlConsentUnits(database.session_factory(engine)), person_key_secret="s", clock=lambda: clock["now"], recorded_by="hub-test-app")
    registry.record_consent(grant("c1", valid_until=T0 + dt.timedelta(days=1)))
    clock["now"] = T0 + dt.timedelta(days=2)
    assert registry.sweep().recorded == ["expired"]
    history = registry.person_view(PERSON)["history"]
    assert [(h["action"], h["recorded_by"]) for h in history] == [("granted", MUNI), ("expired", "hub-test-app")]
    [event] = sent(registry, "Consent")
    assert event["recorded_by"] == "hub-test-app" and event["source"] == "hub-test-app"
    assert records.consent_from_avro(event).recorded_by == "hub-test-app"  # the worker's own agent reads it back from hub.consents.v1
    engine.dispose()


def test_redelivered_events_change_nothing(registry):
    assert registry.record_consent(grant("c1")).recorded == ["granted"]
    assert registry.record_consent(grant("c1")).duplicate
    assert assess(registry, 1).disclosed and assess(registry, 1).duplicate
    with registry.units.sessions() as s:
        assert len(store.disclosures(s, KEY)) == 1 and outbox.unsent_count(s) == 1
        assert json.loads(store.disclosures(s, KEY)[0].data_categories) == ["education"]


OTHER = hetu.make(dt.date(1985, 9, 9), 942)


def test_two_persons_consents_with_one_id_are_two_consents(registry, clock):
    """Consent ids are the publishers' free text: another person's consent with the same id is ended,
    expired, notified about and refused on its own."""
    registry.record_consent(grant("shared", valid_until=T0 + dt.timedelta(days=10)))
    registry.record_consent(grant("shared", event_id="g-shared-other", person_id=OTHER, valid_until=T0 + dt.timedelta(days=10)))
    assess(registry, 1)
    other = {"person_id": OTHER, "person_key": hetu.person_key(OTHER, "s"), "event_id": "00000000-0000-4000-8000-000000000099"}
    assess(registry, 2, **other)
    registry.record_consent(grant("shared", event_id="r-shared", action="revoked"))
    clock["now"] = T0 + dt.timedelta(days=11)
    out = registry.sweep()  # the first person's revoked consent does not hide the other person's expiry
    assert out.recorded == ["expired"] and out.notices == [("consent_expired", EMPLOY)]
    with registry.units.sessions() as s:
        statuses = {pid: model.current_consents(store.history(s, hetu.person_key(pid, "s")))["shared"].status(clock["now"]) for pid in (PERSON, OTHER)}
        notices = [m for m in s.scalars(sa.select(outbox.OutboxMessage)) if m.schema_name == "Notice" and m.topic == topics.notice_topic(EMPLOY)]
    assert statuses == {PERSON: "revoked", OTHER: "expired"}
    assert len({n.event_id for n in notices}) == len(notices) == 2  # one notice per person, not one per consent id
    with pytest.raises(model.InvalidConsent) as refused:
        registry.record_consent(grant("shared", event_id="g-again", person_id=OTHER))
    assert refused.value.reason == "consent_ended" and OTHER not in str(refused.value)
    registry.record_consent(grant("fresh", event_id="g-fresh", person_id=OTHER))
    with pytest.raises(model.InvalidConsent) as in_use:
        registry.record_consent(grant("fresh", event_id="g-fresh-2", person_id=OTHER, data_categories=frozenset({"literacy"})))
    assert in_use.value.reason == "consent_id_in_use"


def test_an_assessment_keyed_to_another_person_is_refused_and_changes_nothing(registry):
    registry.record_consent(grant("c1"))
    with pytest.raises(model.InvalidConsent) as refused:
        assess(registry, 1, person_key=hetu.person_key(OTHER, "s"))
    assert refused.value.reason == "person_key_mismatch" and PERSON not in str(refused.value)
    with registry.units.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(outbox.OutboxMessage).where(outbox.OutboxMessage.schema_name == "PlanRequest")) == 0
        assert store.held(s, KEY) == []


def test_a_persons_view_lists_the_held_items_read_in_its_transaction(registry):
    assess(registry, 1)
    [item] = registry.person_view(PERSON)["held_items"]
    assert item == {"assessment_id": "as-1", "recipient": EMPLOY, "reason": "no_consent", "held_at": "2026-03-01T00:00:00Z"}


def test_an_own_plan_request_on_sqlite_is_in_the_ledger_not_the_audit_and_old_own_holds_are_swept(registry):
    out = assess(registry, 1, assessor=EMPLOY, source=EMPLOY)
    assert out.own_plans == [(EMPLOY, T0)] and out.held == [] and registry.audit(PERSON) == []
    with registry.units.sessions() as s:
        [row] = s.scalars(sa.select(store.Disclosure))
        assert row.disclosed is False and row.recipient == row.assessor == EMPLOY
    # an item an earlier version held for an assessor that makes the plan itself
    rec = {"event_id": "00000000-0000-4000-8000-000000000077", "occurred_at": T0, "recorded_at": T0, "source": EMPLOY, "schema_version": 1,
           "assessment_id": "as-77", "person_key": KEY, "person_id": PERSON, "assessor": EMPLOY, "plan_authority": EMPLOY, "referral_id": None,
           "education": "university", "work_history": None, "language_skills": [], "literacy": None, "recommended_path": None, "service_needs": []}
    with registry.units.sessions.begin() as s:
        store.add_held(s, assessment=records.assessment_from_avro(rec), person_key=KEY, encoded=default_codec().encode("AssessmentCompleted", rec),
                       reason="no_consent", now=T0)
    with registry.units.sessions() as s:
        assert store.persons_with_own_held_items(s) == [KEY]
    assert registry.sweep().released == 1 and registry.held_count() == 0
    with registry.units.sessions() as s:
        assert store.persons_with_own_held_items(s) == []
    assert [p["assessment_id"] for p in sent(registry, "PlanRequest")] == ["as-1", "as-77"] and registry.audit(PERSON) == []
