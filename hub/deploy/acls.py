"""Kafka ACLs of a deployment, from the same reference data as the topics (least privilege).

- each recipient (`User:<kind>-<code>`, e.g. `User:municipality-091`, `User:wellbeing-area-05`)
  reads only its own referral, plan-request and notice topics, with consumer groups named
  `<principal>.<anything>`, and writes only referral statuses, assessments and consents (the
  assessing authority records the person's consent);
- the hub (`User:<app id>`) reads the topics its workers consume, writes every `hub.` topic and
  owns the consumer groups `<app id>.<name>` of its batch consumers (one per stream, e.g.
  `<app id>.newcomer-detection`); faust reads nothing, so it has no group or internal topic;
- operations (`User:hub-ops`) alone read the dead letters.

Kafka ACLs cannot check a record's content: that a status comes from the referral's recipient is
checked by the routing agent against the ledger (dead letter `forbidden`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.deploy.topics import recipients
from hub.routing.reference import Reference
from hub.schemas import topics as names

OPS = "hub-ops"
LITERAL = "literal"
PREFIX = "prefix"

# what a recipient publishes, and what the hub's workers consume
RECIPIENT_WRITES = (names.REFERRAL_STATUS, names.ASSESSMENTS, names.CONSENTS)
HUB_READS = (names.POPULATION_CHANGES, names.NEWCOMERS, names.REFERRAL_STATUS, names.ASSESSMENTS, names.CONSENTS)


@dataclass(frozen=True, order=True)
class Acl:
    """One allow rule: `principal` may do `operations` on a resource (literal name or prefix)."""

    principal: str  # the user name, without "User:"
    resource_type: str  # topic | group | cluster
    name: str
    pattern: str  # literal | prefix
    operations: tuple[str, ...]

    def matches(self, resource_type: str, name: str) -> bool:
        if resource_type != self.resource_type:
            return False
        return name == self.name if self.pattern == LITERAL else name.startswith(self.name)

    def as_dict(self) -> dict:
        return {"principal": f"User:{self.principal}", "resource_type": self.resource_type, "name": self.name,
                "pattern": self.pattern, "operations": list(self.operations)}


def principal(authority_id: str) -> str:
    """The Kafka user of a recipient: `municipality:091` -> `municipality-091` (a valid k8s name)."""
    kind, _, code = authority_id.partition(":")
    return f"{kind.replace('_', '-')}-{code}".lower()


def group_prefix(user: str) -> str:
    """Consumer groups a user may use start with this (the dot keeps `x-1` from matching `x-10`)."""
    return f"{user}."


def recipient_acls(authority_id: str) -> list[Acl]:
    user = principal(authority_id)
    acls = [Acl(user, "topic", topic, LITERAL, ("Read", "Describe"))
            for topic in names.recipient_topics(authority_id)]
    acls.append(Acl(user, "group", group_prefix(user), PREFIX, ("Read",)))
    acls += [Acl(user, "topic", topic, LITERAL, ("Write", "Describe")) for topic in RECIPIENT_WRITES]
    return acls


def hub_acls(app_id: str) -> list[Acl]:
    acls = [Acl(app_id, "topic", topic, LITERAL, ("Read",)) for topic in HUB_READS]
    acls += [
        Acl(app_id, "topic", "hub.", PREFIX, ("Write", "Describe")),
        # the groups of the hub's batch consumers, one per stream: `<app id>.<name>` (HubApp.batch_group)
        Acl(app_id, "group", f"{app_id}.", PREFIX, ("Read", "Describe")),
        Acl(app_id, "cluster", "kafka-cluster", LITERAL, ("Describe",)),
    ]
    return acls


def ops_acls() -> list[Acl]:
    return [
        Acl(OPS, "topic", names.DEAD_LETTERS, LITERAL, ("Read", "Describe")),
        Acl(OPS, "group", group_prefix(OPS), PREFIX, ("Read",)),
    ]


def all_acls(reference: Reference, *, app_id: str = "integration-hub") -> dict[str, list[Acl]]:
    """Every user and its ACLs: the hub, operations, then each recipient (sorted)."""
    users = {app_id: hub_acls(app_id), OPS: ops_acls()}
    for authority in recipients(reference):
        users[principal(authority)] = recipient_acls(authority)
    if len(users) != 2 + len(recipients(reference)):
        raise ValueError("two authorities map to the same Kafka user name; check the reference data")
    return users


def allowed(acls: list[Acl], resource_type: str, name: str, operation: str) -> bool:
    """Whether some rule allows `operation` on the resource (Kafka: All implies every operation,
    Read/Write imply Describe)."""
    implied = {operation, "All"} | ({"Read", "Write"} if operation == "Describe" else set())
    return any(acl.matches(resource_type, name) and implied & set(acl.operations) for acl in acls)
