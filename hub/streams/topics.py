"""Topic names of the hub, in one place."""

from __future__ import annotations

import re

POPULATION_CHANGES = "hub.population-changes.v1"
NEWCOMERS = "hub.newcomers.v1"
REFERRAL_STATUS = "hub.referral-status.v1"
ASSESSMENTS = "hub.assessments.v1"
CONSENTS = "hub.consents.v1"
DEAD_LETTERS = "hub.dead-letters.v1"

FIXED_TOPICS = (POPULATION_CHANGES, NEWCOMERS, REFERRAL_STATUS, ASSESSMENTS, CONSENTS, DEAD_LETTERS)

_AUTHORITY = re.compile(r"^(municipality|wellbeing_area|employment_authority):([0-9A-Za-z]{1,8})$")


def _authority_part(authority_id: str) -> str:
    m = _AUTHORITY.match(authority_id)
    if not m:
        raise ValueError(f"not an authority id (<kind>:<code>): {authority_id!r}")
    return f"{m.group(1)}.{m.group(2)}"


def referral_topic(authority_id: str) -> str:
    """`hub.referrals.<kind>.<code>.v1`: one topic per recipient, so ACLs can be per recipient."""
    return f"hub.referrals.{_authority_part(authority_id)}.v1"


def plan_request_topic(authority_id: str) -> str:
    """`hub.plan-requests.<kind>.<code>.v1`: plan requests for one plan-making authority."""
    return f"hub.plan-requests.{_authority_part(authority_id)}.v1"


def notice_topic(authority_id: str) -> str:
    """`hub.notices.<kind>.<code>.v1`: consent notices (consent required, consent revoked or expired)
    for one authority, the assessor or an earlier recipient named in the notice's `to`."""
    return f"hub.notices.{_authority_part(authority_id)}.v1"


def recipient_topics(authority_id: str) -> tuple[str, str, str]:
    """Every topic that carries records for this authority only: its referrals, plan requests and notices."""
    return referral_topic(authority_id), plan_request_topic(authority_id), notice_topic(authority_id)
