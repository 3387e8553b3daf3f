"""The monitoring indicators of a municipal integration programme, computed from plain rows. Pure.

The cohort is the newcomers of one municipality registered (the register change that made them
newcomers happened) in the period, whatever the register says of their mother tongue (an unknown
one counts as "unknown"). For them: by mother tongue (and its group) and nationality; the service
chain (`CHAIN`); reached (an outreach referral the recipient reported accepted or contacted, or
later); referred per authority (a person's task, not each referral: a referral made again after its
supersession, e.g. re-issued under a corrected identity code or after a registration as a jobseeker
ended and began again, counts once with the one it replaced; a referral withdrawn because the person
moved still counts, it was that authority's); initial assessments started and completed; integration plans
requested; the days between the steps (median, 90th percentile); their referrals still open, and
overdue, today.

The service chain of the act 681/2023 follows each person of the cohort by person key through
the steps referred -> reached -> initial assessment done -> integration plan requested. The hub
refers a newcomer at registration (the outreach referral of § 10 and, when the register's facts
name the assessor, the initial-assessment referral of § 14), so in its records the referral comes
before contact. A person is counted at a step when that step or a later one is recorded for them:
a step never holds more persons than the one before it, and `Indicators.inferred` says how many
a step holds only because a later step was recorded (e.g. a plan requested from an assessment the
assessor never reported on its referral).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

FINLAND = ZoneInfo("Europe/Helsinki")

OUTREACH = "outreach"
INITIAL_ASSESSMENT = "initial_assessment"
# an outreach referral counts as "reached" once the recipient reported it accepted or contacted
# (or a later step: states only move forward); unreachable, declined, superseded do not count
REACHED_STATES = frozenset({"accepted", "contacted", "assessment_started", "completed"})
CLOSED_STATES = frozenset({"declined", "completed", "superseded"})

# Statistics Finland's language grouping: the domestic languages, and foreign-language speakers;
# sign language (DVV code 98, or an ISO 639 code of one: Finnish, Finland-Swedish) is a group of its own
DOMESTIC_GROUPS = {"fi": "Finnish", "sv": "Swedish", "se": "Sámi", "smn": "Sámi", "sms": "Sámi"}
SIGN_LANGUAGES = {"98", "sgn", "fse", "fss"}
# what registers and publishers write for a mother tongue they do not know (DVV: 99)
UNKNOWN_LANGUAGES = {None, "", "99", "xx", "und", "unknown"}

STEPS = (
    ("registration_to_referral", "registration -> first referral"),
    ("referral_to_reached", "outreach referral -> reached"),
    ("referral_to_assessment", "initial-assessment referral -> assessment completed"),
    ("assessment_to_plan_request", "assessment completed -> plan requested"),
)

# The service chain: (key, label, why a person counted at the step may have only a later step on record).
CHAIN = (
    ("newcomers", "newcomers", ""),
    ("referred", "referred to an authority", "later steps without a referral to the municipality's authorities (referred elsewhere or outside the hub)"),
    ("reached", "reached", "assessed or plan requested without a recorded contact (contact not reported to the hub)"),
    ("assessed", "initial assessment done", "plans requested without a recorded assessment (assessment reported outside the hub)"),
    ("plan_requested", "integration plan requested", ""),
)
# a recipient reporting one of these on any of the person's referrals has been in contact with the person
CONTACT_STATES = REACHED_STATES


@dataclass(frozen=True)
class NewcomerFact:
    person_key: str
    registered_at: dt.datetime
    mother_tongue: str | None = None
    nationalities: tuple[str, ...] = ()
    arrival_date: dt.date | None = None


@dataclass(frozen=True)
class ReferralFact:
    referral_id: str
    person_key: str
    authority: str
    purpose: str
    state: str
    created_at: dt.datetime
    due: dt.date | None = None


@dataclass(frozen=True)
class StatusFact:
    """One step of a referral's history: the state it moved to, and when (the recipient's time)."""

    referral_id: str
    state: str
    occurred_at: dt.datetime


@dataclass(frozen=True)
class StepFact:
    """A person's assessment or plan-request step (see hub.reporting.ledger_query.assessment_and_plan_steps)."""

    person_key: str
    step: str  # "assessment_started", "assessment_completed", "assessment_received", "plan_requested"
    at: dt.datetime


@dataclass(frozen=True)
class Duration:
    n: int
    median_days: float | None
    p90_days: float | None


