"""The read-only schema registry answers like Confluent's, with the codec's ids."""

import json

import pytest

from hub.schemas.topics import spec_for_topic, subjects
from hub.schemas.codec import default_codec
from hub.schemas.registry import SchemaRegistry
from hub.schemas import topics


@pytest.fixture(scope="module")
def registry():
    return SchemaRegistry()


def test_every_schema_id_the_codec_writes_is_served(registry):
    codec = default_codec()
    for name in codec.names:
        status, body = registry.get(f"/schemas/ids/{codec.schema_id(name)}?subject=ignored")
        assert status == 200 and body["schemaType"] == "AVRO"
        assert json.loads(body["schema"]) == codec.raw_schema(name)
        assert registry.get(f"/schemas/ids/{codec.schema_id(name)}/schema") == (200, codec.raw_schema(name))


def test_unknown_schema_id_is_404_in_the_registrys_error_format(registry):
    assert registry.get("/schemas/ids/999") == (404, {"error_code": 40403, "message": "Schema not found"})
    assert registry.get("/schemas/ids/abc") == (404, {"error_code": 40403, "message": "Schema not found"})
    assert registry.get("/subjects/nope-value/versions")[1]["error_code"] == 40401
    assert registry.get("/subjects/hub.newcomers.v1-value/versions/7")[1]["error_code"] == 40402
    assert registry.get("/no/such/path")[0] == 404


def test_subjects_topic_name_and_record_name_strategies(registry):
    status, listed = registry.get("/subjects")
    assert status == 200 and listed == list(subjects())
    assert "hub.population-changes.v1-value" in listed and "fi.integrationhub.Referral" in listed
    assert not any(s.startswith("hub.referrals.") for s in listed)  # per-recipient topics: record name only
    assert registry.get("/subjects/hub.population-changes.v1-value/versions") == (200, [2, 3])
    status, v2 = registry.get("/subjects/hub.population-changes.v1-value/versions/2")
    assert status == 200 and v2["id"] == 1 and "arrived_in_finland" not in v2["schema"]  # the earlier release, for data written with it
    assert registry.get("/schemas/ids/1/versions")[1][0]["version"] == 2
    assert registry.get("/subjects/hub.population-changes.v1-value/versions/1")[1]["error_code"] == 40402  # never released
    status, body = registry.get("/subjects/fi.integrationhub.Referral/versions/latest")
    assert status == 200 and body["id"] == default_codec().schema_id("Referral") and body["version"] == 1
    assert registry.get("/subjects/fi.integrationhub.Referral/versions/1")[1] == body
    assert registry.get("/config/fi.integrationhub.Referral") == (200, {"compatibilityLevel": "FULL_TRANSITIVE"})
    assert registry.get("/config") == (200, {"compatibilityLevel": "BACKWARD"})


def test_catalog_knows_the_schema_of_every_topic():
    assert spec_for_topic(topics.referral_topic("wellbeing_area:04")).schema == "Referral"
    assert spec_for_topic(topics.plan_request_topic("employment_authority:43")).schema == "PlanRequest"
    assert spec_for_topic(topics.notice_topic("municipality:091")).schema == "Notice"
    assert spec_for_topic("hub.notices.v1") is None  # no shared notice topic
    assert spec_for_topic(topics.NEWCOMERS).schema == "Newcomer"
    assert spec_for_topic("hub.referrals.nobody.1.v1") is None
    assert {spec_for_topic(t).schema for t in topics.FIXED_TOPICS} <= set(default_codec().names)
