"""The READONLY schema registry answers like Confluent's, with the codec's ids for every version."""

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
    assert registry.get("/schemas/ids/999") == (404, {"error_code": 40403, "message": "Schema 999 not found"})
    assert registry.get("/schemas/ids/abc")[1]["error_code"] == 40403
    assert registry.get("/subjects/hub.newcomers.v1-value/versions/x")[1]["error_code"] == 42202
    assert registry.get("/subjects/nope-value/versions")[1]["error_code"] == 40401
    assert registry.get("/subjects/hub.newcomers.v1-value/versions/7")[1]["error_code"] == 40402
    assert registry.get("/no/such/path")[0] == 404


def test_subjects_topic_name_and_record_name_strategies(registry):
    status, listed = registry.get("/subjects")
    assert status == 200 and listed == list(subjects())
    assert "hub.population-changes.v1-value" in listed and "fi.integrationhub.Referral" in listed
    assert not any(s.startswith("hub.referrals.") for s in listed)  # per-recipient topics: record name only
    assert registry.get("/subjects/hub.population-changes.v1-value/versions") == (200, [1, 2, 3])
    status, v2 = registry.get("/subjects/hub.population-changes.v1-value/versions/2")
    assert status == 200 and v2["id"] == 1 and "arrived_in_finland" not in v2["schema"]  # the hub wrote version 2 with id 1
    assert registry.get("/schemas/ids/1/versions")[1][0]["version"] == 2
    assert registry.get("/subjects/hub.population-changes.v1-value/versions/1")[1]["id"] == 17
    assert registry.get("/subjects/hub.population-changes.v1-value/versions/latest")[1]["id"] == 14
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


def test_every_version_of_every_schema_is_served_under_its_own_id(registry):
    codec = default_codec()
    served = {}
    for subject, name in subjects().items():
        status, numbers = registry.get(f"/subjects/{subject}/versions")
        assert status == 200 and numbers == [v.number for v in codec.versions(name)]
        for version in codec.versions(name):
            status, body = registry.get(f"/subjects/{subject}/versions/{version.number}")
            assert status == 200 and json.loads(body["schema"]) == version.raw
            served.setdefault(body["id"], set()).add((name, version.number))
            assert registry.get(f"/schemas/ids/{body['id']}/schema") == (200, version.raw)
    assert all(len(owners) == 1 for owners in served.values())  # no id stands for two versions
    assert len(served) == sum(len(codec.versions(n)) for n in codec.names)


def _body(raw) -> dict:
    return {"schema": json.dumps(raw)}


def test_lookup_and_registering_an_identical_schema_answer_its_version_and_id(registry):
    v1 = default_codec().versions("PopulationChange")[0].raw
    same = json.loads(json.dumps(v1))
    same.pop("doc", None)
    same["fields"] = [dict(f, type="string") if f["type"] == {"type": "string"} else f for f in same["fields"]]  # spelling differs
    for subject in ("hub.population-changes.v1-value", "fi.integrationhub.PopulationChange"):
        status, found = registry.post(f"/subjects/{subject}", _body(same))
        assert status == 200 and (found["id"], found["version"], found["subject"]) == (17, 1, subject)
        status, registered = registry.post(f"/subjects/{subject}/versions?normalize=false", _body(same))
        assert status == 200 and registered["id"] == 17
    assert registry.post("/subjects/hub.population-changes.v1-value/versions", {**_body(v1), "id": 17})[0] == 200
    assert registry.post("/subjects/hub.population-changes.v1-value/versions", {**_body(v1), "id": 99})[1]["error_code"] == 42207


def test_a_new_or_different_schema_is_refused_with_the_registrys_error_codes(registry):
    changed = json.loads(json.dumps(default_codec().raw_schema("Referral")))
    changed["fields"].append({"name": "extra", "type": ["null", "string"], "default": None})
    status, body = registry.post("/subjects/fi.integrationhub.Referral/versions", _body(changed))
    assert (status, body["error_code"]) == (422, 42205) and "READONLY" in body["message"] and "hub schemas register" in body["message"]
    assert registry.post("/subjects/fi.integrationhub.Referral", _body(changed))[1]["error_code"] == 40403
    assert registry.post("/subjects/someone-elses-value/versions", _body(changed))[1]["error_code"] == 42205
    assert registry.post("/subjects/someone-elses-value", _body(changed))[1]["error_code"] == 40401
    assert registry.post("/subjects/fi.integrationhub.Referral/versions", {"schema": "{not avro"})[1]["error_code"] == 42201
    assert registry.post("/subjects/fi.integrationhub.Referral/versions", {"schema": "{}", "schemaType": "PROTOBUF"})[1]["error_code"] == 42201
    for method, path in (("PUT", "/config"), ("PUT", "/config/fi.integrationhub.Referral"), ("PUT", "/mode"),
                         ("DELETE", "/subjects/fi.integrationhub.Referral"), ("DELETE", "/subjects/fi.integrationhub.Referral/versions/1")):
        status, body = registry.handle(method, path, b'{"compatibility": "NONE"}')
        assert (status, body["error_code"]) == (422, 42205), (method, path)


