"""What a broker enforcing the generated ACLs would allow, proved on the generated set.

Tansu, the embedded broker, does not enforce ACLs and no Apache Kafka is available here, so this
test carries a small model of Kafka's authorizer (StandardAuthorizer / AclAuthorizer semantics:
principal `User:<name>` or `User:*`, literal (incl. `*`) and prefixed resource patterns, ALLOW and
DENY, DENY wins, no matching ALLOW means denied, ALLOW of Read/Write/Delete/Alter implies Describe
and of AlterConfigs implies DescribeConfigs, `All` matches every operation). It is fed both
renderings a cluster gets — the Strimzi KafkaUsers committed in deploy/k8s/base/generated/ and the
`hub acls --format kafka-acls-sh` script — and proves, for every recipient of the 2025 reference
data, that it can read and describe its own topics (referrals, plan requests, consent notices) and
none of another recipient's, nor the dead letters, and that every principal can write only the
topics it must.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hub.deploy import acls as A
from hub.deploy import render
from hub.deploy.topics import hub_topics, recipients
from hub.routing.reference import default_reference
from hub.schemas import topics as names
from hub.webhooks import policy

ROOT = Path(__file__).resolve().parents[2]
REF = default_reference()
APP = "integration-hub"
RECIPIENTS = recipients(REF)
TOPICS = [t.name for t in hub_topics(REF)]
CLUSTER = "kafka-cluster"

ALLOW, DENY = "ALLOW", "DENY"
LITERAL, PREFIXED = "LITERAL", "PREFIXED"
IMPLIED_BY = {"Describe": {"Read", "Write", "Delete", "Alter"}, "DescribeConfigs": {"AlterConfigs"}}


@dataclass(frozen=True)
class Binding:
    """One Kafka ACL binding (one operation)."""

    principal: str  # User:<name> or User:*
    permission: str  # ALLOW | DENY
    operation: str  # Read, Write, Describe, Create, DescribeConfigs, All, ...
    resource_type: str  # topic | group | cluster
    name: str
    pattern: str = LITERAL
    host: str = "*"

    def matches_resource(self, resource_type: str, name: str) -> bool:
        if resource_type != self.resource_type:
            return False
        if self.pattern == PREFIXED:
            return name.startswith(self.name)
        return self.name in (name, "*")

    def grants(self, operation: str) -> bool:
        if self.operation in (operation, "All"):
            return True
        return self.permission == ALLOW and self.operation in IMPLIED_BY.get(operation, ())  # implication: ALLOW only


class Authorizer:
    """Kafka's decision for one request: any matching DENY -> denied; else any matching ALLOW ->
    allowed; else denied (allow.everyone.if.no.acl.found=false, the default; no super users)."""

    def __init__(self, bindings):
        self.by_principal: dict[str, list[Binding]] = defaultdict(list)
        for b in bindings:
            self.by_principal[b.principal].append(b)

    def authorize(self, principal: str, operation: str, resource_type: str, name: str, host: str = "*") -> bool:
        matching = [b for b in self.by_principal.get(principal, []) + self.by_principal.get("User:*", [])
                    if b.host in ("*", host) and b.matches_resource(resource_type, name) and b.grants(operation)]
        if any(b.permission == DENY for b in matching):
            return False
        return any(b.permission == ALLOW for b in matching)

    def topics(self, user: str, operation: str) -> set[str]:
        return {t for t in TOPICS if self.authorize(f"User:{user}", operation, "topic", t)}


# --- the two renderings, parsed as a broker would read them ---------------------------------

def from_strimzi(text: str) -> set[Binding]:
    """The ACLs Strimzi's User Operator creates from KafkaUser resources (SCRAM users: User:<name>)."""
    out = set()
    for doc in yaml.safe_load_all(text):
        if not doc or doc.get("kind") != "KafkaUser":
            continue
        principal = f"User:{doc['metadata']['name']}"
        assert doc["spec"]["authentication"]["type"].startswith("scram"), "TLS users are User:CN=<name>: adapt the principal"
        for rule in doc["spec"]["authorization"]["acls"]:
            res = rule["resource"]
            pattern = {"literal": LITERAL, "prefix": PREFIXED}[res.get("patternType", "literal")]
            name = res.get("name", CLUSTER) if res["type"] != "cluster" else CLUSTER
            for op in rule.get("operations") or [rule["operation"]]:
                out.add(Binding(principal, rule.get("type", "allow").upper(), op, res["type"], name, pattern, rule.get("host", "*")))
    return out


