"""Between Avro records (dicts from the codec) and the consent domain types; the events it emits.

Pure: no I/O. Event ids of what the hub emits are deterministic (UUIDv5 of what caused them), so a
re-run of the same input gives the same ids and downstream deduplication by event id holds.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid

from hub.consent.model import (
    DATA_CATEGORIES,
    GRANTED,
    Assessment,
    ConsentRecord,
    Disclose,
    Hold,
    InvalidConsent,
    OwnPlan,
    check_authority,
    check_categories,
)
from hub.domain import hetu
from hub.domain.clock import DEFAULT_CLOCK_SKEW, FutureDate, check_not_future, utcnow

NAMESPACE = uuid.UUID("6f0c1f1e-3b0a-4c55-9a55-7f3c1d2b9e01")
SOURCE = "hub:consent"


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _person(value) -> str:
    try:
        return hetu.validate(value)
    except hetu.InvalidHetu as exc:
        raise InvalidConsent("invalid_person_id", f"person_id: {exc}") from None


def _not_future(rec: dict, now: dt.datetime | None, skew: dt.timedelta) -> None:
    if now is not None:
        try:
            check_not_future(rec.get("occurred_at"), now, skew=skew)
        except FutureDate as exc:
            raise InvalidConsent(exc.reason, exc.message) from None


def consent_from_avro(rec: dict, now: dt.datetime | None = None, skew: dt.timedelta = DEFAULT_CLOCK_SKEW) -> ConsentRecord:
    """A Consent event as a history record. Raises InvalidConsent (reason code, no personal data);
    with `now`, also for an occurred_at after it (hub.domain.clock)."""
    _not_future(rec, now, skew)
    return ConsentRecord(
        event_id=str(rec["event_id"]),
        consent_id=rec["consent_id"],
        person_id=_person(rec["person_id"]),
        action=rec["action"],
        recorded_by=rec["recorded_by"],
        recorded_at=_aware(rec["occurred_at"]),
        purpose=rec.get("purpose") or "integration_plan",
        data_categories=check_categories(rec.get("data_categories") or ()),
        recipients=frozenset(rec.get("recipients") or ()),
        valid_from=_aware(rec.get("valid_from")),
        valid_until=_aware(rec.get("valid_until")),
        evidence=rec.get("evidence"),
    )


def consent_to_avro(c: ConsentRecord, source: str | None = None) -> dict:
    now = utcnow()
    return {
        "event_id": c.event_id,
        "occurred_at": c.recorded_at,
        "recorded_at": now,
        "source": source or c.recorded_by,
        "schema_version": 1,
        "consent_id": c.consent_id,
        "person_id": c.person_id,
        "action": c.action,
        "purpose": c.purpose,
        "data_categories": [x for x in DATA_CATEGORIES if x in c.data_categories],
        "recipients": sorted(c.recipients),
        "valid_from": c.valid_from,
        "valid_until": c.valid_until,
        "evidence": c.evidence,
        "recorded_by": c.recorded_by,
    }


def assessment_data(rec: dict) -> dict:
    """Category -> value for the categories the assessment actually holds (empty ones are not data)."""
    return {c: rec.get(c) for c in DATA_CATEGORIES if rec.get(c) not in (None, "", [])}


def check_person_key(person_id: str, person_key: str, secret: str) -> None:
    """InvalidConsent `person_key_mismatch` unless `person_key` is the key of `person_id` under the
    hub's secret: a record keyed to one person must not carry another person's code and data."""
    if not isinstance(person_key, str) or not hmac.compare_digest(hetu.person_key(person_id, secret).encode(), person_key.encode()):
        raise InvalidConsent(
            "person_key_mismatch",
            "person_key is not the key of person_id under this hub's HUB_PERSON_KEY_SECRET: the record names one person and is "
            "keyed to another; publish it with the person_key the hub gave this person (the referral's person_key)",
        )


def assessment_from_avro(rec: dict, now: dt.datetime | None = None, skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
                         person_key_secret: str | None = None) -> Assessment:
    """An AssessmentCompleted event as the consent rules need it. Raises InvalidConsent; with `now`,
    also for an occurred_at after it; with `person_key_secret`, also for a person_key that is not
    the key of its person_id (`person_key_mismatch`)."""
    _not_future(rec, now, skew)
    check_authority(rec["assessor"], "assessor")
    check_authority(rec["plan_authority"], "plan_authority")
    if not rec.get("assessment_id"):
        raise InvalidConsent("invalid_assessment", "assessment_id is empty")
    if not rec.get("person_key"):
        raise InvalidConsent("invalid_assessment", "person_key is empty")
    person_id = _person(rec["person_id"])
    if person_key_secret is not None:
        check_person_key(person_id, rec["person_key"], person_key_secret)
    return Assessment(
        event_id=str(rec["event_id"]),
        assessment_id=rec["assessment_id"],
        person_id=person_id,
        person_key=rec["person_key"],
        assessor=rec["assessor"],
        plan_authority=rec["plan_authority"],
        occurred_at=_aware(rec["occurred_at"]),
        data=assessment_data(rec),
    )


def remainder_record(rec: dict, categories: tuple[str, ...]) -> dict:
    """The part of an AssessmentCompleted record (`rec`) that a disclosure left out because only a
    consent may pass it (health data): the same assessment with only `categories` filled, under an
    event id derived from the original's, so that it is held, released and requested on its own
    (its plan request has its own request id)."""
    out = dict(rec, event_id=derived_id("consent-only-remainder", str(rec["event_id"])))
    for c in DATA_CATEGORIES:
        if c not in categories:
            out[c] = [] if c in ("language_skills", "service_needs") else None
    return out


def request_id(assessment: Assessment, recipient: str) -> str:
    """One plan request per assessment event and recipient, whoever and however often it is computed."""
    return derived_id("plan-request", assessment.event_id, recipient)


def plan_request(assessment: Assessment, decision: Disclose | OwnPlan, now: dt.datetime) -> dict:
    """The PlanRequest record: only the categories the decision allows, every other one empty. To
    the assessor itself (`OwnPlan`): its own assessment's categories, on no consent and no legal basis."""
    rid = request_id(assessment, decision.recipient)
    rec = {
        "event_id": rid,
        "occurred_at": now,
        "recorded_at": now,
        "source": SOURCE,
        "schema_version": 1,
        "request_id": rid,
        "to": decision.recipient,
        "assessment_id": assessment.assessment_id,
        "assessor": assessment.assessor,
        "person_key": assessment.person_key,
        "person_id": assessment.person_id,
        "data_categories": list(decision.categories),
        "consent_id": decision.consent_id,
        "legal_basis": decision.legal_basis,
        "education": None,
        "work_history": None,
        "language_skills": [],
        "literacy": None,
        "recommended_path": None,
        "service_needs": [],
    }
    for category in decision.categories:
        rec[category] = assessment.data[category]
    return rec


