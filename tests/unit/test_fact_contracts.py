"""The routing facts' input contracts (JobseekerStatus, ResidencePermit, ServiceNeeds) and the hub's
internal RoutingFact: their topics, schemas and ids, the codec round trip of each, and the one
vocabulary translation (a permit's basis to routing's residence basis)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from hub.deploy.topics import hub_topics
from hub.routing.model import RESIDENCE_BASES
from hub.routing.reference import default_reference
from hub.schemas import facts, topics
from hub.schemas.codec import CodecError, default_codec

codec = default_codec()
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.timezone.utc)
PERSON = "010190-900P"


def envelope(source: str) -> dict:
    return {"event_id": uuid.uuid4(), "occurred_at": NOW, "recorded_at": NOW, "source": source, "schema_version": 1}


def jobseeker_status(**over) -> dict:
    return {**envelope("employment_authority:08"), "person_id": PERSON, "status": "registered",
            "status_date": dt.date(2026, 11, 2), "employment_area": "08", **over}


def residence_permit(**over) -> dict:
    return {**envelope("migri"), "person_id": PERSON, "basis": "international_protection", "first_permit_date": dt.date(2025, 6, 1), **over}


def service_needs(**over) -> dict:
    return {**envelope("wellbeing_area:04"), "person_id": PERSON, "needs": ["health", "literacy"], "identified_by": "wellbeing_area:04",
            "identified_on": dt.date(2026, 11, 10), **over}


def routing_fact(**over) -> dict:
    return {**envelope("migri"), "person_key": "ab" * 16, "person_id": PERSON, "kind": "residence_permit", "jobseeker_status": None,
            "status_date": None, "employment_area": None, "residence_basis": "eu_citizen", "first_permit_date": dt.date(2025, 6, 1),
            "service_needs": None, "identified_by": None, "identified_on": None, **over}


SAMPLES = {"JobseekerStatus": jobseeker_status, "ResidencePermit": residence_permit, "ServiceNeeds": service_needs, "RoutingFact": routing_fact}


def test_topic_names_and_which_are_inputs():
    assert topics.JOBSEEKER_STATUS == "hub.jobseeker-status.v1"
    assert topics.RESIDENCE_PERMITS == "hub.residence-permits.v1"
    assert topics.SERVICE_NEEDS == "hub.service-needs.v1"
    assert topics.ROUTING_FACTS == "hub.routing-facts.v1"
    assert set(facts.SCHEMA_OF_TOPIC) == set(topics.FACT_TOPICS) <= set(topics.INPUT_TOPICS)
    assert topics.ROUTING_FACTS not in topics.INPUT_TOPICS  # only the hub writes it
    assert set(topics.FACT_TOPICS) | {topics.ROUTING_FACTS} <= set(topics.FIXED_TOPICS)


def test_each_topic_names_its_schema_writer_and_reader():
    for topic, schema in facts.SCHEMA_OF_TOPIC.items():
        spec = topics.spec_for_topic(topic)
        assert spec.schema == schema and spec.subscribers == ("hub fact intake",)
    spec = topics.spec_for_topic(topics.ROUTING_FACTS)
    assert (spec.schema, spec.publishers, spec.subscribers) == ("RoutingFact", ("hub fact intake",), ("hub routing",))
    assert "migri" in " ".join(topics.spec_for_topic(topics.RESIDENCE_PERMITS).publishers)


def test_schema_ids_are_new_and_permanent():
    assert {n: codec.schema_id(n) for n in SAMPLES} == {"JobseekerStatus": 10, "ResidencePermit": 11, "ServiceNeeds": 12, "RoutingFact": 13}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_on_the_wire_and_as_json(name):
    record = SAMPLES[name]()
    event = codec.decode(codec.encode(name, record), name)
    assert event.record == record
    assert codec.from_json(name, codec.to_json(name, record)) == record


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_field_has_a_doc(name):
    assert all(f.get("doc") for f in codec.raw_schema(name)["fields"]), name


def test_dates_are_avro_dates_and_required_in_the_inputs():
    for name, field_name in (("JobseekerStatus", "status_date"), ("ResidencePermit", "first_permit_date"), ("ServiceNeeds", "identified_on")):
        field = next(f for f in codec.raw_schema(name)["fields"] if f["name"] == field_name)
        assert field["type"] == {"type": "int", "logicalType": "date"}
        with pytest.raises(CodecError) as err:
            codec.from_jsonable(name, {k: v for k, v in codec.to_jsonable(name, SAMPLES[name]()).items() if k != field_name})
        assert err.value.reason == "invalid_json" and field_name in err.value.message


def test_enums_refuse_an_unknown_symbol_by_name():
    with pytest.raises(CodecError, match="status must be one of registered, ended"):
        codec.from_jsonable("JobseekerStatus", {**codec.to_jsonable("JobseekerStatus", jobseeker_status()), "status": "paused"})
    with pytest.raises(CodecError, match="basis must be one of"):
        codec.from_jsonable("ResidencePermit", {**codec.to_jsonable("ResidencePermit", residence_permit()), "basis": "eu_citizen"})


def test_an_empty_needs_list_is_a_valid_withdrawal():
    record = service_needs(needs=[])
    assert codec.decode(codec.encode("ServiceNeeds", record)).record["needs"] == []


def test_permit_bases_are_the_schemas_and_translate_into_routings_vocabulary():
    symbols = next(f for f in codec.raw_schema("ResidencePermit")["fields"] if f["name"] == "basis")["type"]["symbols"]
    assert tuple(symbols) == facts.PERMIT_BASES
    assert facts.routing_residence_basis("eu_registration") == "eu_citizen"
    for basis in facts.PERMIT_BASES:
        assert facts.routing_residence_basis(basis) in RESIDENCE_BASES
        if basis != "eu_registration":
            assert facts.routing_residence_basis(basis) == basis
    with pytest.raises(ValueError):
        facts.routing_residence_basis("eu_citizen")


def test_routing_facts_residence_basis_is_routings_vocabulary():
    field = next(f for f in codec.raw_schema("RoutingFact")["fields"] if f["name"] == "residence_basis")
    assert tuple(field["type"][1]["symbols"]) == RESIDENCE_BASES


def test_routing_facts_are_co_partitioned_with_newcomers():
    deployed = {t.name: t.partitions for t in hub_topics(default_reference(), partitions=7, replicas=1)}
    assert set(topics.CO_PARTITIONED) == {topics.NEWCOMERS, topics.ROUTING_FACTS} and set(topics.CO_PARTITIONED) <= set(topics.FIXED_TOPICS)
    assert deployed[topics.ROUTING_FACTS] == deployed[topics.NEWCOMERS] == 7