def from_kafka_acls_sh(script: str) -> set[Binding]:
    """The ACLs kafka-acls.sh --add creates; a pattern type Kafka's PatternType does not know is an error there too."""
    out = set()
    for line in script.splitlines():
        if "kafka-acls.sh" not in line:
            continue
        args = shlex.split(line)[1:]
        opts: dict[str, list[str]] = defaultdict(list)
        i = 0
        while i < len(args):
            if args[i] == "--cluster" or args[i] == "--add":
                opts[args[i]].append("")
                i += 1
            else:
                opts[args[i]].append(args[i + 1])
                i += 2
        pattern_type = (opts.get("--resource-pattern-type") or ["literal"])[0].upper()
        assert pattern_type in (LITERAL, PREFIXED), f"kafka-acls.sh refuses --resource-pattern-type {pattern_type.lower()} when adding"
        if "--cluster" in opts:
            resource_type, name = "cluster", CLUSTER
        else:
            (resource_type,) = [t for t in ("topic", "group") if f"--{t}" in opts]
            name = opts[f"--{resource_type}"][0]
        for permission, flag in ((ALLOW, "--allow-principal"), (DENY, "--deny-principal")):
            for principal in opts.get(flag, []):
                for op in opts["--operation"]:
                    out.add(Binding(principal, permission, op, resource_type, name, pattern_type if resource_type != "cluster" else LITERAL))
    return out


COMMITTED = from_strimzi((ROOT / "deploy/k8s/base/generated/kafka-users.yaml").read_text())
SCRIPT = from_kafka_acls_sh(render.acls_script(A.all_acls(REF, app_id=APP)))
BROKER = Authorizer(COMMITTED)


def own_topics(authority: str) -> set[str]:
    return {names.referral_topic(authority), names.plan_request_topic(authority), names.notice_topic(authority)}


# --- the model itself ------------------------------------------------------------------------

def test_the_authorizer_model_follows_kafkas_rules():
    az = Authorizer([
        Binding("User:a", ALLOW, "Read", "topic", "hub.referrals.", PREFIXED),
        Binding("User:a", DENY, "Read", "topic", "hub.referrals.x.v1"),
        Binding("User:b", ALLOW, "All", "topic", "*"),
        Binding("User:*", ALLOW, "Describe", "topic", "public"),
        Binding("User:c", DENY, "Describe", "topic", "*"),
        Binding("User:c", ALLOW, "Write", "topic", "t"),
    ])
    assert az.authorize("User:a", "Read", "topic", "hub.referrals.y.v1")  # prefixed
    assert not az.authorize("User:a", "Read", "topic", "hub.referrals.x.v1")  # deny wins
    assert az.authorize("User:a", "Describe", "topic", "hub.referrals.x.v1")  # allow Read implies Describe; deny Read does not deny it
    assert not az.authorize("User:a", "Write", "topic", "hub.referrals.y.v1")  # no allow: denied
    assert not az.authorize("User:a", "Read", "topic", "hub.referral")  # a prefix is not matched by a shorter name
    assert az.authorize("User:b", "Delete", "topic", "anything")  # All and the literal wildcard
    assert not az.authorize("User:b", "Read", "group", "anything")  # other resource type
    assert az.authorize("User:z", "Describe", "topic", "public") and not az.authorize("User:z", "Read", "topic", "public")  # User:*
    assert not az.authorize("User:c", "Describe", "topic", "t") and az.authorize("User:c", "Write", "topic", "t")  # explicit deny of Describe
    assert not az.authorize("User:nobody", "Describe", "topic", "hub.referrals.y.v1")  # default deny


def test_both_renderings_give_the_broker_the_same_acls():
    assert COMMITTED == SCRIPT
    assert all(b.permission == ALLOW for b in COMMITTED)  # the generated set only allows; everything else is denied by default
    assert {b.principal for b in COMMITTED} == {f"User:{u}" for u in A.all_acls(REF, app_id=APP)}


# --- the proof on the generated set ------------------------------------------------------------

def test_each_recipient_reads_and_describes_its_own_topics_and_none_of_anothers():
    others_topics = {a: own_topics(a) for a in RECIPIENTS}
    all_recipient_topics = set().union(*others_topics.values())
    for authority in RECIPIENTS:
        user = A.principal(authority)
        readable = BROKER.topics(user, "Read")
        assert readable == own_topics(authority), f"{user} reads {sorted(readable ^ own_topics(authority))[:3]}"
        describable = BROKER.topics(user, "Describe")
        assert describable == own_topics(authority) | set(A.recipient_writes(authority))
        leaked = (readable | describable) & (all_recipient_topics - own_topics(authority))
        assert not leaked, f"{user} can see another recipient's topic {sorted(leaked)[0]}"
        assert names.DEAD_LETTERS not in readable | describable
        # and it consumes only in its own consumer groups
        assert BROKER.authorize(f"User:{user}", "Read", "group", f"{user}.referrals")
    assert len(RECIPIENTS) > 300


