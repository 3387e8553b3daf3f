"""Every Kafka topic of a deployment, with partitions and configs, from the hub's names and the
authority reference data: the one list the compose init step, `hub topics` and the Strimzi
KafkaTopic resources are made from.

Partitions: topics keyed by person get `partitions` (HUB_TOPIC_PARTITIONS); the hub's state is in
the database, so there is no changelog to co-partition. hub.newcomers.v1 and hub.routing-facts.v1
(`topics.CO_PARTITIONED`) must have the same count: routing reads partition i of both in one
member, so a person's newcomers and routing facts meet in order; every fixed topic gets
`partitions`, so they do. A per-recipient topic has one partition: a recipient sees a few
referrals a day, in `sequence` order, and 3 x ~370 recipients (referrals, plan requests, notices)
stays a modest partition count. faust reads nothing (every stream is read by a batch consumer), so
it has no internal topics here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.routing.reference import Reference
from hub.schemas import topics as names

DAY_MS = 24 * 60 * 60 * 1000
EVENT_LOG_RETENTION_DAYS = 30  # long enough to replay a month and outlast a recipient's outage
DEAD_LETTER_RETENTION_DAYS = 90  # operators investigate and replay; longer than any event log

EVENT_LOG = "event log"
DEAD_LETTER = "dead letters"


@dataclass(frozen=True)
class KafkaTopic:
    """One Kafka topic as a deployment creates it (a `kafka-topics --create`, a Strimzi KafkaTopic);
    what flows on it is `hub.schemas.topics.TopicSpec`."""

    name: str
    partitions: int
    replicas: int
    kind: str  # EVENT_LOG or DEAD_LETTER
    configs: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    recipient: str | None = None  # the authority id of a per-recipient topic

    def as_dict(self) -> dict:
        return {"name": self.name, "partitions": self.partitions, "replicas": self.replicas, "kind": self.kind,
                "configs": dict(self.configs), "recipient": self.recipient}


def recipients(reference: Reference) -> list[str]:
    """Every authority id that routing can send to: each municipality's responsible authorities."""
    found = {
        responsible.authority
        for code in reference.municipalities
        for responsible in reference.authorities(code).roles.values()
        if responsible.authority
    }
    return sorted(found)


def _configs(kind: str, replicas: int) -> dict[str, str]:
    days = DEAD_LETTER_RETENTION_DAYS if kind == DEAD_LETTER else EVENT_LOG_RETENTION_DAYS
    configs = {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}
    if replicas >= 3:  # acks=all then survives one broker down without losing an acknowledged write
        configs["min.insync.replicas"] = "2"
    return configs


def hub_topics(reference: Reference, *, partitions: int = 12, replicas: int = 3) -> list[KafkaTopic]:
    """All topics, fixed ones first, then three per recipient (sorted by name)."""
    if partitions < 1 or replicas < 1:
        raise ValueError("partitions and replicas must be at least 1")

    def spec(name: str, kind: str, count: int, recipient: str | None = None) -> KafkaTopic:
        return KafkaTopic(name, count, replicas, kind, _configs(kind, replicas), recipient)

    fixed = [spec(name, DEAD_LETTER if name == names.DEAD_LETTERS else EVENT_LOG, partitions) for name in names.FIXED_TOPICS]
    per_recipient = []
    for authority in recipients(reference):
        per_recipient += [spec(name, EVENT_LOG, 1, authority) for name in names.recipient_topics(authority)]
    return fixed + sorted(per_recipient, key=lambda t: t.name)
