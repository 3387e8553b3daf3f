"""Deciding a disclosure (`ConsentRegistry.handle_assessment`, hub.services.consent) on an in-memory
SQLite, the real store being simpler than a fake of it: a consent that covers the recipient
discloses (plan request in the outbox, keyed by the person key, on the recipient's own topic),
none holds the assessment and tells the assessor, a redelivered assessment changes nothing."""

from hub.schemas import topics
from tests.unit.test_consent_service import EMPLOY, KEY, MUNI, PERSON, T0, assess, grant, rows


def test_a_consent_covering_the_recipient_discloses_a_plan_request_on_its_own_topic(registry):
    registry.record_consent(grant("c1"))
    out = assess(registry, 1)
    assert out.disclosed == [(EMPLOY, ("education",), T0)] and out.held == [] and not out.duplicate
    [(topic, key, plan)] = rows(registry, "PlanRequest")
    assert topic == topics.plan_request_topic(EMPLOY) and key == KEY.encode() and plan["to"] == EMPLOY
    assert plan["education"] == "university"
    [audit] = registry.audit(PERSON)
    assert audit["consent_id"] == "c1" and audit["data_categories"] == ["education"]


def test_without_a_consent_the_assessment_is_held_and_the_assessor_told(registry):
    out = assess(registry, 1)
    assert out.disclosed == [] and out.held == ["no_consent"] and out.notices == [("consent_required", MUNI)]
    assert registry.held_count() == 1 and rows(registry, "PlanRequest") == []
    [(topic, _, notice)] = rows(registry, "Notice")
    assert topic == topics.notice_topic(MUNI) and notice["notice_type"] == "consent_required"


def test_a_consent_for_another_recipient_does_not_disclose(registry):
    registry.record_consent(grant("c1", recipients=frozenset({"employment_authority:43"})))
    assert assess(registry, 1).held and rows(registry, "PlanRequest") == []


def test_a_redelivered_assessment_changes_nothing(registry):
    registry.record_consent(grant("c1"))
    assert assess(registry, 1).disclosed
    again = assess(registry, 1)
    assert again.duplicate and again.disclosed == [] and len(rows(registry, "PlanRequest")) == 1