def test_each_recipient_reads_its_own_notice_topic_and_no_other_notices():
    notice_topics = {names.notice_topic(a): a for a in RECIPIENTS}
    assert set(notice_topics) <= set(TOPICS)  # every notice topic is one the cluster has
    assert not any(t == "hub.notices.v1" for t in TOPICS)  # no shared notice topic that nobody may read
    for authority in RECIPIENTS:
        principal = f"User:{A.principal(authority)}"
        for topic, owner in notice_topics.items():
            for operation in ("Read", "Describe"):
                assert BROKER.authorize(principal, operation, "topic", topic) == (owner == authority), (principal, operation, topic)
    # the notices of one authority reach that authority, and only it (and its webhooks; only the hub writes them)
    for topic, owner in list(notice_topics.items())[:: max(1, len(notice_topics) // 25)]:
        principals = {b.principal for b in COMMITTED}
        assert {p for p in principals if BROKER.authorize(p, "Read", "topic", topic)} == {f"User:{A.principal(owner)}", f"User:{A.webhooks_user(APP)}"}
        assert {p for p in principals if BROKER.authorize(p, "Write", "topic", topic)} == {f"User:{APP}"}


def test_no_recipient_may_join_another_recipients_consumer_groups():
    users = [A.principal(a) for a in RECIPIENTS]
    for user in users:
        for other in users:
            if other != user:
                assert not BROKER.authorize(f"User:{user}", "Read", "group", f"{other}.referrals"), f"{user} in {other}'s group"
        assert not BROKER.authorize(f"User:{user}", "Read", "group", APP)


def test_only_operations_read_the_dead_letters():
    readers = {b.principal for b in COMMITTED}
    assert {p for p in readers if BROKER.authorize(p, "Read", "topic", names.DEAD_LETTERS)} == {f"User:{A.OPS}"}
    assert BROKER.topics(A.OPS, "Read") == {names.DEAD_LETTERS}
    assert BROKER.topics(A.OPS, "Write") == set()


def test_each_publisher_writes_only_the_topics_it_must():
    # statuses of its referrals, its assessments, the consents it records, and its kind's routing facts
    for authority in RECIPIENTS:
        assert BROKER.topics(A.principal(authority), "Write") == set(A.recipient_writes(authority))
        assert not BROKER.authorize(f"User:{A.principal(authority)}", "Create", "topic", names.referral_topic(authority))
        assert not BROKER.authorize(f"User:{A.principal(authority)}", "Describe", "cluster", CLUSTER)
    # the hub writes every hub topic (its outputs, dead letters, and what `hub ingest` / `hub consent` publish)
    hub_writes = BROKER.topics(APP, "Write")
    assert hub_writes == set(TOPICS)
    assert BROKER.topics(APP, "Read") == set(A.HUB_READS)
    # Migri writes residence permits and reads nothing
    assert BROKER.topics(A.MIGRI, "Write") == {names.RESIDENCE_PERMITS} and BROKER.topics(A.MIGRI, "Read") == set()
    assert not BROKER.authorize(f"User:{A.MIGRI}", "Read", "group", f"{A.MIGRI}.x")
    # nobody but the hub writes the topics recipients read
    for authority in RECIPIENTS[:: max(1, len(RECIPIENTS) // 20)]:
        writers = {b.principal for b in COMMITTED if BROKER.authorize(b.principal, "Write", "topic", names.referral_topic(authority))}
        assert writers == {f"User:{APP}"}


def test_the_webhook_service_reads_every_recipients_topics_in_its_own_groups_and_nothing_else():
    user = A.webhooks_user(APP)
    every_recipients = set().union(*(own_topics(a) for a in RECIPIENTS))
    assert BROKER.topics(user, "Read") == every_recipients == BROKER.topics(user, "Describe")
    assert BROKER.topics(user, "Write") == set()
    assert names.DEAD_LETTERS not in BROKER.topics(user, "Describe")
    # by prefix (a few rules, not three per recipient), and the prefixes match no other topic: not the hub's
    # own, not the shared notices topic of earlier versions, not a family's name with another kind
    assert all(b.pattern == PREFIXED for b in COMMITTED if b.principal == f"User:{user}")
    assert len({b.name for b in COMMITTED if b.principal == f"User:{user}"}) <= 10
    for other in (*(t for t in TOPICS if t not in every_recipients), "hub.notices.v1", "hub.referrals.v1", "hub.plan-requests.v1",
                  "hub.referrals.unknown.1.v1", "hub.referrals"):
        for operation in ("Read", "Describe", "Write"):
            assert not BROKER.authorize(f"User:{user}", operation, "topic", other), (operation, other)
    for authority in RECIPIENTS:
        for topic in own_topics(authority):
            assert not BROKER.authorize(f"User:{user}", "Write", "topic", topic)
            assert not BROKER.authorize(f"User:{user}", "Delete", "topic", topic)
    for bindings in (COMMITTED, SCRIPT):  # both renderings
        az = Authorizer(bindings)
        assert az.topics(user, "Read") == every_recipients and az.topics(user, "Write") == set()
    assert BROKER.authorize(f"User:{user}", "Read", "group", policy.consumer_group(APP, 17))  # the group of subscription 17
    assert policy.consumer_group(APP, 17) == f"{APP}-webhooks.17" == f"{A.group_prefix(user)}17"  # `<its user>.<id>`
    # exactly its own prefix: not the hub's stream groups, another deployment's webhook groups, the old names
    for group in (f"{APP}.newcomer-detection", f"{APP}.webhooks.17", f"{APP}-webhooks", f"{A.principal(RECIPIENTS[0])}.referrals", f"{A.OPS}.x",
                  policy.consumer_group("other-hub", 17), "hub-webhooks-17"):
        assert not BROKER.authorize(f"User:{user}", "Read", "group", group), group
    assert {b.name for b in COMMITTED if b.principal == f"User:{user}" and b.resource_type == "group"} == {f"{APP}-webhooks."}
    assert not BROKER.authorize(f"User:{user}", "Create", "topic", names.referral_topic(RECIPIENTS[0]))
    # and no recipient may use the webhook service's groups
    assert not any(BROKER.authorize(f"User:{A.principal(a)}", "Read", "group", policy.consumer_group(APP, 1)) for a in RECIPIENTS)


def test_the_hubs_workers_cannot_join_the_webhook_services_groups_nor_it_theirs():
    """The hub's user owns its workers' groups by the prefix `<app id>.`; the webhook service's groups
    must lie outside it (else the workers' credentials could read a subscription's group, commit its
    offsets and skip deliveries), and the service's prefix must not cover the workers' groups."""
    hub, service = f"User:{APP}", f"User:{A.webhooks_user(APP)}"
    for az in (BROKER, Authorizer(SCRIPT)):  # both renderings
        for sub_id in (1, 17, 10_000):
            group = policy.consumer_group(APP, sub_id)
            for operation in ("Read", "Describe", "Delete"):
                assert not az.authorize(hub, operation, "group", group), (operation, group)
            assert az.authorize(service, "Read", "group", group)
        for group in (f"{APP}.newcomer-detection", f"{APP}.routing", f"{APP}.x"):
            assert az.authorize(hub, "Read", "group", group)
            assert not az.authorize(service, "Read", "group", group), group
    # the rules themselves: no group rule of the hub's user covers the service's prefix
    prefix = policy.consumer_group_prefix(APP)
    for acl in A.hub_acls(APP):
        if acl.resource_type == "group":
            assert not (prefix.startswith(acl.name) if acl.pattern == A.PREFIX else acl.name.startswith(prefix)), acl


@pytest.mark.parametrize("extra, breaks", [
    (Binding("User:municipality-091", ALLOW, "Read", "topic", "hub.referrals.", PREFIXED), "reads another's"),
    (Binding("User:*", ALLOW, "Describe", "topic", "*"), "describes another's"),
    (Binding("User:municipality-091", DENY, "Read", "topic", "hub.referrals.municipality.091.v1"), "loses its own"),
    (Binding("User:municipality-091", ALLOW, "Read", "topic", "hub.notices.", PREFIXED), "reads another's notices"),
    (Binding("User:municipality-091", ALLOW, "Read", "topic", "hub.notices.municipality.092.v1"), "reads Vantaa's notices"),
    (Binding("User:municipality-091", DENY, "Read", "topic", "hub.notices.municipality.091.v1"), "loses its own notices"),
])
def test_the_proof_notices_a_leak_or_a_lockout(extra, breaks):
    az = Authorizer(COMMITTED | {extra})
    user = "municipality-091"
    ok = (az.topics(user, "Read") == own_topics("municipality:091")
          and az.topics(user, "Describe") == own_topics("municipality:091") | set(A.recipient_writes("municipality:091")))
    assert not ok, breaks