@dataclass
class Indicators:
    municipality: str
    period_from: dt.date
    period_to: dt.date
    as_of: dt.date
    newcomers: int = 0
    by_mother_tongue: Counter = field(default_factory=Counter)
    by_mother_tongue_group: Counter = field(default_factory=Counter)
    by_nationality: Counter = field(default_factory=Counter)
    reached: int = 0
    referred: int = 0  # persons with at least one referral
    referrals_by_authority: Counter = field(default_factory=Counter)
    assessments_started: int = 0
    assessments_done: int = 0
    plans_requested: int = 0
    chain: dict[str, int] = field(default_factory=dict)  # CHAIN step -> persons at that step or further
    recorded: dict[str, int] = field(default_factory=dict)  # CHAIN step -> persons with the step itself recorded
    steps: dict[str, Duration] = field(default_factory=dict)
    open_by_authority: Counter = field(default_factory=Counter)
    overdue_by_authority: Counter = field(default_factory=Counter)

    @property
    def open_referrals(self) -> int:
        return sum(self.open_by_authority.values())

    @property
    def overdue_referrals(self) -> int:
        return sum(self.overdue_by_authority.values())

    @property
    def inferred(self) -> dict[str, int]:
        """CHAIN step -> persons counted there only because a later step is recorded for them."""
        return {key: self.chain.get(key, 0) - self.recorded.get(key, 0) for key, _, _ in CHAIN}

    def funnel(self) -> list[tuple[str, int]]:
        """The service chain as (short name, persons), each step at most the one before it."""
        return [(key.replace("_", " "), self.chain.get(key, 0)) for key, _, _ in CHAIN]

    def as_dict(self) -> dict:
        return {
            "municipality": self.municipality,
            "from": self.period_from.isoformat(),
            "to": self.period_to.isoformat(),
            "as_of": self.as_of.isoformat(),
            "newcomers": self.newcomers,
            "by_mother_tongue_group": dict(sorted(self.by_mother_tongue_group.items())),
            "by_mother_tongue": dict(sorted(self.by_mother_tongue.items())),
            "by_nationality": dict(sorted(self.by_nationality.items())),
            "reached": self.reached,
            "referred": self.referred,
            "referrals_by_authority": dict(sorted(self.referrals_by_authority.items())),
            "assessments_started": self.assessments_started,
            "assessments_done": self.assessments_done,
            "plans_requested": self.plans_requested,
            "chain": [
                {"step": key, "persons": self.chain.get(key, 0), "recorded": self.recorded.get(key, 0), "only_from_a_later_step": self.inferred[key]}
                for key, _, _ in CHAIN
            ],
            "step_days": {name: {"n": d.n, "median": d.median_days, "p90": d.p90_days} for name, d in self.steps.items()},
            "open_referrals": self.open_referrals,
            "overdue_referrals": self.overdue_referrals,
            "open_by_authority": dict(sorted(self.open_by_authority.items())),
            "overdue_by_authority": dict(sorted(self.overdue_by_authority.items())),
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def duration(days: Sequence[float]) -> Duration:
    rounded = lambda v: None if v is None else round(v, 1)  # noqa: E731
    return Duration(len(days), rounded(percentile(days, 50)), rounded(percentile(days, 90)))


def mother_tongue_group(code: str | None) -> str:
    code = (code or "").lower() or None
    if code in UNKNOWN_LANGUAGES:
        return "unknown"
    if code in SIGN_LANGUAGES:
        return "sign language"
    return DOMESTIC_GROUPS.get(code, "foreign language")


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _days(start: dt.datetime, end: dt.datetime) -> float:
    start, end = _aware(start), _aware(end)
    return max(0.0, (end - start).total_seconds() / 86400.0)


def in_period(when: dt.datetime, period_from: dt.date, period_to: dt.date) -> bool:
    """Whether `when` falls on a day from..to inclusive, in Finnish time."""
    when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    return period_from <= when.astimezone(FINLAND).date() <= period_to


def compute(
    municipality: str,
    period_from: dt.date,
    period_to: dt.date,
    as_of: dt.date,
    newcomers: Iterable[NewcomerFact],
    referrals: Iterable[ReferralFact],
    statuses: Iterable[StatusFact],
    steps: Iterable[StepFact],
) -> Indicators:
    """The indicators for the newcomers registered from..to; referrals/statuses/steps of other people are ignored."""
    out = Indicators(municipality, period_from, period_to, as_of)
    cohort = {n.person_key: n for n in newcomers if in_period(n.registered_at, period_from, period_to)}
    out.newcomers = len(cohort)
    for n in cohort.values():
        group = mother_tongue_group(n.mother_tongue)
        out.by_mother_tongue["unknown" if group == "unknown" else n.mother_tongue.lower()] += 1
        out.by_mother_tongue_group[group] += 1
        for nationality in n.nationalities or ("unknown",):
            out.by_nationality[nationality] += 1

    mine = [r for r in referrals if r.person_key in cohort]
    history: dict[str, list[StatusFact]] = {}
    for st in sorted(statuses, key=lambda s: _aware(s.occurred_at)):
        history.setdefault(st.referral_id, []).append(st)

    first_referral: dict[str, dt.datetime] = {}
    first_assessment_referral: dict[str, dt.datetime] = {}
    reached: dict[str, float] = {}  # person -> days from outreach referral to reached (nan: no history)
    contacted: set[str] = set()  # persons a recipient reported contact with, on any referral
    tasks: set[tuple[str, str, str]] = set()  # (person, authority, purpose): a re-issued referral is the same task
    for r in mine:
        if r.state in CONTACT_STATES or any(s.state in CONTACT_STATES for s in history.get(r.referral_id, ())):
            contacted.add(r.person_key)
        if (r.person_key, r.authority, r.purpose) not in tasks:
            tasks.add((r.person_key, r.authority, r.purpose))
            out.referrals_by_authority[r.authority] += 1
        if r.state not in CLOSED_STATES:
            out.open_by_authority[r.authority] += 1
            if r.due is not None and r.due < as_of:
                out.overdue_by_authority[r.authority] += 1
        if r.person_key not in first_referral or r.created_at < first_referral[r.person_key]:
            first_referral[r.person_key] = r.created_at
        if r.purpose == INITIAL_ASSESSMENT and (r.person_key not in first_assessment_referral or r.created_at < first_assessment_referral[r.person_key]):
            first_assessment_referral[r.person_key] = r.created_at
        if r.purpose == OUTREACH:
            when = next((s.occurred_at for s in history.get(r.referral_id, []) if s.state in REACHED_STATES), None)
            if when is not None:
                d = _days(r.created_at, when)
                reached[r.person_key] = min(d, reached.get(r.person_key, d))
            elif r.state in REACHED_STATES:
                reached.setdefault(r.person_key, math.nan)
    out.referred = len(first_referral)
    out.reached = len(reached)

    by_person: dict[str, dict[str, dt.datetime]] = {}
    for st in steps:
        if st.person_key in cohort:
            seen = by_person.setdefault(st.person_key, {})
            if st.step not in seen or _aware(st.at) < _aware(seen[st.step]):
                seen[st.step] = st.at
    assessed: dict[str, dt.datetime] = {}  # person -> when the assessment was first known done (status or the assessment itself)
    for p, seen in by_person.items():
        times = [seen[k] for k in ("assessment_completed", "assessment_received") if k in seen]
        if times:
            assessed[p] = min(times, key=_aware)
    out.assessments_started = sum(1 for p, s in by_person.items() if "assessment_started" in s or p in assessed)
    out.assessments_done = len(assessed)
    planned = {p for p, s in by_person.items() if "plan_requested" in s}
    out.plans_requested = len(planned)
    plan_days = [_days(assessed[p], by_person[p]["plan_requested"]) for p in planned if p in assessed]

    recorded = {"newcomers": set(cohort), "referred": set(first_referral), "reached": contacted | set(reached), "assessed": set(assessed), "plan_requested": planned}
    later: set[str] = set()
    for key, _, _ in reversed(CHAIN):  # a person at a step has passed every step before it
        later |= recorded[key]
        out.chain[key] = len(later)
        out.recorded[key] = len(recorded[key])

    out.steps = {
        "registration_to_referral": duration([_days(cohort[p].registered_at, at) for p, at in first_referral.items()]),
        "referral_to_reached": duration([d for d in reached.values() if not math.isnan(d)]),
        "referral_to_assessment": duration(
            [_days(first_assessment_referral[p], at) for p, at in assessed.items() if p in first_assessment_referral]
        ),
        "assessment_to_plan_request": duration(plan_days),
    }
    return out
