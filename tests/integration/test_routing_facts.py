"""Routing facts from their real publishers, on the real broker and the real PostgreSQL: DVV-like
population changes make newcomers; a jobseeker status signed by the employment authority and a
residence permit signed by Migri reach routing through the fact intake; the employment authority's
referral topic receives its assessment referral, whether the facts come after the newcomer or before
it; a first permit learned after the referral moves its due date (a ReferralUpdated on the same
topic, next in its sequence); a forged or invalid fact is a dead letter with its reason. And the routing consumer's two topics
are co-partitioned: partition i of both goes to one member of the group."""

import asyncio
import dataclasses
import datetime as dt
import uuid

import pytest

from hub.adapters import database
from hub.adapters.circumstances_store import SqlCircumstances
from hub.adapters.person_states import SqlPersonStates
from hub.adapters.referral_ledger import ReferralLedger
from hub.config import Settings
from hub.domain import hetu
from hub.domain.publishers import Publisher, Publishers, sign_headers
from hub.routing import circumstances
from hub.routing.engine import add_period, route
from hub.routing.model import RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules
from hub.schemas import topics
from hub.schemas.envelope import cloudevent_headers, envelope
from hub.streams import fact_agents, newcomer_agents, routing_agents
from hub.streams.app import HubApp
from hub.streams.pipeline import hub_app
from hub.streams.runner import running, wait_for
from tests.integration.test_publisher_identity import Collector
from tests.personal_data import identity_code_in

pytestmark = pytest.mark.integration

EMPLOYMENT = "employment_authority:43"  # Vantaa's (092) employment area
KEYS = {EMPLOYMENT: b"employment-area-43-key-0123456789", "migri": b"migri-signing-key-0123456789abcd"}
HUB_KEY = b"the-hubs-own-signing-key-0123456"
ARRIVED = dt.date(2025, 2, 20)
FIRST_PERMIT = dt.date(2024, 11, 5)


def settings(app_id: str, secret: str) -> Settings:
    pubs = [Publisher(who, (key,)) for who, key in KEYS.items()]
    pubs.append(Publisher(app_id, (HUB_KEY,), frozenset({"*"}), frozenset({"*"})))
    return Settings(app_id=app_id, person_key_secret=secret, publishers=Publishers.of(pubs))


def population_change(pid: str) -> dict:
    rec = envelope("dvv:test", dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc))
    rec.update(person_id=pid, change_type="immigration", municipality_code="092", previous_country="SY", nationalities=["SY"],
               mother_tongue="ar", move_date=ARRIVED)
    return rec


def jobseeker(pid: str, status: str = "registered", day: dt.date = dt.date(2025, 3, 5), area: str = "43") -> dict:
    rec = envelope(EMPLOYMENT, dt.datetime.combine(day, dt.time(9), dt.timezone.utc))
    rec.update(person_id=pid, status=status, status_date=day, employment_area=area)
    return rec


def permit(pid: str) -> dict:
    rec = envelope("migri", dt.datetime(2025, 3, 4, 9, tzinfo=dt.timezone.utc))
    rec.update(person_id=pid, basis="work", first_permit_date=FIRST_PERMIT)
    return rec


async def send_as(hub: HubApp, topic: str, name: str, record: dict, signer: str) -> bytes:
    value = hub.codec.encode(name, record)
    headers = sign_headers(cloudevent_headers(name, record), value, signer, KEYS[signer])
    await hub.producer.send_and_wait(topic, value, b"any-key", headers=headers)  # the hub keys by person itself
    return value


def referrals(got: Collector, key: str) -> list[dict]:
    """The Referral records of one person (a withdrawal or an update on the same topic has no `rule`)."""
    return [r for r in got.where(person_key=key) if "rule" in r]


def updates(got: Collector, key: str) -> list[dict]:
    """The ReferralUpdated records of one person."""
    return [r for r in got.where(person_key=key) if "previous_due" in r]


def expected_due(pid: str, key: str) -> dt.date:
    """The assessment's due date as the rules compute it for a newcomer whose integration period
    starts at the first permit (from that date once the rules count from `period_start`)."""
    person = RoutingInput(event_id="x", person_key=key, occurred_at=dt.datetime(2025, 3, 5, 9, tzinfo=dt.timezone.utc), municipality_code="092",
                          birth_date=hetu.birth_date(pid), arrival_date=ARRIVED, labour_force_status="unemployed_job_seeker",
                          residence_basis="work", integration_start=FIRST_PERMIT)
    [due] = [d.due for d in route(person, default_rules(), default_reference()) if d.authority == EMPLOYMENT]
    return due


