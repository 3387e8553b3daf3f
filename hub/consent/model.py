"""Consent rules, pure: what may pass from the assessor to the plan-making authority, and when.

No I/O here. The consent history is append-only (`ConsentRecord`s: granted, revoked, expired); the
current state of each consent is derived from it. `decide` says whether an assessment of skills
and integration-service needs (osaamisen ja kotoutumisen palvelutarpeen arviointi) may be disclosed
to the plan-making authority and which data categories, or that nothing is disclosed at all because
the assessor makes the plan itself; `releases` says which held items a new history now covers;
`revocation_recipients` who must be told.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Container, Iterable, Sequence

from hub.domain.clock import utcnow
from hub.domain.errors import Rejected

PURPOSE_INTEGRATION_PLAN = "integration_plan"
PURPOSES = (PURPOSE_INTEGRATION_PLAN,)

# The data categories of an initial assessment, in the order a PlanRequest lists them.
DATA_CATEGORIES = ("education", "work_history", "language_skills", "literacy", "service_needs", "recommended_path")

# Categories that pass to another authority on the person's consent only: the needs for special
# services include health (and social-welfare) data, a special category of personal data. No legal
# basis may name them (`LegalBasis` refuses it), so without a consent they are held or withheld.
CONSENT_ONLY_CATEGORIES = frozenset({"service_needs"})

KINDS = ("municipality", "wellbeing_area", "employment_authority")

GRANTED, REVOKED, EXPIRED = "granted", "revoked", "expired"
ACTIONS = (GRANTED, REVOKED, EXPIRED)

AUTHORITY_ID = re.compile(r"^(municipality|wellbeing_area|employment_authority):[0-9A-Za-z]{1,8}$")


class InvalidConsent(Rejected):
    """A consent or assessment that cannot be used. `reason` is a stable code; no personal data in the message."""


def authority_kind(authority_id: str) -> str:
    return authority_id.split(":", 1)[0]


def check_authority(value: str, what: str, known: Container[str] | None = None) -> str:
    """`value` if it is the id of an authority that exists (by default: in the shipped 2025
    reference data); else InvalidConsent `invalid_authority` (shape) or `unknown_authority`."""
    if not isinstance(value, str) or not AUTHORITY_ID.match(value):
        raise InvalidConsent("invalid_authority", f"{what} is not an authority id <kind>:<code> (kinds: municipality, wellbeing_area, employment_authority)")
    if known is None:
        from hub.routing.reference import known_authority_ids

        known = known_authority_ids()
    if value not in known:
        raise InvalidConsent(
            "unknown_authority",
            f"{what} is no authority of the 2025 classifications: {value} (municipality, wellbeing area and employment area codes; "
            "`hub authorities --municipality CODE` lists a municipality's); a merged or mistyped code?",
        )
    return value


def check_categories(values: Iterable[str], what: str = "data categories") -> frozenset[str]:
    values = frozenset(values)
    unknown = sorted(values - set(DATA_CATEGORIES))
    if unknown:
        raise InvalidConsent("unknown_data_category", f"{what}: unknown {', '.join(unknown)}; known: {', '.join(DATA_CATEGORIES)}")
    return values


def ordered(categories: Iterable[str]) -> tuple[str, ...]:
    """Categories in the canonical order."""
    s = set(categories)
    return tuple(c for c in DATA_CATEGORIES if c in s)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One entry of the append-only consent history.

    A grant carries the scope (purpose, categories, recipients, validity). A revocation or an expiry
    names the consent it ends; its scope fields may be empty. A consent id, once ended, stays ended:
    a renewed consent is a new grant with a new consent id.
    """

    event_id: str
    consent_id: str
    person_id: str
    action: str
    recorded_by: str
    recorded_at: dt.datetime
    purpose: str = PURPOSE_INTEGRATION_PLAN
    data_categories: frozenset[str] = frozenset()
    recipients: frozenset[str] = frozenset()
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    evidence: str | None = None

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise InvalidConsent("invalid_consent", f"action must be one of {', '.join(ACTIONS)}")
        if not self.consent_id:
            raise InvalidConsent("invalid_consent", "consent_id is empty")
        if self.action == GRANTED:
            if self.purpose not in PURPOSES:
                raise InvalidConsent("invalid_consent", f"purpose must be one of {', '.join(PURPOSES)}")
            if not self.data_categories:
                raise InvalidConsent("invalid_consent", "a grant must name at least one data category")
            if not self.recipients:
                raise InvalidConsent("invalid_consent", "a grant must name at least one recipient authority")
            if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
                raise InvalidConsent("invalid_consent", "valid_until must be later than valid_from")
        check_categories(self.data_categories)
        for r in self.recipients:
            check_authority(r, "a recipient")
        if self.action == EXPIRED and self.recorded_by and not AUTHORITY_ID.match(self.recorded_by):
            return  # an expiry the hub found by time is recorded by the hub itself (its app id), not by an authority
        check_authority(self.recorded_by, "recorded_by")


