"""The hub's topics: their names, the per-recipient topic of an authority, and which schema travels
on each topic, who writes and who reads it (the one table that the schema-registry endpoint, the
AsyncAPI document, `hub replay` and the deployment's topic list share).

Subjects (Confluent Schema Registry naming): a fixed topic has the TopicNameStrategy subject
`<topic>-value`; per-recipient topics (hub.referrals.<kind>.<code>.v1, hub.plan-requests...,
hub.notices...) are an open set, so their schemas are served under the RecordNameStrategy subject
`fi.integrationhub.<Name>`, which every schema also has. Deserializers need neither: they look the
id up (`/schemas/ids/{id}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

POPULATION_CHANGES = "hub.population-changes.v1"
NEWCOMERS = "hub.newcomers.v1"
REFERRAL_STATUS = "hub.referral-status.v1"
ASSESSMENTS = "hub.assessments.v1"
CONSENTS = "hub.consents.v1"
JOBSEEKER_STATUS = "hub.jobseeker-status.v1"
RESIDENCE_PERMITS = "hub.residence-permits.v1"
SERVICE_NEEDS = "hub.service-needs.v1"
ROUTING_FACTS = "hub.routing-facts.v1"
DEAD_LETTERS = "hub.dead-letters.v1"

FIXED_TOPICS = (POPULATION_CHANGES, NEWCOMERS, REFERRAL_STATUS, ASSESSMENTS, CONSENTS,
                JOBSEEKER_STATUS, RESIDENCE_PERMITS, SERVICE_NEEDS, ROUTING_FACTS, DEAD_LETTERS)

# topics other organisations' systems write to: their records must be signed when identity is configured
INPUT_TOPICS = (POPULATION_CHANGES, ASSESSMENTS, CONSENTS, REFERRAL_STATUS, JOBSEEKER_STATUS, RESIDENCE_PERMITS, SERVICE_NEEDS)

# the routing facts' input topics (their schemas: hub.schemas.facts.SCHEMA_OF_TOPIC)
FACT_TOPICS = (JOBSEEKER_STATUS, RESIDENCE_PERMITS, SERVICE_NEEDS)

# topics whose partition i must hold the same persons: one consumer member reads partition i of each
# (a person's newcomers and routing facts, in order); the deployment gives them one partition count
CO_PARTITIONED = (NEWCOMERS, ROUTING_FACTS)

# per-recipient topic families: one topic per authority (`<kind>.<code>`), so ACLs can be per recipient
REFERRALS = "hub.referrals.{kind}.{code}.v1"
PLAN_REQUESTS = "hub.plan-requests.{kind}.{code}.v1"
NOTICES = "hub.notices.{kind}.{code}.v1"

_KIND = "municipality|wellbeing_area|employment_authority"
_CODE = "[0-9A-Za-z]{1,8}"
_AUTHORITY = re.compile(rf"^({_KIND}):({_CODE})$")


def _for(family: str, authority_id: str) -> str:
    m = _AUTHORITY.match(authority_id)
    if not m:
        raise ValueError(f"not an authority id (<kind>:<code>): {authority_id!r}")
    return family.format(kind=m.group(1), code=m.group(2))


def referral_topic(authority_id: str) -> str:
    """`hub.referrals.<kind>.<code>.v1`: the referrals to one recipient authority."""
    return _for(REFERRALS, authority_id)


def plan_request_topic(authority_id: str) -> str:
    """`hub.plan-requests.<kind>.<code>.v1`: plan requests for one plan-making authority."""
    return _for(PLAN_REQUESTS, authority_id)


def notice_topic(authority_id: str) -> str:
    """`hub.notices.<kind>.<code>.v1`: consent notices (consent required, consent revoked or expired)
    for one authority, the assessor or an earlier recipient named in the notice's `to`."""
    return _for(NOTICES, authority_id)


def recipient_topics(authority_id: str) -> tuple[str, str, str]:
    """Every topic that carries records for this authority only: its referrals, plan requests and notices."""
    return referral_topic(authority_id), plan_request_topic(authority_id), notice_topic(authority_id)


NAMESPACE = "fi.integrationhub"


@dataclass(frozen=True)
class TopicSpec:
    """A topic (or a per-recipient family of topics) and what flows on it."""

    address: str  # the topic name, or a pattern with {kind} and {code}
    schema: str  # Avro record name
    key: str  # what the record key is
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    description: str

    @property
    def per_recipient(self) -> bool:
        return "{kind}" in self.address

    def matches(self, topic: str) -> bool:
        if not self.per_recipient:
            return topic == self.address
        pattern = re.escape(self.address).replace(r"\{kind\}", f"({_KIND})").replace(r"\{code\}", _CODE)
        return re.fullmatch(pattern, topic) is not None


