"""The send-time consent rule: may a plan request decided earlier still go out now?

A plan request is decided when its assessment is handled (hub.services.consent) and sent later: by
the outbox relay (hub.streams.outbox_relay), and by webhook delivery (hub.adapters.webhooks: every
attempt, retries and `hub webhooks redeliver` included). A revocation or expiry the hub has
received in between must stop it: each of them asks `why_not_send` just before sending
(through `hub.adapters.disclosure_check.DisclosureCheck`, which reads the person's consent history).

The basis the plan request names (its consent, its legal basis) must still cover this person,
purpose, recipient and its data categories now; a legal basis, also its discloser (the plan
request's assessor). A plan request to its own assessor is no disclosure and needs no basis. A plan request is never moved onto another
consent: its audit row names the one it was decided on.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

from hub.consent.model import PURPOSE_INTEGRATION_PLAN, ConsentRecord, LegalBasis, current_consents, same_authority

PLAN_REQUEST = "PlanRequest"
CHANNEL_KAFKA, CHANNEL_WEBHOOK = "kafka", "webhook"


def why_not_send(plan: dict, history: Iterable[ConsentRecord], legal_bases: Sequence[LegalBasis], now: dt.datetime) -> str | None:
    """None when `plan` (a PlanRequest record, or its JSON form) may be sent now; else the reason code:
    consent_revoked, consent_expired, consent_not_yet_valid, consent_unknown (no such consent of this
    person), legal_basis_withdrawn (no longer configured), category_not_covered, no_basis."""
    person_id, recipient, assessor = plan.get("person_id"), plan.get("to"), plan.get("assessor")
    if not person_id or not recipient:
        return "no_basis"
    if assessor and same_authority(assessor, recipient) and not plan.get("consent_id") and not plan.get("legal_basis"):
        return None  # the assessor's own plan request: nothing is disclosed
    categories = frozenset(plan.get("data_categories") or ())
    named = {n.strip() for n in (plan.get("legal_basis") or "").split(";") if n.strip()}
    by_law = [b for b in legal_bases if b.name in named and b.covers(PURPOSE_INTEGRATION_PLAN, assessor or "", recipient)]
    covered = frozenset().union(*(b.data_categories for b in by_law)) & categories
    consent_id = plan.get("consent_id")
    if consent_id:
        consent = current_consents(history, person_id).get(consent_id)
        if consent is None:
            return "consent_unknown"
        status = consent.status(now)
        if status != "active":
            return f"consent_{status}"
        if consent.grant.purpose != PURPOSE_INTEGRATION_PLAN or recipient not in consent.grant.recipients:
            return "consent_unknown"
        covered |= consent.grant.data_categories & categories
    elif not named:
        return "no_basis"
    elif not by_law:
        return "legal_basis_withdrawn"
    if categories - covered:
        return "legal_basis_withdrawn" if named and len(by_law) < len(named) else "category_not_covered"
    return None
