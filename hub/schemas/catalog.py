"""Which schema travels on which topic, who writes and who reads it: the one table that the schema
registry endpoint, the AsyncAPI document and `hub replay` share.

Subjects (Confluent Schema Registry naming): a fixed topic has the TopicNameStrategy subject
`<topic>-value`; per-recipient topics (hub.referrals.<kind>.<code>.v1, hub.plan-requests..., hub.notices...) are an
open set, so their schemas are served under the RecordNameStrategy subject `fi.integrationhub.<Name>`,
which every schema also has. Deserializers need neither: they look the id up (`/schemas/ids/{id}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hub.streams import topics

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
        pattern = re.escape(self.address).replace(r"\{kind\}", "(municipality|wellbeing_area|employment_authority)").replace(r"\{code\}", "[0-9A-Za-z]{1,8}")
        return re.fullmatch(pattern, topic) is not None


PERSON = "the pseudonymous person key (never the identity code)"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(topics.POPULATION_CHANGES, "PopulationChange", PERSON, ("hub ingest dvv (DVV change data)", "municipal systems"), ("hub newcomer detection",),
              "Population-register changes, one data group of one person each."),
    TopicSpec(topics.NEWCOMERS, "Newcomer", PERSON, ("hub newcomer detection",), ("hub routing",),
              "Immigrant newcomers detected from the changes (3-year window, deduplicated by person)."),
    TopicSpec("hub.referrals.{kind}.{code}.v1", "Referral", PERSON, ("hub routing",),
              ("the recipient authority's system (only its own topic)",),
              "Referrals to one recipient authority, numbered per recipient by `sequence` for gap detection."),
    TopicSpec(topics.REFERRAL_STATUS, "ReferralStatus", "the referral id", ("recipient authorities' systems",), ("hub routing (referral ledger)",),
              "Status reports of referrals by their recipients (accepted, contacted, unreachable, assessment started, declined)."),
    TopicSpec(topics.ASSESSMENTS, "AssessmentCompleted", PERSON, ("the assessing authority's system",), ("hub consent check",),
              "Completed initial assessments (alkukartoitus)."),
    TopicSpec(topics.CONSENTS, "Consent", PERSON, ("consent-collecting systems",), ("hub consent registry",),
              "Consents granted, revoked or expired."),
    TopicSpec("hub.plan-requests.{kind}.{code}.v1", "PlanRequest", PERSON, ("hub consent check",),
              ("the plan-making authority's system (only its own topic)",),
              "Integration-plan requests, minimised to the consent's scope."),
    TopicSpec("hub.notices.{kind}.{code}.v1", "Notice", PERSON, ("hub consent check",),
              ("the notified authority's system (only its own topic): the assessor, or an earlier recipient of a plan request",),
              "Consent notices to one authority (named in `to`): consent required (an assessment held for lack of consent), "
              "consent revoked or expired (to each earlier recipient under that consent)."),
    TopicSpec(topics.DEAD_LETTERS, "DeadLetter", "the original record's key", ("every hub processor",), ("operators",),
              "Records that could not be processed: the original bytes and a reason code."),
)


def spec_for_topic(topic: str) -> TopicSpec | None:
    return next((spec for spec in TOPICS if spec.matches(topic)), None)


def record_subject(name: str) -> str:
    return f"{NAMESPACE}.{name}"


def subjects() -> dict[str, str]:
    """subject -> schema name: `<topic>-value` for fixed topics, `fi.integrationhub.<Name>` for every schema."""
    out = {f"{spec.address}-value": spec.schema for spec in TOPICS if not spec.per_recipient}
    for spec in TOPICS:
        out[record_subject(spec.schema)] = spec.schema
    return dict(sorted(out.items()))