def test_facts_from_their_publishers_route_the_person_to_the_employment_authority(fresh_kafka_url, database_url):
    database.upgrade(database_url)
    uid = uuid.uuid4().hex[:8]
    secret = f"facts-{uid}"
    engine = database.create_engine(database_url)
    ledger, store = ReferralLedger(engine), SqlCircumstances(engine)
    early = hetu.make(dt.date(1990, 4, 1), 931)  # the newcomer first, then the facts
    late = hetu.make(dt.date(1988, 8, 8), 933)  # the facts first, then the newcomer
    key_early, key_late = hetu.person_key(early, secret), hetu.person_key(late, secret)

    async def scenario():
        hub = hub_app(settings(f"facts-{uid}", secret), fresh_kafka_url, signed_topics=topics.FACT_TOPICS)
        newcomer_agents.register(hub, states=SqlPersonStates(engine))
        facts = fact_agents.register(hub)
        routing = routing_agents.register(hub, ledger=ledger, circumstances=store)
        got = Collector(hub, topics.referral_topic(EMPLOYMENT), topics.DEAD_LETTERS)
        async with running(hub):
            # the newcomer first: outreach only, nothing for the employment authority yet
            await hub.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", population_change(early), key=key_early)
            await wait_for(lambda: routing.consumed[(topics.NEWCOMERS, "routed")] == 1, 60, "the first newcomer routed")
            assert referrals(got, key_early) == []
            # the jobseeker status: the referral, due three years from the arrival (no first permit known yet)
            await send_as(hub, topics.JOBSEEKER_STATUS, "JobseekerStatus", jobseeker(early), EMPLOYMENT)
            await wait_for(lambda: len(referrals(got, key_early)) == 1, 60, "the employment authority's referral of the first person")
            # then the permit: the integration period started earlier, the referral's due date moves
            await send_as(hub, topics.RESIDENCE_PERMITS, "ResidencePermit", permit(early), "migri")
            await wait_for(lambda: len(updates(got, key_early)) == 1, 60, "the referral's new due date")

            # the facts first: kept until the newcomer is detected, then used
            await send_as(hub, topics.RESIDENCE_PERMITS, "ResidencePermit", permit(late), "migri")
            await send_as(hub, topics.JOBSEEKER_STATUS, "JobseekerStatus", jobseeker(late), EMPLOYMENT)
            await wait_for(lambda: routing.consumed[(topics.ROUTING_FACTS, "kept")] == 2, 60, "the second person's facts kept")
            assert referrals(got, key_late) == []
            await hub.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", population_change(late), key=key_late)
            await wait_for(lambda: len(referrals(got, key_late)) == 1, 60, "the employment authority's referral of the second person")

            # bad facts: another area's status (forbidden by the publisher check), an invalid identity code
            forged = await send_as(hub, topics.JOBSEEKER_STATUS, "JobseekerStatus", jobseeker(early, area="08"), EMPLOYMENT)
            invalid = await send_as(hub, topics.RESIDENCE_PERMITS, "ResidencePermit", permit(early[:-1] + ("A" if early[-1] != "A" else "B")), "migri")
            await wait_for(lambda: len(got.where(reason="forbidden")) + len(got.where(reason="invalid_person_id")) == 2, 60, "two dead letters")

            # registration ended: the person is routed again
            routed_again = routing.consumed[(topics.ROUTING_FACTS, "routed")]
            await send_as(hub, topics.JOBSEEKER_STATUS, "JobseekerStatus", jobseeker(early, "ended", dt.date(2025, 4, 1)), EMPLOYMENT)
            await wait_for(lambda: routing.consumed[(topics.ROUTING_FACTS, "routed")] == routed_again + 1, 60, "registration ended routed again")
            # the referral that no longer applies is withdrawn, to its recipient
            await wait_for(lambda: len(got.where(person_key=key_early, cause="no_longer_applies")) == 1, 60, "the withdrawal")
            return got, facts, forged, invalid

    try:
        got, facts, forged, invalid = asyncio.run(scenario())
        stored = store.get_many([key_early, key_late])
        [early_referral] = referrals(got, key_early)
        ledger_due = ledger.due(early_referral["referral_id"])
        resent = ledger.published_from(EMPLOYMENT, early_referral["sequence"], early_referral["sequence"] + 1)
    finally:
        engine.dispose()
    for pid, key in ((early, key_early), (late, key_late)):
        [referral] = referrals(got, key)
        assert (referral["to"], referral["purpose"], referral["person_id"]) == (EMPLOYMENT, "initial_assessment", pid)
    # the due dates count from the integration period's start: three years from the first permit
    assert expected_due(early, key_early) == add_period(FIRST_PERMIT, years=3)
    [late_referral] = referrals(got, key_late)
    assert late_referral["due"] == expected_due(late, key_late) and updates(got, key_late) == []  # the facts first: right from the start
    # the permit after the referral: due first from the arrival, then moved to the first permit's, next in the recipient's numbering
    assert early_referral["due"] == add_period(ARRIVED, years=3)
    [update] = updates(got, key_early)
    assert (update["referral_id"], update["to"], update["purpose"]) == (early_referral["referral_id"], EMPLOYMENT, "initial_assessment")
    assert (update["previous_due"], update["due"]) == (add_period(ARRIVED, years=3), add_period(FIRST_PERMIT, years=3)) == (early_referral["due"], ledger_due)
    assert update["sequence"] == early_referral["sequence"] + 1 and "first residence permit" in update["reason"]
    assert [(name, r["sequence"]) for name, r in resent] == [("Referral", update["sequence"] - 1), ("ReferralUpdated", update["sequence"])]
    assert facts.consumed[(topics.JOBSEEKER_STATUS, "accepted")] == 3 and facts.consumed[(topics.RESIDENCE_PERMITS, "accepted")] == 2
    dead = {bytes(d["original_value"]): d for d in got.where(original_topic=topics.JOBSEEKER_STATUS) + got.where(original_topic=topics.RESIDENCE_PERMITS)}
    assert dead[forged]["reason"] == "forbidden" and "employment_area=" in dead[forged]["message"]
    assert dead[invalid]["reason"] == "invalid_person_id"
    assert not any(identity_code_in(d["message"]) for d in dead.values())
    # what routing keeps per person: no identity code, the facts and the newcomer as detected
    late_row = circumstances.decode(stored[key_late].facts)
    assert late_row.residence.first_permit_date == FIRST_PERMIT and late_row.jobseeker.status == "registered"
    assert circumstances.decode(stored[key_early].facts).jobseeker.status == "ended"
    [withdrawn] = got.where(person_key=key_early, cause="no_longer_applies")
    assert withdrawn["to"] == EMPLOYMENT and "registration as an unemployed jobseeker ended" in withdrawn["reason"]
    assert withdrawn["sequence"] > update["sequence"]
    assert circumstances.decode_newcomer(stored[key_late].newcomer).labour_force_status == "unknown"
    assert not any(identity_code_in(text) for row in stored.values() for text in row)


def test_the_routing_consumer_gets_partition_i_of_newcomers_and_routing_facts_on_one_member(kafka_url):
    uid = uuid.uuid4().hex[:8]
    names = [f"test.{uid}.newcomers", f"test.{uid}.routing-facts"]
    base = Settings(app_id=f"copart-{uid}", topic_partitions=3)  # odd: round robin would split partition i of the two topics

    async def nothing(records) -> None:
        return None

    async def scenario():
        members = []
        for _ in range(2):
            hub = hub_app(dataclasses.replace(base), kafka_url)
            members.append(hub.batch_consumer("co", names, nothing, 10, co_partitioned=True))
            members[-1].hub = hub
        async with running(members[0].hub), running(members[1].hub):
            def assigned():
                return [set(m.consumer.assignment()) if m.consumer is not None else set() for m in members]

            await wait_for(lambda: all(assigned()) and sum(len(a) for a in assigned()) == 6, 90, "both members assigned, every partition once")
            return assigned()

    got = asyncio.run(scenario())
    for assignment in got:
        by_topic = {name: {tp.partition for tp in assignment if tp.topic == name} for name in names}
        assert by_topic[names[0]] == by_topic[names[1]] and by_topic[names[0]]
