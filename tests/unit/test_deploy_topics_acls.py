"""The topic and ACL generator: every recipient of the reference data has its own three topics
(referrals, plan requests, notices), and
the ACLs give each recipient exactly those to read (and none of another's)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.config import Settings
from hub.deploy import acls as A
from hub.deploy import render
from hub.deploy.topics import DEAD_LETTER, EVENT_LOG, hub_topics, recipients
from hub.routing.reference import default_reference
from hub.streams import newcomer_agents
from hub.schemas import topics as names
from hub.streams.app import HubApp

REF = default_reference()
TOPICS = hub_topics(REF, partitions=12, replicas=3)
TOPIC_NAMES = [t.name for t in TOPICS]
RECIPIENTS = recipients(REF)
USERS = A.all_acls(REF)
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def test_every_authority_routing_can_name_is_a_recipient():
    routed = {r.authority for code in REF.municipalities for r in REF.authorities(code).roles.values() if r.authority}
    assert set(RECIPIENTS) == routed
    assert "municipality:091" in RECIPIENTS and len([a for a in RECIPIENTS if a.startswith("municipality:")]) == len(REF.municipalities)
    assert any(a.startswith("wellbeing_area:") for a in RECIPIENTS) and any(a.startswith("employment_authority:") for a in RECIPIENTS)


def test_topics_cover_fixed_internal_and_three_per_recipient():
    assert len(TOPIC_NAMES) == len(set(TOPIC_NAMES))
    assert set(names.FIXED_TOPICS) <= set(TOPIC_NAMES)
    by_name = {t.name: t for t in TOPICS}
    for authority in RECIPIENTS:
        own = (names.referral_topic(authority), names.plan_request_topic(authority), names.notice_topic(authority))
        assert names.recipient_topics(authority) == own
        assert all(by_name[t].recipient == authority and by_name[t].partitions == 1 for t in own)
    assert len(TOPICS) == len(names.FIXED_TOPICS) + 3 * len(RECIPIENTS)
    assert not any(t.startswith("hub.notices.") for t in names.FIXED_TOPICS)  # no shared notice topic


def test_notice_topics_are_named_like_the_other_per_recipient_topics():
    assert names.notice_topic("municipality:091") == "hub.notices.municipality.091.v1"
    assert names.notice_topic("wellbeing_area:04") == "hub.notices.wellbeing_area.04.v1"
    assert names.notice_topic("employment_authority:43") == "hub.notices.employment_authority.43.v1"
    for bad in ("municipality", "municipality:", "police:091", "municipality:09 1", "municipality:091.v1"):
        with pytest.raises(ValueError):
            names.notice_topic(bad)


def test_configs_retention_for_logs_longer_for_dead_letters():
    by_name = {t.name: t for t in TOPICS}
    retention = lambda t: int(t.configs["retention.ms"])  # noqa: E731
    for t in TOPICS:
        assert t.configs["min.insync.replicas"] == "2" and t.replicas == 3
        assert t.kind in (EVENT_LOG, DEAD_LETTER) and t.configs["cleanup.policy"] == "delete"
    dead = by_name[names.DEAD_LETTERS]
    assert dead.kind == DEAD_LETTER and retention(dead) > max(retention(t) for t in TOPICS if t.kind == EVENT_LOG)
    assert all(t.partitions == 1 for t in TOPICS if t.recipient)  # per recipient: one ordered stream
    single = hub_topics(REF, partitions=4, replicas=1)
    assert all("min.insync.replicas" not in t.configs for t in single)


def test_no_faust_topic_detection_state_is_in_the_database_and_faust_reads_nothing():
    """Newcomer detection declares no faust table (its state is in the database), so a deployment
    has no changelog topic to create, co-partition or restore; and no faust agent, so faust starts
    no consumer and needs no leader topic."""
    hub = HubApp(Settings(app_id="integration-hub", topic_partitions=12), "kafka://localhost:9092")
    newcomer_agents.register(hub, database_url="sqlite://")
    assert not list(hub.app.tables.values())
    assert not [t.name for t in TOPICS if "changelog" in t.name]
    assert not hub.app.agents
    assert not [t.name for t in TOPICS if t.name.startswith("integration-hub-")]


def _allowed_topics(user: str, operation: str) -> set[str]:
    return {t for t in TOPIC_NAMES if A.allowed(USERS[user], "topic", t, operation)}


def test_each_recipient_reads_exactly_its_own_topics_and_writes_only_statuses_assessments_consents_and_its_facts():
    for authority in RECIPIENTS:
        user = A.principal(authority)
        own = {names.referral_topic(authority), names.plan_request_topic(authority), names.notice_topic(authority)}
        facts = {"employment_authority": {names.JOBSEEKER_STATUS}, "municipality": {names.SERVICE_NEEDS},
                 "wellbeing_area": {names.SERVICE_NEEDS}}[authority.partition(":")[0]]
        assert set(A.recipient_writes(authority)) == set(A.RECIPIENT_WRITES) | facts
        assert _allowed_topics(user, "Read") == own, authority
        assert _allowed_topics(user, "Write") == set(A.RECIPIENT_WRITES) | facts, authority
        assert _allowed_topics(user, "Describe") == own | set(A.RECIPIENT_WRITES) | facts, authority
        assert not any(A.allowed(USERS[user], "topic", t, op) for t in TOPIC_NAMES for op in ("Create", "Delete", "Alter", "AlterConfigs"))
        assert all(acl.pattern == A.LITERAL for acl in USERS[user] if acl.resource_type == "topic")
        assert not any(acl.resource_type == "cluster" for acl in USERS[user])


def test_no_recipient_touches_another_recipients_topics_or_groups():
    owner = {t.name: t.recipient for t in TOPICS if t.recipient}
    for authority in RECIPIENTS:
        user = A.principal(authority)
        for topic, topic_owner in owner.items():
            if topic_owner != authority:
                # Describe is implied by Read and Write: one check covers all three
                assert not A.allowed(USERS[user], "topic", topic, "Describe"), (authority, topic)
    prefixes = [A.group_prefix(A.principal(a)) for a in RECIPIENTS]
    for p in prefixes:  # a group of one recipient never matches another's prefix
        assert [q for q in prefixes if q.startswith(p) or p.startswith(q)] == [p]
    a, b = A.principal("municipality:091"), A.principal("municipality:092")
    assert A.allowed(USERS[a], "group", f"{a}.case-system", "Read")
    assert not A.allowed(USERS[a], "group", f"{b}.case-system", "Read")


def test_only_operations_read_dead_letters_and_the_hub_gets_what_its_workers_need():
    readers = {user for user, acls in USERS.items() if A.allowed(acls, "topic", names.DEAD_LETTERS, "Read")}
    assert readers == {A.OPS}
    hub = USERS["integration-hub"]
    assert _allowed_topics("integration-hub", "Read") >= {names.POPULATION_CHANGES, names.NEWCOMERS, names.REFERRAL_STATUS}
    assert _allowed_topics("integration-hub", "Write") == set(TOPIC_NAMES)  # events, referrals, dead letters
    assert not A.allowed(hub, "group", "integration-hub", "Read")  # faust's group: faust reads nothing
    detection = HubApp(Settings(app_id="integration-hub"), "kafka://localhost:9092").batch_group(newcomer_agents.CONSUMER_NAME)
    assert A.allowed(hub, "group", detection, "Read")  # newcomer detection's own group
    assert not any(A.allowed(USERS[A.principal(a)], "group", detection, "Read") for a in RECIPIENTS)
    assert not A.allowed(hub, "topic", "integration-hub-__assignor-__leader", "Create")  # nor has it internal topics
    assert not A.allowed(hub, "topic", "hub.referrals.municipality.091.v1", "Read")  # the hub writes them, never reads
    facts = {names.JOBSEEKER_STATUS, names.RESIDENCE_PERMITS, names.SERVICE_NEEDS, names.ROUTING_FACTS}
    assert facts <= _allowed_topics("integration-hub", "Read")  # fact intake and routing


def test_migri_writes_residence_permits_only_and_no_one_else_but_the_hub_does():
    assert _allowed_topics(A.MIGRI, "Write") == {names.RESIDENCE_PERMITS}
    assert _allowed_topics(A.MIGRI, "Describe") == {names.RESIDENCE_PERMITS}
    assert _allowed_topics(A.MIGRI, "Read") == set()
    assert not any(acl.resource_type in ("group", "cluster") for acl in USERS[A.MIGRI])
    writers = {user for user, acls in USERS.items() if A.allowed(acls, "topic", names.RESIDENCE_PERMITS, "Write")}
    assert writers == {A.MIGRI, "integration-hub"}
    # the hub's own hop: only the hub writes and reads it
    assert {u for u, acls in USERS.items() if A.allowed(acls, "topic", names.ROUTING_FACTS, "Describe")} == {"integration-hub"}


def test_only_employment_authorities_write_jobseeker_statuses():
    writers = {user for user, acls in USERS.items() if A.allowed(acls, "topic", names.JOBSEEKER_STATUS, "Write")}
    assert writers == {A.principal(a) for a in RECIPIENTS if a.startswith("employment_authority:")} | {"integration-hub"}
    needs = {user for user, acls in USERS.items() if A.allowed(acls, "topic", names.SERVICE_NEEDS, "Write")}
    assert needs == {A.principal(a) for a in RECIPIENTS if not a.startswith("employment_authority:")} | {"integration-hub"}


def test_user_and_topic_names_are_valid_kubernetes_names_and_unique():
    users = list(USERS)
    assert all(K8S_NAME.match(u) for u in users) and len(set(users)) == len(users)
    k8s = [render.k8s_name(t) for t in TOPIC_NAMES]
    assert all(K8S_NAME.match(n) and len(n) <= 253 for n in k8s) and len(set(k8s)) == len(k8s)
    assert A.principal("wellbeing_area:05") == "wellbeing-area-05"


def test_cli_topics_and_acls_formats():
    runner = CliRunner()
    listed = runner.invoke(main, ["topics", "--partitions", "12", "--replicas", "3"], env={"HUB_APP_ID": ""})
    assert listed.exit_code == 0, listed.output
    assert [line.split("\t")[0] for line in listed.output.splitlines()] == TOPIC_NAMES
    as_json = json.loads(runner.invoke(main, ["topics", "--format", "json", "--partitions", "12", "--replicas", "3"], env={"HUB_APP_ID": ""}).output)
    assert [t["name"] for t in as_json] == TOPIC_NAMES
    script = runner.invoke(main, ["topics", "--format", "kafka-topics-sh"]).output
    assert script.startswith("#!/bin/sh") and script.count("--create --if-not-exists") == len(TOPICS)
    acls_json = json.loads(runner.invoke(main, ["acls", "--format", "json"], env={"HUB_APP_ID": ""}).output)
    assert len(acls_json) == sum(len(v) for v in USERS.values())
    acls_sh = runner.invoke(main, ["acls", "--format", "kafka-acls-sh"]).output
    assert "--allow-principal User:municipality-091 --operation Read --operation Describe --topic hub.referrals.municipality.091.v1" in acls_sh
    assert "--allow-principal User:municipality-091 --operation Read --operation Describe --topic hub.notices.municipality.091.v1" in acls_sh
    for command in (["topics", "--help"], ["acls", "--help"], ["healthcheck", "--help"]):
        assert runner.invoke(main, command).exit_code == 0
    assert runner.invoke(main, ["topics", "--format", "yaml"]).exit_code == 2
    assert runner.invoke(main, ["topics", "--partitions", "0"]).exit_code == 2


def test_partitions_follow_the_setting_by_default():
    out = CliRunner().invoke(main, ["topics"], env={"HUB_TOPIC_PARTITIONS": "6"}).output
    first = out.splitlines()[0].split("\t")
    assert first[:2] == [names.POPULATION_CHANGES, "6"]


@pytest.mark.parametrize("bad", [0, -1])
def test_generator_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        hub_topics(REF, partitions=bad)