_HOLD_ADVICE = {
    "no_consent": "no consent is recorded for this person",
    "purpose_not_covered": "the person's consent is for another purpose",
    "recipient_not_named": "the person's consent does not name the plan-making authority",
    "not_yet_valid": "the person's consent is not valid yet; the item is released when it becomes valid",
    "expired": "the person's consent has expired",
    "revoked": "the person's consent was revoked",
    "no_category_covered": "the person's consent covers none of the assessment's data categories",
}


def consent_required_notice(assessment: Assessment, hold: Hold, now: dt.datetime) -> dict:
    what = ", ".join(hold.missing) or "the assessment"
    message = (
        f"Assessment {assessment.assessment_id} is held: {_HOLD_ADVICE.get(hold.reason, hold.reason)}. "
        f"Record the person's consent for integration_plan naming recipient {hold.recipient} and covering {what} "
        f"(hub consent grant, or a Consent event on hub.consents.v1); the held item is then sent."
    )
    return _notice("consent_required", assessment.assessor, assessment.person_key, now, message,
                   derived_id("consent-required", assessment.event_id), consent_id=hold.consent_id, assessment_id=assessment.assessment_id)


def ended_notice(ended: ConsentRecord, recipient: str, person_key: str, now: dt.datetime) -> dict:
    kind = "consent_revoked" if ended.action == "revoked" else "consent_expired"
    message = (
        f"Consent {ended.consent_id} was {ended.action}: no more data is sent under it. Data you received under it "
        f"may no longer be used for the integration plan on the basis of that consent; review and erase as your rules require."
    )
    # the person key is part of the id: another person's consent may have the same consent id
    return _notice(kind, recipient, person_key, now, message, derived_id(kind, person_key, ended.consent_id, recipient), consent_id=ended.consent_id)


def _notice(kind, to, person_key, now, message, event_id, consent_id=None, assessment_id=None) -> dict:
    return {
        "event_id": event_id,
        "occurred_at": now,
        "recorded_at": now,
        "source": SOURCE,
        "schema_version": 1,
        "notice_type": kind,
        "to": to,
        "person_key": person_key,
        "consent_id": consent_id,
        "assessment_id": assessment_id,
        "message": message,
    }


def new_grant(**kwargs) -> ConsentRecord:
    """A grant recorded now (the CLI's path), with a fresh event id."""
    kwargs.setdefault("event_id", str(uuid.uuid4()))
    kwargs.setdefault("recorded_at", utcnow())
    return ConsentRecord(action=GRANTED, **kwargs)