PERSON = "the pseudonymous person key (never the identity code)"
# a publisher outside the hub cannot make the pseudonymous key (it takes the hub's secret)
PUBLISHERS_PERSON = ("the publisher's own stable id of the person, e.g. its client number (never the identity code), so its records "
                     "of one person stay in order; the hub re-keys the fact by its pseudonymous person key")

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(POPULATION_CHANGES, "PopulationChange", PERSON, ("hub ingest dvv (DVV change data)", "municipal systems"), ("hub newcomer detection",),
              "Population-register changes, one data group of one person each."),
    TopicSpec(NEWCOMERS, "Newcomer", PERSON, ("hub newcomer detection",), ("hub routing",),
              "Immigrant newcomers detected from the changes (3-year window, deduplicated by person)."),
    TopicSpec(REFERRALS, "Referral", PERSON, ("hub routing",),
              ("the recipient authority's system (only its own topic)",),
              "Referrals to one recipient authority, numbered per recipient by `sequence` for gap detection."),
    TopicSpec(REFERRALS, "ReferralWithdrawn", PERSON, ("hub routing",),
              ("the recipient authority's system (only its own topic)",),
              "Withdrawals of referrals the recipient received (superseded: moved, no longer applies, identity code corrected), "
              "in the same per-recipient `sequence` as its referrals."),
    TopicSpec(REFERRALS, "ReferralUpdated", PERSON, ("hub routing",),
              ("the recipient authority's system (only its own topic)",),
              "A new due date of an open referral the recipient received (e.g. the first residence permit, from which the "
              "integration period counts, became known later), in the same per-recipient `sequence` as its referrals."),
    TopicSpec(REFERRAL_STATUS, "ReferralStatus", "the referral id", ("recipient authorities' systems",), ("hub routing (referral ledger)",),
              "Status reports of referrals by their recipients (accepted, contacted, unreachable, assessment started, declined)."),
    TopicSpec(ASSESSMENTS, "AssessmentCompleted", PERSON, ("the assessing authority's system",), ("hub consent check",),
              "Completed initial assessments (osaamisen ja kotoutumisen palvelutarpeen arviointi: assessments of skills and integration-service needs)."),
    TopicSpec(CONSENTS, "Consent", PERSON, ("consent-collecting systems",), ("hub consent registry",),
              "Consents granted, revoked or expired."),
    TopicSpec(JOBSEEKER_STATUS, "JobseekerStatus", PUBLISHERS_PERSON,
              ("the employment authority's client information system (employment_authority:<code>, for its own employment area)",),
              ("hub fact intake",),
              "A person's registration as an unemployed jobseeker began or ended (date, employment area)."),
    TopicSpec(RESIDENCE_PERMITS, "ResidencePermit", PUBLISHERS_PERSON, ("the Finnish Immigration Service (migri)",), ("hub fact intake",),
              "A person's residence permit or registered right of residence: its basis and the date of the first permit "
              "or registration, the start of the integration period."),
    TopicSpec(SERVICE_NEEDS, "ServiceNeeds", PUBLISHERS_PERSON, ("municipalities' and wellbeing areas' client systems (municipality:<code>, wellbeing_area:<code>)",),
              ("hub fact intake",),
              "Needs for special services identified in guidance, with who identified them: the identifier's current set."),
    TopicSpec(ROUTING_FACTS, "RoutingFact", PERSON, ("hub fact intake",), ("hub routing",),
              "The hub's internal hop: the routing facts of the three fact inputs, checked and keyed by person, "
              "co-partitioned with hub.newcomers.v1 so one routing member reads a person's newcomers and facts in order."),
    TopicSpec(PLAN_REQUESTS, "PlanRequest", PERSON, ("hub consent check",),
              ("the plan-making authority's system (only its own topic)",),
              "Integration-plan requests, minimised to the consent's scope."),
    TopicSpec(NOTICES, "Notice", PERSON, ("hub consent check",),
              ("the notified authority's system (only its own topic): the assessor, or an earlier recipient of a plan request",),
              "Consent notices to one authority (named in `to`): consent required (an assessment held for lack of consent), "
              "consent revoked or expired (to each earlier recipient under that consent)."),
    TopicSpec(DEAD_LETTERS, "DeadLetter", "the original record's key", ("every hub processor",), ("operators",),
              "Records that could not be processed: the original bytes and a reason code."),
)


def spec_for_topic(topic: str) -> TopicSpec | None:
    """The spec of a topic name (a per-recipient topic matches its family), or None for a foreign topic."""
    return next((spec for spec in TOPICS if spec.matches(topic)), None)


def record_subject(name: str) -> str:
    return f"{NAMESPACE}.{name}"


def subjects() -> dict[str, str]:
    """subject -> schema name: `<topic>-value` for fixed topics, `fi.integrationhub.<Name>` for every schema."""
    out = {f"{spec.address}-value": spec.schema for spec in TOPICS if not spec.per_recipient}
    for spec in TOPICS:
        out[record_subject(spec.schema)] = spec.schema
    return dict(sorted(out.items()))