@dataclass(frozen=True, slots=True)
class Consent:
    """The current state of one consent, derived from the history."""

    grant: ConsentRecord
    ended_by: ConsentRecord | None = None

    @property
    def consent_id(self) -> str:
        return self.grant.consent_id

    def status(self, now: dt.datetime) -> str:
        """active, not_yet_valid, expired (by time or by an expiry record) or revoked."""
        if self.ended_by is not None:
            return self.ended_by.action
        if self.grant.valid_from and now < self.grant.valid_from:
            return "not_yet_valid"
        if self.grant.valid_until and now >= self.grant.valid_until:
            return EXPIRED
        return "active"

    def why_not(self, purpose: str, recipient: str, categories: frozenset[str], now: dt.datetime) -> str | None:
        """None when this consent covers the recipient for some of `categories` now; else the reason code."""
        status = self.status(now)
        if status != "active":
            return status
        if self.grant.purpose != purpose:
            return "purpose_not_covered"
        if recipient not in self.grant.recipients:
            return "recipient_not_named"
        if categories and not (categories & self.grant.data_categories):
            return "no_category_covered"
        return None


def current_consents(history: Iterable[ConsentRecord], person_id: str | None = None) -> dict[str, Consent]:
    """Consent id -> current state. The first grant of an id defines it; any revocation or expiry ends it,
    whatever order the records arrived in (a revocation that overtook its grant still ends it)."""
    grants: dict[str, ConsentRecord] = {}
    ends: dict[str, ConsentRecord] = {}
    for rec in history:
        if person_id is not None and rec.person_id != person_id:
            continue
        if rec.action == GRANTED:
            grants.setdefault(rec.consent_id, rec)
        else:
            ends.setdefault(rec.consent_id, rec)
    return {cid: Consent(g, ends.get(cid)) for cid, g in grants.items()}


@dataclass(frozen=True, slots=True)
class LegalBasis:
    """A disclosure allowed by law without consent, named in configuration (never assumed): who
    discloses (the assessor's kind) to whom (the plan maker's kind), for which purpose and data
    categories, and the section of the act that allows it. A basis for municipality ->
    employment authority does not cover wellbeing area -> employment authority."""

    name: str  # what the audit row and the PlanRequest name, e.g. "681/2023 § NN municipality -> employment authority"
    section: str  # the statute and section, e.g. "681/2023 § NN (2 mom.)"
    purpose: str
    discloser_kinds: frozenset[str]
    recipient_kinds: frozenset[str]
    data_categories: frozenset[str]

    def __post_init__(self):
        if not self.name or ";" in self.name:
            raise InvalidConsent("invalid_legal_basis", "a legal basis needs a name without ';' (the audit lists several names with '; ')")
        if not self.section or not self.section.strip():
            raise InvalidConsent("invalid_legal_basis", f"legal basis {self.name}: section is empty; cite the statute and section that allows the disclosure")
        if self.purpose not in PURPOSES:
            raise InvalidConsent("invalid_legal_basis", f"legal basis {self.name}: purpose must be one of {', '.join(PURPOSES)}")
        for what, kinds in (("discloser_kinds", self.discloser_kinds), ("recipient_kinds", self.recipient_kinds)):
            if not kinds or not set(kinds) <= set(KINDS):
                raise InvalidConsent("invalid_legal_basis", f"legal basis {self.name}: {what} must be a non-empty list of {', '.join(KINDS)}")
        check_categories(self.data_categories, f"legal basis {self.name}: data categories")
        health = sorted(self.data_categories & CONSENT_ONLY_CATEGORIES)
        if health:
            raise InvalidConsent("invalid_legal_basis", f"legal basis {self.name}: {', '.join(health)} may hold health data and passes on the "
                                 "person's consent only; remove it from the basis's data_categories")

    def covers(self, purpose: str, discloser: str, recipient: str) -> bool:
        """The basis applies to this purpose, from this discloser's kind to this recipient's kind."""
        return purpose == self.purpose and authority_kind(discloser) in self.discloser_kinds and authority_kind(recipient) in self.recipient_kinds


