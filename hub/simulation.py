"""Simulated counterparts for `hub demo`: the systems around the hub, played deterministically.

- the authorities that hold the facts routing needs publish them on their own input topics, under
  their own publisher identities, as in production: the employment authority of the person's
  employment area reports a jobseeker registration (`hub.jobseeker-status.v1`), the Finnish
  Immigration Service the residence permit and its first date (`hub.residence-permits.v1`), the
  wellbeing area (Helsinki: the city) service needs found in guidance (`hub.service-needs.v1`);
- recipients report on their referrals (accepted, contacted, unreachable, assessment started).
The simulated authorities learn of a newcomer by reading `hub.newcomers.v1` (in production they
know their own clients); they never write it. Choices come from a hash of the person key, so a run
is reproducible. Not used in production.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections import Counter

from hub.newcomers.detection import EU_EEA
from hub.routing.reference import EMPLOYMENT_AUTHORITY, WELLBEING_AREA, Reference, UnknownMunicipality, default_reference
from hub.schemas import topics
from hub.schemas.facts import MIGRI
from hub.streams.app import HubApp
from hub.domain.clock import utcnow
from hub.schemas.envelope import envelope

NAMESPACE = uuid.UUID("0b7f3a52-5a3f-4b0e-8f33-2f6f1c0e2d90")
# residence bases of the simulated permits, with their cumulative shares (EU/EEA citizens register instead)
PERMIT_BASES = (("work", 0.35), ("family", 0.6), ("study", 0.75), ("international_protection", 0.87), ("temporary_protection", 0.95), ("other", 1.0))
SIMULATED_NEEDS = (("health",), ("social",), ("child_welfare", "social"), ("mental_health",), ("literacy",))


def _roll(key: str, salt: str) -> float:
    """A stable number in [0, 1) for a person key and a purpose."""
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16) / 0x100000000


def _age(born: dt.date | None, on: dt.date) -> int | None:
    return None if born is None else on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _event(source: str, newcomer: dict, what: str, now: dt.datetime) -> dict:
    """The envelope of a simulated fact: its event id derived from the newcomer's, so a rerun repeats it."""
    return envelope(source, now, str(uuid.uuid5(NAMESPACE, f"{newcomer['event_id']}:{what}")))


def facts_for(newcomer: dict, now: dt.datetime, reference: Reference | None = None) -> list[tuple[str, str, dict]]:
    """(topic, schema, record) of every fact the simulated authorities publish about one arrived newcomer."""
    reference = reference or default_reference()
    key, person_id = newcomer["person_key"], newcomer["person_id"]
    today = now.date()
    arrival = newcomer.get("arrival_date") or newcomer["occurred_at"].date()
    age = _age(newcomer.get("birth_date"), newcomer["occurred_at"].date())
    try:
        roles = reference.authorities(newcomer["municipality_code"]).roles
    except UnknownMunicipality:
        return []
    out: list[tuple[str, str, dict]] = []
    nationalities = newcomer.get("nationalities") or []
    if nationalities and not all(n in EU_EEA for n in nationalities):
        r = _roll(key, "permit")
        basis = next(b for b, share in PERMIT_BASES if r < share)
        protection = basis in ("international_protection", "temporary_protection")
        # a work, family or study permit is granted before the journey; protection after arriving
        first = min(today, arrival + dt.timedelta(days=60)) if protection else arrival - dt.timedelta(days=20 + int(r * 40))
        rec = _event(MIGRI, newcomer, "residence-permit", now)
        rec.update(person_id=person_id, basis=basis, first_permit_date=first)
        out.append((topics.RESIDENCE_PERMITS, "ResidencePermit", rec))
    employment = roles[EMPLOYMENT_AUTHORITY].authority
    if employment is not None and age is not None and 18 <= age < 65 and _roll(key, "labour") < 0.5:
        rec = _event(employment, newcomer, "jobseeker-registered", now)
        rec.update(person_id=person_id, status="registered", status_date=min(today, arrival + dt.timedelta(days=7)),
                   employment_area=employment.partition(":")[2])
        out.append((topics.JOBSEEKER_STATUS, "JobseekerStatus", rec))
    wellbeing = roles[WELLBEING_AREA].authority
    r = _roll(key, "needs")
    if wellbeing is not None and r < 0.2:
        rec = _event(wellbeing, newcomer, "service-needs", now)
        rec.update(person_id=person_id, needs=list(SIMULATED_NEEDS[int(r * 25) % len(SIMULATED_NEEDS)]), identified_by=wellbeing,
                   identified_on=today)
        out.append((topics.SERVICE_NEEDS, "ServiceNeeds", rec))
    return out


def register(hub: HubApp) -> dict:
    """A demo consumer answering each arrived newcomer with the facts the authorities hold.

    It also remembers, for the simulated assessors, whom each person key stands for (the
    assessor knows its client; the hub's ledger deliberately does not keep identity codes).
    """
    seen = {"newcomers": 0, "facts": Counter(), "people": {}}

    async def authorities(records) -> None:
        sent = []
        for msg in records:
            newcomer = hub.codec.decode(msg.value, "Newcomer").record
            if newcomer["change"] != "arrived":
                continue
            seen["newcomers"] += 1
            seen["people"][newcomer["person_key"]] = (newcomer["person_id"], newcomer["municipality_code"])
            for topic, schema, record in facts_for(newcomer, utcnow()):
                sent.append(await hub.publisher.publish(topic, schema, record, key=record["event_id"]))
                seen["facts"][schema] += 1
        await asyncio.gather(*sent)  # acknowledged before the batch is committed

    hub.batch_consumer("simulated-authorities", topics.NEWCOMERS, authorities, 200)
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
