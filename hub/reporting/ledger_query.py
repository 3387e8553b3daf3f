"""Reads the rows the indicators need from the coordination ledger (SQL). No computation here.

`assessment_and_plan_steps()` is the one place that says when a person's initial assessment was
started or completed and when an integration plan was requested; the indicators read only it.
Every source is joined to the cohort by the hub's person key (the key the referrals, the newcomer
facts, the held items and the disclosure audit are all written under). After an identity-code
correction the person's newcomer facts are under the corrected code's key, and what was recorded
under the replaced code's key (its referrals, their statuses, the assessment steps) is read as the
person's too (`replaced_keys`): the person's history is one, whichever code it began under.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from hub.adapters.database import in_chunks
from hub.adapters.newcomer_facts import NewcomerFactRow
from hub.adapters.referral_ledger import ReferralEventRow, ReferralRow, ReferralWithdrawalRow
from hub.adapters.consent_store import Disclosure, HeldItem
from hub.reporting.indicators import INITIAL_ASSESSMENT, NewcomerFact, ReferralFact, StatusFact, StepFact


@dataclass
class LedgerRows:
    newcomers: list[NewcomerFact]
    referrals: list[ReferralFact]
    statuses: list[StatusFact]
    steps: list[StepFact]


def newcomer_facts(s: Session, municipality: str, period_from: dt.date, period_to: dt.date) -> list[NewcomerFact]:
    """The municipality's newcomers registered around the period (a day's margin for time zones; compute() cuts exactly)."""
    start = dt.datetime.combine(period_from - dt.timedelta(days=1), dt.time.min, tzinfo=dt.timezone.utc)
    end = dt.datetime.combine(period_to + dt.timedelta(days=2), dt.time.min, tzinfo=dt.timezone.utc)
    q = sa.select(NewcomerFactRow).where(
        NewcomerFactRow.municipality == municipality, NewcomerFactRow.registered_at >= start, NewcomerFactRow.registered_at < end
    )
    return [
        NewcomerFact(r.person_key, r.registered_at, r.mother_tongue, tuple(c for c in (r.nationalities or "").split(",") if c), r.arrival_date)
        for r in s.scalars(q)
    ]


def referral_facts(s: Session, person_keys: Sequence[str], authorities: Iterable[str]) -> list[ReferralFact]:
    """The referrals of these people to these authorities (a person who moved away keeps the old municipality's elsewhere)."""
    authorities = sorted(set(authorities))
    out = []
    for keys in in_chunks(person_keys):
        q = sa.select(ReferralRow).where(ReferralRow.person_key.in_(keys), ReferralRow.authority.in_(authorities))
        out += [ReferralFact(r.referral_id, r.person_key, r.authority, r.purpose, r.state, r.created_at, r.due) for r in s.scalars(q)]
    return out


def replaced_keys(s: Session, person_keys: Sequence[str]) -> dict[str, str]:
    """replaced key -> the cohort's key, for the identity-code corrections of these people (also a chain
    of them): a correction withdraws the replaced key's referrals (`identity_corrected`) in the routing
    event that makes the corrected key's referrals."""
    w, old, new = ReferralWithdrawalRow, aliased(ReferralRow), aliased(ReferralRow)
    out: dict[str, str] = {}
    wanted = {k: k for k in person_keys}  # a key to look behind -> the cohort's key it stands for
    while wanted:
        found: dict[str, str] = {}
        for keys in in_chunks(sorted(wanted)):
            q = (sa.select(old.person_key, new.person_key).distinct().select_from(w)
                 .join(old, old.referral_id == w.referral_id)
                 .join(new, new.newcomer_event_id == w.newcomer_event_id)
                 .where(w.cause == "identity_corrected", new.person_key.in_(keys), old.person_key != new.person_key))
            for replaced, key in s.execute(q):
                if replaced not in out and replaced not in wanted and replaced not in person_keys:
                    found[replaced] = wanted[key]
        out.update(found)
        wanted = found
    return out


def status_facts(s: Session, referral_ids: Sequence[str]) -> list[StatusFact]:
    out = []
    for ids in in_chunks(referral_ids):
        q = sa.select(ReferralEventRow).where(ReferralEventRow.referral_id.in_(ids)).order_by(ReferralEventRow.id)
        out += [StatusFact(e.referral_id, e.state, e.occurred_at) for e in s.scalars(q)]
    return out


def assessment_and_plan_steps(s: Session, person_keys: Sequence[str], authorities: Iterable[str]) -> list[StepFact]:
    """When each person's initial assessment was started / completed and an integration plan requested.

    From the referral ledger: the recipient's ReferralStatus `assessment_started` and `completed`
    on an `initial_assessment` referral (hub.referral-status.v1). From the consent registry: the
    completed assessment itself (hub.assessments.v1), which the registry either held for consent
    or disclosed at once (`assessment_received`, at the earliest held or disclosure time: an
    assessor that publishes the assessment but never reports `completed` on the referral still
    counts); and from its audit table each plan request disclosed to the plan-making authority
    (`plan_requested`, at the disclosure time); a request held for consent counts when released.
    """
    authorities = sorted(set(authorities))
    names = {"assessment_started": "assessment_started", "completed": "assessment_completed"}
    out = []
    for keys in in_chunks(person_keys):
        q = (
            sa.select(ReferralRow.person_key, ReferralEventRow.state, ReferralEventRow.occurred_at)
            .join(ReferralEventRow, ReferralEventRow.referral_id == ReferralRow.referral_id)
            .where(
                ReferralRow.person_key.in_(keys),
                ReferralRow.authority.in_(authorities),
                ReferralRow.purpose == INITIAL_ASSESSMENT,
                ReferralEventRow.state.in_(sorted(names)),
            )
        )
        out += [StepFact(person_key, names[state], at) for person_key, state, at in s.execute(q)]
        plans = sa.select(Disclosure.person_key, sa.func.min(Disclosure.disclosed_at)).where(Disclosure.person_key.in_(keys)).group_by(Disclosure.person_key)
        for person_key, at in s.execute(plans):  # a disclosed plan request carries its completed assessment
            out += [StepFact(person_key, "plan_requested", at), StepFact(person_key, "assessment_received", at)]
        held = sa.select(HeldItem.person_key, sa.func.min(HeldItem.held_at)).where(HeldItem.person_key.in_(keys)).group_by(HeldItem.person_key)
        out += [StepFact(person_key, "assessment_received", at) for person_key, at in s.execute(held)]
    return out


def load(engine: sa.Engine, municipality: str, period_from: dt.date, period_to: dt.date, authorities: Iterable[str]) -> LedgerRows:
    """Everything compute() needs for one municipality and period, read in one transaction."""
    authorities = list(authorities)
    with Session(engine) as s:
        newcomers = newcomer_facts(s, municipality, period_from, period_to)
        keys = sorted({n.person_key for n in newcomers})
        aliases = replaced_keys(s, keys)  # what was recorded under a replaced identity code is the person's too
        everyone = sorted(set(keys) | set(aliases))
        referrals = [replace(r, person_key=aliases.get(r.person_key, r.person_key)) for r in referral_facts(s, everyone, authorities)]
        statuses = status_facts(s, sorted({r.referral_id for r in referrals}))
        steps = [replace(st, person_key=aliases.get(st.person_key, st.person_key)) for st in assessment_and_plan_steps(s, everyone, authorities)]
    return LedgerRows(newcomers, referrals, statuses, steps)
