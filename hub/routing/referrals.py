"""Referrals as the recipients see them, and their lifecycle. Pure: no I/O.

- `referral_id`: deterministic, from the person and the decision's recipient and purpose, so the
  same newcomer event (or a later `moved` / `circumstances` update of the same person) can never
  make the same referral twice; `reissued_id`: the referral made again for the same person,
  recipient and purpose after the earlier one was superseded (moved back, registered again).
- `referral_record`: the Referral event for one decision, minimised under turvakielto.
- `transition`: the state machine of a referral, driven by the recipients' ReferralStatus events.
- `supersessions`: which open referrals an update of the person supersedes, and why;
  `withdrawal_record`: the ReferralWithdrawn event that tells the old recipient.
- `due_updates`: which open referrals an update of the person keeps but with another due date (the
  first residence permit became known after the referral, ...); `update_record`: the ReferralUpdated
  event that tells the recipient.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Iterable, Mapping

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


# why a referral is withdrawn (ReferralWithdrawn.cause)
MOVED, NO_LONGER_APPLIES, IDENTITY_CORRECTED = "moved", "no_longer_applies", "identity_corrected"
# states a change of circumstances does not withdraw: the assessment is under way, and its assessor
# finishes it (completed or declined); a move or an identity-code correction withdraws every open state
KEPT_ON_CIRCUMSTANCES = frozenset({"assessment_started"})


class TransitionError(Rejected):
    """A status that cannot follow the referral's current state. `reason` goes to dead letters."""


def referral_id(person_key: str, decision: Decision) -> str:
    return str(uuid.uuid5(REFERRAL_NAMESPACE, f"{person_key}|{decision.authority}|{decision.purpose}"))


def reissued_id(first_id: str, generation: int) -> str:
    """The id of the `generation`-th referral (2, 3, ...) for the person, recipient and purpose whose
    first referral is `first_id`: made only after the one before it was superseded."""
    return first_id if generation <= 1 else str(uuid.uuid5(REFERRAL_NAMESPACE, f"{first_id}|{generation}"))


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
    rid: str | None = None,
) -> dict:
    """The Referral event (Avro record dict) for one decision.

    Under turvakielto (non-disclosure for safety) the municipality of residence and the decision
    trace (which names the municipality) go only to the municipality itself; the wellbeing area
    and the employment authority get what their task needs: who, why, by when, in which language.
    The event id is derived from the referral id, so a re-sent referral is recognisably the same.
    `rid`: the referral's id when it is not the first for this person, recipient and purpose.
    """
    rid = rid or referral_id(newcomer.person_key or "", decision)
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


@dataclass(frozen=True)
class OpenRef:
    """An open referral of the person as the ledger holds it."""

    referral_id: str
    person_key: str
    authority: str
    purpose: str
    state: str


@dataclass(frozen=True)
class Supersession:
    """One open referral an update supersedes: to whom it was, why it is withdrawn, and (after an
    identity-code correction) the same recipient's referral that replaces it."""

    referral_id: str
    person_key: str
    authority: str
    purpose: str
    cause: str  # MOVED, NO_LONGER_APPLIES or IDENTITY_CORRECTED
    reason: str
    replaced_by: str | None = None


def supersessions(newcomer: RoutingInput, decisions: Iterable[Decision], open_refs: Iterable[OpenRef],
                   ids: Mapping[tuple[str, str], str] | None = None) -> list[Supersession]:
    """The open referrals (of `newcomer.person_key` and `newcomer.previous_person_key`) that this update
    withdraws, in the order given:

    - after an identity-code correction, every open referral of the replaced code's key: the person
      is routed under the new key, and a recipient that still has a task gets it again there
      (`replaced_by`, with the corrected identity code);
    - on `moved`, each open referral whose (recipient, purpose) is not among the new decisions, in
      any open state: the responsibility follows the municipality of residence;
    - on `circumstances`, the same, except a referral whose assessment has started
      (KEPT_ON_CIRCUMSTANCES): its assessor finishes it and reports completed or declined;
    - on `arrived`, none.
    The reason names the new municipality, unless turvakielto withholds it; a caller's
    `change_reason` says what changed. `ids`: (recipient, purpose) -> the id of the person's current
    referral for it (the ledger's; default: the first id).
    """
    kept = {(d.authority, d.purpose): d for d in decisions}
    key, old_key = newcomer.person_key, newcomer.previous_person_key
    out = []
    for ref in open_refs:
        if old_key and old_key != key and ref.person_key == old_key:
            successor = kept.get((ref.authority, ref.purpose))
            replaced_by = None if successor is None else (ids or {}).get((ref.authority, ref.purpose)) or referral_id(key or "", successor)
            reason = "identity code corrected: the person's referrals are issued under the corrected code" + (
                f"; this one again as referral {replaced_by}" if replaced_by else "; this recipient has no task under it")
            out.append(Supersession(ref.referral_id, ref.person_key, ref.authority, ref.purpose, IDENTITY_CORRECTED, reason, replaced_by))
            continue
        if ref.person_key != key or (ref.authority, ref.purpose) in kept:
            continue
        if newcomer.change == "moved":
            out.append(Supersession(ref.referral_id, ref.person_key, ref.authority, ref.purpose, MOVED, _moved_reason(newcomer)))
        elif newcomer.change == "circumstances" and ref.state not in KEPT_ON_CIRCUMSTANCES:
            why = newcomer.change_reason or "the person's circumstances changed"
            out.append(Supersession(ref.referral_id, ref.person_key, ref.authority, ref.purpose, NO_LONGER_APPLIES, f"no longer applies: {why}"))
    return out


