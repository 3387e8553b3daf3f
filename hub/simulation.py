"""Simulated counterparts for `hub demo`: the systems around the hub, played deterministically.

- the employment authority's register reports each adult newcomer's labour-force status (a
  `circumstances` update of the Newcomer), which makes routing add initial-assessment referrals;
- recipients report on their referrals (accepted, contacted, unreachable, assessment started).
Choices come from a hash of the person key, so a run is reproducible. Not used in production.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid

from hub.schemas import topics
from hub.streams.app import HubApp
from hub.domain.clock import utcnow
from hub.schemas.envelope import envelope

NAMESPACE = uuid.UUID("0b7f3a52-5a3f-4b0e-8f33-2f6f1c0e2d90")


def _roll(key: str, salt: str) -> float:
    """A stable number in [0, 1) for a person key and a purpose."""
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16) / 0x100000000


def labour_force_status(person_key: str, age: int | None) -> str | None:
    """What the simulated employment register says of a newcomer (None: nothing to report)."""
    if age is None or age < 18:
        return None
    if age >= 65:
        return "retired"
    r = _roll(person_key, "labour")
    return "unemployed_job_seeker" if r < 0.5 else "home_parent" if r < 0.7 else "employed" if r < 0.9 else "outside_labour_force"


def circumstances_update(newcomer: dict, status: str, now: dt.datetime) -> dict:
    """The Newcomer `circumstances` event the employment authority would publish."""
    update = dict(newcomer)
    update.update(envelope("employment_register:demo", now, str(uuid.uuid5(NAMESPACE, f"{newcomer['event_id']}:circumstances"))))
    update.update(change="circumstances", labour_force_status=status)
    return update


def register(hub: HubApp) -> dict:
    """A demo consumer answering each arrived newcomer with the employment register's facts.

    It also remembers, for the simulated assessors, whom each person key stands for (the
    assessor knows its client; the hub's ledger deliberately does not keep identity codes).
    """
    seen = {"newcomers": 0, "updates": 0, "people": {}}

    async def employment_register(records) -> None:
        sent = []
        for msg in records:
            newcomer = hub.codec.decode(msg.value, "Newcomer").record
            if newcomer["change"] != "arrived":
                continue
            seen["newcomers"] += 1
            seen["people"][newcomer["person_key"]] = (newcomer["person_id"], newcomer["municipality_code"])
            born = newcomer.get("birth_date")
            today = newcomer["occurred_at"].date()
            age = None if born is None else today.year - born.year - ((today.month, today.day) < (born.month, born.day))
            status = labour_force_status(newcomer["person_key"], age)
            if status is None:
                continue
            sent.append(await hub.publisher.publish(topics.NEWCOMERS, "Newcomer", circumstances_update(newcomer, status, utcnow()), key=newcomer["person_key"]))
            seen["updates"] += 1
        await asyncio.gather(*sent)  # acknowledged before the batch is committed

    hub.batch_consumer("simulated-employment-register", topics.NEWCOMERS, employment_register, 200)
    return seen


def status_reports(open_referrals, now: dt.datetime) -> list[dict]:
    """ReferralStatus events the recipients would send for their open referrals."""
    out = []
    for ref in open_referrals:
        r = _roll(ref.referral_id, "status")
        if ref.purpose == "initial_assessment":
            states = ["accepted", "assessment_started"] if r < 0.8 else ["accepted"]
        elif ref.purpose == "outreach":
            states = ["contacted"] if r < 0.85 else ["unreachable"]
        else:
            states = ["accepted"] if r < 0.9 else []
        for state in states:
            rec = envelope(ref.authority, now, str(uuid.uuid5(NAMESPACE, f"{ref.referral_id}:{state}")))
            rec.update(referral_id=ref.referral_id, authority=ref.authority, status=state, reason=None)
            out.append(rec)
    return out


ALL_CATEGORIES = ["education", "work_history", "language_skills", "literacy", "service_needs", "recommended_path"]


def consent_record(person_id: str, consent_id: str, action: str, recipients: list[str], categories: list[str], now: dt.datetime,
                   recorded_by: str) -> dict:
    rec = envelope(recorded_by, now, str(uuid.uuid5(NAMESPACE, f"{consent_id}:{action}")))
    rec.update(consent_id=consent_id, person_id=person_id, action=action, purpose="integration_plan", data_categories=categories,
               recipients=recipients, valid_from=now - dt.timedelta(days=1), valid_until=now + dt.timedelta(days=365),
               evidence=f"signed form {consent_id[:8]}", recorded_by=recorded_by)
    return rec


def assessment_record(ref, person_key: str, person_id: str, plan_authority: str, now: dt.datetime) -> dict:
    """An initial assessment completed by the referral's recipient, with results in every category."""
    r = _roll(person_key, "assessment")
    rec = envelope(ref.authority, now, str(uuid.uuid5(NAMESPACE, f"{ref.referral_id}:assessment")))
    rec.update(
        assessment_id=f"A-{ref.referral_id[:8]}", person_key=person_key, person_id=person_id, assessor=ref.authority,
        plan_authority=plan_authority, referral_id=ref.referral_id,
        education="secondary" if r < 0.5 else "tertiary", work_history="5 years in construction" if r < 0.3 else "3 years in nursing",
        language_skills=[{"language": "fi", "skill": "overall", "cefr_level": "A1" if r < 0.6 else "A2"},
                         {"language": "en", "skill": "overall", "cefr_level": "B1"}],
        literacy="literate", recommended_path="integration training, then vocational training", service_needs=[],
    )
    return rec


def consent_plan(people_with_assessments: list[str]) -> dict[str, str]:
    """For each person key: 'before' (consent before the assessment), 'partial', 'late' (after it:
    the held item is released), 'none' (held), or 'revoke' (granted, disclosed, then revoked)."""
    plan = {}
    for key in people_with_assessments:
        r = _roll(key, "consent")
        plan[key] = "before" if r < 0.5 else "partial" if r < 0.6 else "late" if r < 0.75 else "none"
    for key in sorted(k for k, v in plan.items() if v == "before")[:1]:
        plan[key] = "revoke"
    return plan