@dataclass(frozen=True, slots=True)
class Assessment:
    """An initial assessment (osaamisen ja kotoutumisen palvelutarpeen arviointi) completed, as the consent rules need it."""

    event_id: str
    assessment_id: str
    person_id: str
    person_key: str
    assessor: str
    plan_authority: str
    occurred_at: dt.datetime
    data: dict = field(default_factory=dict, hash=False, compare=False)  # category -> value, only non-empty ones

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(self.data)


@dataclass(frozen=True, slots=True)
class Disclose:
    """Send a PlanRequest to `recipient` with only `categories`, on this consent and/or legal basis."""

    recipient: str
    categories: tuple[str, ...]
    consent_id: str | None = None
    legal_basis: str | None = None
    withheld: tuple[str, ...] = ()  # categories of the assessment no basis covers; never sent


@dataclass(frozen=True, slots=True)
class OwnPlan:
    """The assessor makes the plan itself: nothing is disclosed. The PlanRequest still goes to it (its
    system learns a plan is due, with its own assessment's data), on no consent and no legal basis;
    it is neither held nor audited as a disclosure, and no revocation or withdrawal concerns it."""

    recipient: str
    categories: tuple[str, ...]
    consent_id: None = None
    legal_basis: None = None
    withheld: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the item until a consent covers it; tell the assessor why."""

    recipient: str
    reason: str  # no_consent, purpose_not_covered, recipient_not_named, not_yet_valid, expired, revoked, no_category_covered
    consent_id: str | None = None  # the consent the reason is about, when there is one
    missing: tuple[str, ...] = ()  # categories a consent would need to cover


Decision = Disclose | Hold | OwnPlan


def same_authority(assessor: str, plan_maker: str) -> bool:
    """The assessor is the plan maker: the data stays with the authority that holds it."""
    return assessor == plan_maker


def decide(
    assessment: Assessment,
    history: Iterable[ConsentRecord],
    legal_bases: Sequence[LegalBasis] = (),
    now: dt.datetime | None = None,
    purpose: str = PURPOSE_INTEGRATION_PLAN,
) -> Decision:
    """May the assessment go to its plan-making authority now, and with which categories?

    When the assessor is the plan maker nothing is disclosed: `OwnPlan`, whatever the consents. Else a
    category goes only when a consent in force now (this person, purpose, recipient, time) or a
    configured legal basis for this discloser (the assessor), recipient and category covers it (never a
    consent-only category, `CONSENT_ONLY_CATEGORIES`). One disclosure rests on at most one consent (the one covering
    most of the assessment's categories; on a tie the latest grant), so that an audit row and a later
    revocation point at exactly one consent. Nothing covered: hold.
    """
    now = now or utcnow()
    recipient = assessment.plan_authority
    wanted = assessment.categories
    if same_authority(assessment.assessor, recipient):
        return OwnPlan(recipient, ordered(wanted))
    consents = list(current_consents(history, assessment.person_id).values())
    usable = [c for c in consents if c.why_not(purpose, recipient, wanted, now) is None]
    best = max(usable, key=lambda c: (len(c.grant.data_categories & wanted), c.grant.recorded_at, c.consent_id), default=None)
    by_law = [b for b in legal_bases if b.covers(purpose, assessment.assessor, recipient) and (b.data_categories & wanted or not wanted)]

    if best is None and not by_law:
        return _hold(consents, purpose, recipient, wanted, now)
    consent_cats = best.grant.data_categories & wanted if best else frozenset()
    law_cats = frozenset().union(*(b.data_categories for b in by_law)) & wanted - CONSENT_ONLY_CATEGORIES  # LegalBasis refuses them too
    disclosed = ordered(consent_cats | law_cats)
    # an assessment without any data still goes (the recipient learns a plan is due) on whichever basis exists
    use_consent = best is not None and (bool(consent_cats) or not wanted)
    use_law = bool(by_law) and (bool(law_cats) or not use_consent)
    return Disclose(
        recipient=recipient,
        categories=disclosed,
        consent_id=best.consent_id if use_consent else None,
        legal_basis="; ".join(sorted({b.name for b in by_law})) if use_law else None,
        withheld=ordered(wanted - set(disclosed)),
    )


def consent_only_withheld(decision: Decision) -> tuple[str, ...]:
    """The consent-only (health) categories a disclosure left out: they are held apart until a consent
    covers them (`hub.consent.records.remainder_record`), never dropped."""
    if not isinstance(decision, Disclose):
        return ()
    return tuple(c for c in decision.withheld if c in CONSENT_ONLY_CATEGORIES)


# How close each reason is to a disclosure: the assessor is told about the closest miss.
_REASON_RANK = ("no_category_covered", "not_yet_valid", "recipient_not_named", "purpose_not_covered", EXPIRED, REVOKED)


def _hold(consents: list[Consent], purpose: str, recipient: str, wanted: frozenset[str], now: dt.datetime) -> Hold:
    if not consents:
        return Hold(recipient, "no_consent", None, ordered(wanted))
    misses = [(c.why_not(purpose, recipient, wanted, now), c) for c in consents]
    reason, consent = min(misses, key=lambda m: (_REASON_RANK.index(m[0]), -m[1].grant.recorded_at.timestamp()))
    return Hold(recipient, reason, consent.consent_id, ordered(wanted))


def releases(held: Sequence[tuple[object, Assessment]], history: Iterable[ConsentRecord], legal_bases: Sequence[LegalBasis] = (), now: dt.datetime | None = None):
    """The held items (in the given order) that the history now covers, each with its decision: a
    `Disclose`, or an `OwnPlan` for an item held before assessor == plan maker needed no consent."""
    history = list(history)
    out = []
    for item_id, assessment in held:
        decision = decide(assessment, history, legal_bases, now)
        if isinstance(decision, (Disclose, OwnPlan)):
            out.append((item_id, assessment, decision))
    return out


def revocation_recipients(consent_id: str, disclosures: Iterable[tuple[str, str | None]]) -> list[str]:
    """Each earlier recipient of data under `consent_id`, once, in order of their first disclosure.

    `disclosures` are (recipient, consent_id) pairs in the order they were made.
    """
    seen: list[str] = []
    for recipient, cid in disclosures:
        if cid == consent_id and recipient not in seen:
            seen.append(recipient)
    return seen


def due_expiries(history: Iterable[ConsentRecord], now: dt.datetime) -> list[Consent]:
    """Consents whose valid_until has passed but that have no expiry (or revocation) record yet."""
    return [c for c in current_consents(history).values() if c.ended_by is None and c.grant.valid_until and now >= c.grant.valid_until]


def becoming_valid(history: Iterable[ConsentRecord], now: dt.datetime) -> set[str]:
    """Person ids with a consent in force now that had a valid_from (held items may now be released)."""
    return {c.grant.person_id for c in current_consents(history).values() if c.grant.valid_from and c.status(now) == "active"}
