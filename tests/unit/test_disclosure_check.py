"""The send-time rule, pure: a plan request goes only while the consent or legal basis it names
still covers it (revocation, expiry, a legal basis taken out of the configuration stop it)."""

import datetime as dt

from hub.consent.disclosure_check import why_not_send
from hub.consent.model import LegalBasis
from hub.consent.records import derived_id
from hub.consent.model import ConsentRecord

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
PERSON, RECIPIENT = "010190-900P", "employment_authority:08"
LAW = LegalBasis("681/2023 § 80", "681/2023 § 80", "integration_plan", frozenset({"municipality"}), frozenset({"employment_authority"}), frozenset({"education"}))


def grant(consent_id="c1", until=None, categories=("education", "language_skills"), recipients=(RECIPIENT,)):
    return ConsentRecord(event_id=derived_id("g", consent_id), consent_id=consent_id, person_id=PERSON, action="granted", recorded_by="municipality:091",
                         recorded_at=T0, data_categories=frozenset(categories), recipients=frozenset(recipients), valid_until=until)


def ended(action, consent_id="c1"):
    return ConsentRecord(event_id=derived_id(action, consent_id), consent_id=consent_id, person_id=PERSON, action=action,
                         recorded_by="municipality:091", recorded_at=T0)


def plan(consent_id="c1", legal_basis=None, categories=("education",), person=PERSON, assessor="municipality:091"):
    return {"request_id": "r1", "person_id": person, "to": RECIPIENT, "assessor": assessor, "consent_id": consent_id, "legal_basis": legal_basis,
            "data_categories": list(categories)}


def test_a_plan_request_goes_while_its_consent_is_in_force():
    assert why_not_send(plan(), [grant()], (), T0) is None


def test_revocation_or_expiry_after_the_decision_stops_it():
    assert why_not_send(plan(), [grant(), ended("revoked")], (), T0) == "consent_revoked"
    assert why_not_send(plan(), [grant(), ended("expired")], (), T0) == "consent_expired"
    assert why_not_send(plan(), [grant(until=T0 + dt.timedelta(days=1))], (), T0 + dt.timedelta(days=2)) == "consent_expired"


def test_it_is_never_moved_onto_another_consent_or_person():
    assert why_not_send(plan(), [grant(), ended("revoked"), grant("c2")], (), T0) == "consent_revoked"
    assert why_not_send(plan(consent_id="c9"), [grant()], (), T0) == "consent_unknown"
    assert why_not_send(plan(), [], (), T0) == "consent_unknown"  # history gone (e.g. removed by retention)
    assert why_not_send(plan(person="020202A999X"), [grant()], (), T0) == "consent_unknown"
    assert why_not_send({**plan(), "person_id": None}, [grant()], (), T0) == "no_basis"


def test_a_legal_basis_must_still_be_configured_and_cover_the_categories():
    on_law = plan(consent_id=None, legal_basis=LAW.name)
    assert why_not_send(on_law, [], (LAW,), T0) is None
    assert why_not_send(on_law, [], (), T0) == "legal_basis_withdrawn"
    assert why_not_send(plan(consent_id=None, legal_basis=None), [], (LAW,), T0) == "no_basis"
    both = plan(legal_basis=LAW.name, categories=("education", "language_skills"))
    assert why_not_send(both, [grant()], (LAW,), T0) is None
    assert why_not_send(both, [grant(categories=("language_skills",))], (), T0) == "legal_basis_withdrawn"
    assert why_not_send(both, [grant(), ended("revoked")], (LAW,), T0) == "consent_revoked"  # the consent it rests on is gone


def test_a_legal_basis_still_covers_only_its_discloser():
    # decided on the basis for municipality -> employment authority; a plan request of a wellbeing area naming it is not covered
    assert why_not_send(plan(consent_id=None, legal_basis=LAW.name, assessor="wellbeing_area:01"), [], (LAW,), T0) == "legal_basis_withdrawn"


def test_a_plan_request_to_its_own_assessor_needs_no_basis():
    own = plan(consent_id=None, legal_basis=None, categories=("education", "service_needs"), assessor=RECIPIENT)
    assert why_not_send(own, [], (), T0) is None
    assert why_not_send(own, [grant(), ended("revoked")], (), T0) is None  # no consent was used: a revocation does not concern it
