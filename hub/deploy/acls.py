"""Kafka ACLs of a deployment, from the same reference data as the topics (least privilege).

- each recipient (`User:<kind>-<code>`, e.g. `User:municipality-091`, `User:wellbeing-area-05`)
  reads only its own referral, plan-request and notice topics, with consumer groups named
  `<principal>.<anything>`, and writes only referral statuses, assessments and consents (the
  assessing authority records the person's consent), and the routing facts of its kind: an
  employment authority its jobseekers' statuses, a municipality or wellbeing area the service needs
  it identified;
- the Finnish Immigration Service (`User:migri`) writes residence permits and nothing else;
- the hub (`User:<app id>`) reads the topics its workers consume (the routing facts it takes in and
  its own hop hub.routing-facts.v1 among them), writes every `hub.` topic and
  owns the consumer groups `<app id>.<name>` of its batch consumers (one per stream, e.g.
  `<app id>.newcomer-detection`); faust reads nothing, so it has no group or internal topic;
- the webhook delivery service (`User:<app id>-webhooks`, `hub webhooks serve`) reads every
  recipient's referral, plan-request and notice topics (to POST them to the recipients' callback
  URLs; by prefix, `hub.referrals.<kind>.` and so on) with its own consumer groups
  `<app id>-webhooks.<subscription id>` (`<its user>.<id>`: the hub's prefix `<app id>.` does not
  cover them, so the hub's user cannot join them, nor the service's user the hub's), and nothing
  else: it writes no topic;
- operations (`User:hub-ops`) alone read the dead letters.

Kafka ACLs cannot check a record's content: that a status comes from the referral's recipient is
checked by the routing agent against the ledger, that a jobseeker status is of the publisher's own
employment area by the signed publisher's identity fields (hub.domain.publishers; dead letter
`forbidden`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.deploy.topics import recipients
from hub.routing.reference import Reference
from hub.schemas import topics as names
from hub.schemas.facts import MIGRI
from hub.webhooks.policy import consumer_group_prefix as webhook_group_prefix

OPS = "hub-ops"
LITERAL = "literal"
PREFIX = "prefix"

# what a recipient publishes, and what the hub's workers consume
RECIPIENT_WRITES = (names.REFERRAL_STATUS, names.ASSESSMENTS, names.CONSENTS)
# the routing facts an authority of each kind publishes besides those
FACT_WRITES = {
    "employment_authority": (names.JOBSEEKER_STATUS,),
    "municipality": (names.SERVICE_NEEDS,),
    "wellbeing_area": (names.SERVICE_NEEDS,),
}
MIGRI_WRITES = (names.RESIDENCE_PERMITS,)
HUB_READS = (names.POPULATION_CHANGES, names.NEWCOMERS, names.REFERRAL_STATUS, names.ASSESSMENTS, names.CONSENTS,
             names.JOBSEEKER_STATUS, names.RESIDENCE_PERMITS, names.SERVICE_NEEDS, names.ROUTING_FACTS)


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


def recipient_writes(authority_id: str) -> tuple[str, ...]:
    """The topics an authority writes: statuses, assessments, consents, and its kind's routing facts."""
    return RECIPIENT_WRITES + FACT_WRITES.get(authority_id.partition(":")[0], ())


def recipient_acls(authority_id: str) -> list[Acl]:
    user = principal(authority_id)
    acls = [Acl(user, "topic", topic, LITERAL, ("Read", "Describe"))
            for topic in names.recipient_topics(authority_id)]
    acls.append(Acl(user, "group", group_prefix(user), PREFIX, ("Read",)))
    acls += [Acl(user, "topic", topic, LITERAL, ("Write", "Describe")) for topic in recipient_writes(authority_id)]
    return acls


def migri_acls() -> list[Acl]:
    """The Finnish Immigration Service writes residence permits; it reads nothing of the hub's."""
    return [Acl(MIGRI, "topic", topic, LITERAL, ("Write", "Describe")) for topic in MIGRI_WRITES]


def hub_acls(app_id: str) -> list[Acl]:
    acls = [Acl(app_id, "topic", topic, LITERAL, ("Read",)) for topic in HUB_READS]
    acls += [
        Acl(app_id, "topic", "hub.", PREFIX, ("Write", "Describe")),
        # the groups of the hub's batch consumers, one per stream: `<app id>.<name>` (HubApp.batch_group)
        Acl(app_id, "group", f"{app_id}.", PREFIX, ("Read", "Describe")),
        Acl(app_id, "cluster", "kafka-cluster", LITERAL, ("Describe",)),
    ]
    return acls


def webhooks_user(app_id: str) -> str:
    """The Kafka user of the webhook delivery service (HUB_KAFKA_SASL_USERNAME of `hub webhooks serve`)."""
    return f"{app_id}-webhooks"


# the per-recipient topic families (`hub.<family>.<kind>.<code>.v1`) the webhook delivery service reads
RECIPIENT_FAMILIES = (names.REFERRALS, names.PLAN_REQUESTS, names.NOTICES)


def webhooks_topic_prefixes(reference: Reference) -> list[str]:
    """`hub.referrals.municipality.`, ...: each family of recipient topics, per kind of recipient in the
    reference data. A prefix per family and kind, not per family: `hub.notices.` would also match the
    shared `hub.notices.v1` of earlier versions (every authority's notices, readable by none)."""
    kinds = sorted({authority.partition(":")[0] for authority in recipients(reference)})
    return [family.split("{kind}", 1)[0] + f"{kind}." for family in RECIPIENT_FAMILIES for kind in kinds]


def webhooks_acls(app_id: str, reference: Reference) -> list[Acl]:
    """Read (and Describe) every recipient's own topics, by prefix (a family and a kind each: any
    recipient's, none other); its consumer groups `<app id>-webhooks.` by prefix (`group_prefix` of its
    user; the hub's `<app id>.` does not cover them). Writes nothing."""
    user = webhooks_user(app_id)
    acls = [Acl(user, "topic", prefix, PREFIX, ("Read", "Describe")) for prefix in webhooks_topic_prefixes(reference)]
    acls.append(Acl(user, "group", webhook_group_prefix(app_id), PREFIX, ("Read",)))
    return acls


def ops_acls() -> list[Acl]:
    return [
        Acl(OPS, "topic", names.DEAD_LETTERS, LITERAL, ("Read", "Describe")),
        Acl(OPS, "group", group_prefix(OPS), PREFIX, ("Read",)),
    ]


def all_acls(reference: Reference, *, app_id: str = "integration-hub") -> dict[str, list[Acl]]:
    """Every user and its ACLs: the hub, its webhook delivery service, operations, Migri, then each recipient (sorted)."""
    users = {app_id: hub_acls(app_id), webhooks_user(app_id): webhooks_acls(app_id, reference), OPS: ops_acls(), MIGRI: migri_acls()}
    for authority in recipients(reference):
        users[principal(authority)] = recipient_acls(authority)
    if len(users) != 4 + len(recipients(reference)):
        raise ValueError("two authorities map to the same Kafka user name; check the reference data")
    return users


def allowed(acls: list[Acl], resource_type: str, name: str, operation: str) -> bool:
    """Whether some rule allows `operation` on the resource (Kafka: All implies every operation,
    Read/Write imply Describe)."""
    implied = {operation, "All"} | ({"Read", "Write"} if operation == "Describe" else set())
    return any(acl.matches(resource_type, name) and implied & set(acl.operations) for acl in acls)
