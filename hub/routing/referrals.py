"""Referrals as the recipients see them, and their lifecycle. Pure: no I/O.

- `referral_id`: deterministic, from the person and the decision's recipient and purpose, so the
  same newcomer event (or a later `moved` / `circumstances` update of the same person) can never
  make the same referral twice.
- `referral_record`: the Referral event for one decision, minimised under turvakielto.
- `transition`: the state machine of a referral, driven by the recipients' ReferralStatus events.
"""

from __future__ import annotations

import datetime as dt
import uuid

from hub.domain.errors import Rejected
from hub.routing.model import Decision, RoutingInput
from hub.routing.reference import MUNICIPALITY

# uuid5 namespace of referral ids (fixed forever: changing it would re-issue every referral)
REFERRAL_NAMESPACE = uuid.UUID("5d0c8f0e-3c51-4d6b-9a4e-0b7f3a6d2e41")

SENT = "sent"
STATES = (SENT, "accepted", "contacted", "unreachable", "assessment_started", "declined", "completed", "superseded")
CLOSED = frozenset({"declined", "completed", "superseded"})
# progress order; a recipient may skip steps forward, never go back (contacted <-> unreachable is
# the exception: contact attempts can fail and succeed again)
_RANK = {SENT: 0, "accepted": 1, "contacted": 2, "unreachable": 2, "assessment_started": 3, "completed": 4}


class TransitionError(Rejected):
    """A status that cannot follow the referral's current state. `reason` goes to dead letters."""


def referral_id(person_key: str, decision: Decision) -> str:
    return str(uuid.uuid5(REFERRAL_NAMESPACE, f"{person_key}|{decision.authority}|{decision.purpose}"))


def is_open(state: str) -> bool:
    return state not in CLOSED


def transition(current: str, status: str, reason: str | None) -> str:
    """The state after `status`. Raises TransitionError(invalid_status | invalid_transition)."""
    if status == SENT or (status not in _RANK and status != "declined"):
        raise TransitionError("invalid_status", f"status {status!r} is not one a recipient can report")
    if status == "declined" and not (reason or "").strip():
        raise TransitionError("invalid_status", "a declined status needs a reason; resend it with the reason filled in")
    if current in CLOSED:
        raise TransitionError("invalid_transition", f"the referral is already {current}; a closed referral takes no more statuses")
    if status == "declined" or status == current:
        return status
    if _RANK[status] < _RANK[current] and {status, current} != {"contacted", "unreachable"}:
        raise TransitionError("invalid_transition", f"cannot go back from {current} to {status}")
    return status


def referral_record(
    newcomer: RoutingInput,
    decision: Decision,
    *,
    sequence: int,
    person_id: str | None,
    now: dt.datetime,
) -> dict:
    """The Referral event (Avro record dict) for one decision.

    Under turvakielto (non-disclosure for safety) the municipality of residence and the decision
    trace (which names the municipality) go only to the municipality itself; the wellbeing area
    and the employment authority get what their task needs: who, why, by when, in which language.
    The event id is derived from the referral id, so a re-sent referral is recognisably the same.
    """
    rid = referral_id(newcomer.person_key or "", decision)
    own_municipality = decision.authority.startswith(f"{MUNICIPALITY}:")
    withhold = newcomer.turvakielto and not own_municipality
    return {
        "event_id": str(uuid.uuid5(REFERRAL_NAMESPACE, f"{rid}|event")),
        "occurred_at": newcomer.occurred_at or now,
        "recorded_at": now,
        "source": "hub:routing",
        "schema_version": 1,
        "referral_id": rid,
        "to": decision.authority,
        "purpose": decision.purpose,
        "person_key": newcomer.person_key or "",
        "person_id": person_id,
        "reasons": list(decision.reasons),
        "rule": decision.rule,
        "rules_version": decision.rules_version,
        "due": decision.due,
        "decision_trace": ["withheld: turvakielto"] if withhold else list(decision.trace),
        "sequence": sequence,
        "newcomer_event_id": newcomer.event_id,
        "municipality_code": None if withhold else newcomer.municipality_code,
        "birth_date": newcomer.birth_date,
        "mother_tongue": newcomer.mother_tongue,
        "contact_language": newcomer.contact_language,
        "turvakielto": newcomer.turvakielto,
    }
