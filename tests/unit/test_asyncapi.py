"""docs/asyncapi.yaml is what the code generates, and it is a valid AsyncAPI 3.0 document."""

import copy
import re
import json
from pathlib import Path

import jsonschema
import yaml

from hub.schemas.asyncapi import AVRO_FORMAT, document, render
from hub.schemas.codec import default_codec

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests/fixtures/asyncapi/asyncapi-3.0.0.schema.json").read_text())


def test_committed_document_is_the_generated_one():
    committed = (ROOT / "docs/asyncapi.yaml").read_text(encoding="utf-8")
    assert committed == render(), "docs/asyncapi.yaml is stale: run `hub asyncapi -o docs/asyncapi.yaml` and commit it"


def test_document_validates_against_the_asyncapi_3_json_schema():
    validator = jsonschema.Draft7Validator(SCHEMA)
    doc = yaml.safe_load(render())
    assert list(validator.iter_errors(doc)) == []
    broken = copy.deepcopy(doc)
    broken["operations"]["sendReferral"]["action"] = "publish"  # AsyncAPI 2 wording: invalid in 3.0
    assert list(validator.iter_errors(broken))


def test_every_schema_every_channel_and_who_sends_and_receives():
    doc = document()
    codec = default_codec()
    assert set(doc["components"]["messages"]) == set(codec.names)
    for name, message in doc["components"]["messages"].items():
        assert message["payload"] == {"schemaFormat": AVRO_FORMAT, "schema": codec.raw_schema(name)}
        assert message["x-schema-id"] == codec.schema_id(name)
    referrals = doc["channels"]["referral"]
    assert referrals["address"] == "hub.referrals.{kind}.{code}.v1" and set(referrals["parameters"]) == {"kind", "code"}
    assert doc["channels"]["planRequest"]["address"] == "hub.plan-requests.{kind}.{code}.v1"
    assert doc["operations"]["sendReferral"]["action"] == "send" and "routing" in doc["operations"]["sendReferral"]["summary"]
    assert doc["operations"]["receiveReferral"]["action"] == "receive" and "recipient" in doc["operations"]["receiveReferral"]["summary"]


def test_the_routing_facts_channels_name_their_publishers_and_identity_rules():
    doc = document()
    jobseeker = doc["channels"]["jobseekerStatus"]
    assert jobseeker["address"] == "hub.jobseeker-status.v1"
    assert "`employment_area` must be the code of its own employment area" in jobseeker["description"]
    assert "forbidden" in jobseeker["description"]
    assert doc["channels"]["residencePermit"]["address"] == "hub.residence-permits.v1"
    assert "migri" in doc["operations"]["sendResidencePermit"]["summary"]
    assert "`identified_by` must be its own id" in doc["channels"]["serviceNeeds"]["description"]
    assert doc["operations"]["receiveRoutingFact"]["summary"] == "Received by: hub routing."
    assert "Signed by" not in doc["channels"]["routingFact"]["description"]  # the hub's own hop
    # input topics' messages carry the signature headers, the hub's own records do not need them
    assert "hub-signature" in doc["components"]["messages"]["JobseekerStatus"]["headers"]["properties"]
    assert "hub-signature" in doc["components"]["messages"]["Consent"]["headers"]["properties"]
    assert "hub-signature" not in doc["components"]["messages"]["Referral"]["headers"]["properties"]


class _Yaml12Loader(yaml.SafeLoader):
    """Reads plain scalars by the YAML 1.2 core schema's number rules (as the AsyncAPI tools do): 091 is an integer."""


_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: int(loader.construct_scalar(node), 10))


def test_a_yaml_1_2_reader_reads_every_string_as_a_string():
    doc = document()
    assert yaml.load(render(doc), Loader=_Yaml12Loader) == doc
    assert doc["channels"]["referral"]["parameters"]["code"]["examples"] == ["091", "04", "43"]
    # what PyYAML's own dumper writes is read differently: the reason render() has its own
    assert yaml.load(yaml.safe_dump(doc, sort_keys=False), Loader=_Yaml12Loader)["channels"]["referral"]["parameters"]["code"]["examples"][0] == 91


def test_make_test_runs_the_pinned_official_validator():
    """CI runs `make test`: it installs the CLI pinned (exact version, whole tree locked) and validates first."""
    package = json.loads((ROOT / "tools/asyncapi/package.json").read_text())
    lock = json.loads((ROOT / "tools/asyncapi/package-lock.json").read_text())
    pinned = package["dependencies"]["@asyncapi/cli"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin @asyncapi/cli to an exact version"
    assert lock["packages"][""]["dependencies"] == package["dependencies"], "tools/asyncapi/package-lock.json is stale: npm install --package-lock-only"
    assert lock["packages"]["node_modules/@asyncapi/cli"]["version"] == pinned
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\basyncapi\b", makefile, re.M)
    assert "npm ci --prefix $(ASYNCAPI_DIR)" in makefile and "validate --fail-severity warn docs/asyncapi.yaml" in makefile
    assert "$(ASYNCAPI_STAMP): tools/asyncapi/package.json tools/asyncapi/package-lock.json" in makefile