def test_compatibility_by_the_subjects_mode(registry):
    current = default_codec().raw_schema("PopulationChange")
    added = json.loads(json.dumps(current))
    added["fields"].append({"name": "extra", "type": ["null", "string"], "default": None})
    assert registry.post("/compatibility/subjects/hub.population-changes.v1-value/versions/latest", _body(added)) == (200, {"is_compatible": True})
    assert registry.post("/compatibility/subjects/hub.population-changes.v1-value/versions", _body(added))[1]["is_compatible"] is True
    required = json.loads(json.dumps(current))
    required["fields"].append({"name": "extra", "type": "string"})  # no default: version 1-3 data cannot be read
    status, body = registry.post("/compatibility/subjects/hub.population-changes.v1-value/versions?verbose=true", _body(required))
    assert status == 200 and body["is_compatible"] is False
    assert any("reading data of version 1" in m and "extra" in m for m in body["messages"])
    assert registry.post("/compatibility/subjects/hub.population-changes.v1-value/versions/9", _body(added))[1]["error_code"] == 40402
    assert registry.post("/compatibility/subjects/nope-value/versions/latest", _body(added))[1]["error_code"] == 40401


def test_config_mode_and_types(registry):
    assert registry.get("/mode") == (200, {"mode": "READONLY"})
    assert registry.get("/mode/hub.newcomers.v1-value") == (200, {"mode": "READONLY"})
    assert registry.get("/schemas/types") == (200, ["AVRO"])
    assert registry.get("/config/hub.population-changes.v1-value") == (200, {"compatibilityLevel": "FULL_TRANSITIVE"})
    assert registry.get("/config/nope-value")[1]["error_code"] == 40401


@pytest.mark.parametrize("topic", [topics.referral_topic("municipality:091"), topics.plan_request_topic("wellbeing_area:04"),
                                   topics.notice_topic("employment_authority:43")])
def test_every_subject_served_answers_mode_as_it_answers_config(registry, topic):
    """A per-recipient topic's subject is not listed (an open set) but is served: /mode too, as /config and its versions."""
    subject = f"{topic}-value"
    assert registry.get(f"/subjects/{subject}/versions")[0] == 200
    assert registry.get(f"/config/{subject}")[0] == 200
    assert registry.get(f"/mode/{subject}") == (200, {"mode": "READONLY"})


def test_mode_and_config_agree_on_every_listed_subject_and_on_unknown_ones(registry):
    for subject in [*subjects(), "nope-value", "hub.referrals.nobody.1.v1-value", "fi.integrationhub.Nope"]:
        config, mode = registry.get(f"/config/{subject}"), registry.get(f"/mode/{subject}")
        assert config[0] == mode[0], subject
        if config[0] != 200:
            assert config[1]["error_code"] == mode[1]["error_code"] == 40401


def test_canonical_form_ignores_docs_properties_and_spelling_but_not_what_resolution_reads():
    from hub.schemas.registry import canonical

    spelled = {"type": "record", "name": "A", "namespace": "x.y", "doc": "d", "fields": [
        {"name": "f", "type": {"type": "string", "avro.java.string": "String"}, "doc": "q"},
        {"name": "g", "type": ["null", {"type": "enum", "name": "E", "symbols": ["a"]}], "default": None},
        {"name": "h", "type": ["null", "E"]},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    plain = {"type": "record", "name": "x.y.A", "fields": [
        {"name": "f", "type": "string"},
        {"name": "g", "type": ["null", {"type": "enum", "name": "x.y.E", "symbols": ["a"]}], "default": None},
        {"name": "h", "type": ["null", "x.y.E"]},
        {"name": "t", "type": {"logicalType": "timestamp-millis", "type": "long"}}]}
    assert canonical(spelled) == canonical(plain)
    for changed in ({**plain, "fields": plain["fields"][:3] + [{"name": "t", "type": "long"}]},  # logical type
                    {**plain, "fields": [{**plain["fields"][0], "default": "x"}, *plain["fields"][1:]]},  # a default
                    {**plain, "name": "x.z.A"}):  # the full name
        assert canonical(changed) != canonical(plain)