def _moved_reason(newcomer: RoutingInput) -> str:
    if newcomer.change_reason:
        return newcomer.change_reason
    if newcomer.turvakielto or not newcomer.municipality_code:
        return "moved to another municipality" + (" (withheld: turvakielto)" if newcomer.turvakielto else "")
    return f"moved to municipality {newcomer.municipality_code}"


def withdrawal_event_id(referral_id_: str) -> str:
    """The ReferralWithdrawn event id of a referral: derived, so a re-sent withdrawal is recognisably the same."""
    return str(uuid.uuid5(REFERRAL_NAMESPACE, f"{referral_id_}|withdrawn"))


def withdrawal_record(s: Supersession, *, sequence: int, newcomer: RoutingInput, now: dt.datetime) -> dict:
    """The ReferralWithdrawn event (Avro record dict) telling the old recipient that `s` is withdrawn.
    No identity code: the recipient has the referral it names."""
    return {
        "event_id": withdrawal_event_id(s.referral_id),
        "occurred_at": newcomer.occurred_at or now,
        "recorded_at": now,
        "source": "hub:routing",
        "schema_version": 1,
        "referral_id": s.referral_id,
        "to": s.authority,
        "purpose": s.purpose,
        "person_key": s.person_key,
        "sequence": sequence,
        "cause": s.cause,
        "reason": s.reason,
        "replaced_by": s.replaced_by,
        "withdrawn_at": now,
        "newcomer_event_id": newcomer.event_id,
    }


@dataclass(frozen=True)
class DueUpdate:
    """An open referral an update keeps, whose decision now has another due date."""

    referral_id: str
    person_key: str
    authority: str
    purpose: str
    due: dt.date | None
    previous_due: dt.date | None
    reason: str


def due_updates(newcomer: RoutingInput, decisions: Iterable[Decision], open_refs: Iterable[tuple[OpenRef, dt.date | None]],
                ids: Mapping[tuple[str, str], str]) -> list[DueUpdate]:
    """The open referrals of `newcomer.person_key` (with their due dates as the ledger holds them) that
    this update keeps (the same recipient and purpose is decided again, and the referral is the person's
    current one for it, `ids`) whose decision has another due date now, in the order given. Due dates
    count from the start of the integration period: a first-permit date that arrives after the referral
    was made moves them. A referral of the replaced key of an identity-code correction is withdrawn,
    never updated."""
    decided = {(d.authority, d.purpose): d for d in decisions}
    out = []
    for ref, due in open_refs:
        d = decided.get((ref.authority, ref.purpose))
        if d is None or ref.person_key != newcomer.person_key or ids.get((ref.authority, ref.purpose)) != ref.referral_id or d.due == due:
            continue
        out.append(DueUpdate(ref.referral_id, ref.person_key, ref.authority, ref.purpose, d.due, due, _due_reason(newcomer, d)))
    return out


def _due_reason(newcomer: RoutingInput, decision: Decision) -> str:
    why = f"; {newcomer.change_reason}" if newcomer.change_reason else ""
    if decision.due is None:
        return f"no time limit applies any more{why}"
    start = newcomer.period_start
    basis = f" ({newcomer.period_start_source}, {start.isoformat()})" if start is not None else ""
    return f"due date counted again from the start of the integration period{basis}{why}"


def update_event_id(referral_id_: str, routing_event_id: str | None) -> str:
    """The ReferralUpdated event id: derived from the referral and the routing event that updated it, so
    a re-sent update is recognisably the same and a later update of the same referral is another event."""
    return str(uuid.uuid5(REFERRAL_NAMESPACE, f"{referral_id_}|updated|{routing_event_id or ''}"))


def update_record(u: DueUpdate, *, sequence: int, newcomer: RoutingInput, now: dt.datetime) -> dict:
    """The ReferralUpdated event (Avro record dict) telling the recipient the referral's new due date.
    No identity code: the recipient has the referral it names."""
    return {
        "event_id": update_event_id(u.referral_id, newcomer.event_id),
        "occurred_at": newcomer.occurred_at or now,
        "recorded_at": now,
        "source": "hub:routing",
        "schema_version": 1,
        "referral_id": u.referral_id,
        "to": u.authority,
        "purpose": u.purpose,
        "person_key": u.person_key,
        "sequence": sequence,
        "due": u.due,
        "previous_due": u.previous_due,
        "reason": u.reason,
        "updated_at": now,
        "newcomer_event_id": newcomer.event_id,
    }
