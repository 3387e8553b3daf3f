"""Who may publish the routing facts: an employment authority reports jobseekers of its own employment
area only, Migri publishes residence permits as itself, and service needs name their identifier,
which must be the publisher or one of its authorities. Every refusal is `forbidden`."""

from __future__ import annotations

import datetime as dt

import pytest

from hub.domain import hetu
from hub.domain.publishers import FORBIDDEN, IDENTITY_FIELDS, Publisher, Publishers, decide, employment_authority_of, sign_headers

HETU = hetu.make(dt.date(1990, 4, 1), 931)
KEYS = {name: name.encode().ljust(32, b"k") for name in ("employment_authority:08", "employment_authority:43", "migri", "municipality:091",
                                                        "wellbeing_area:04", "keha", "integration-hub")}
PUBS = Publishers.of([
    Publisher("employment_authority:08", (KEYS["employment_authority:08"],)),
    Publisher("employment_authority:43", (KEYS["employment_authority:43"],)),
    Publisher("migri", (KEYS["migri"],)),
    Publisher("municipality:091", (KEYS["municipality:091"],)),
    # a wellbeing area whose social-services system also records for a municipality it serves
    Publisher("wellbeing_area:04", (KEYS["wellbeing_area:04"],), authorities=frozenset({"municipality:092"})),
    # a national client information system configured for two employment areas
    Publisher("keha", (KEYS["keha"],), authorities=frozenset({"employment_authority:08", "employment_authority:43"})),
    Publisher("integration-hub", (KEYS["integration-hub"],), frozenset({"*"}), frozenset({"*"})),
])


def check(who: str, name: str, record: dict):
    value = b"\x00fact"
    headers = sign_headers([("ce_id", b"e-1")], value, who, KEYS[who])
    return decide(headers, value, name, {"event_id": "e-1", "person_id": HETU, **record}, PUBS)


def jobseeker(area: str, source: str) -> dict:
    return {"source": source, "status": "registered", "employment_area": area}


def needs(identified_by: str, source: str) -> dict:
    return {"source": source, "needs": ["health"], "identified_by": identified_by}


def test_identity_fields_of_the_fact_inputs():
    assert IDENTITY_FIELDS["JobseekerStatus"] == (("source", "sources"), ("employment_area", "employment_areas"))
    assert IDENTITY_FIELDS["ResidencePermit"] == (("source", "sources"),)
    assert IDENTITY_FIELDS["ServiceNeeds"] == (("source", "sources"), ("identified_by", "authorities"))


def test_an_employment_authority_reports_for_its_own_area():
    v = check("employment_authority:08", "JobseekerStatus", jobseeker("08", "employment_authority:08"))
    assert v.allowed and v.publisher == "employment_authority:08"


def test_an_employment_authority_may_not_report_for_another_area():
    v = check("employment_authority:08", "JobseekerStatus", jobseeker("43", "employment_authority:08"))
    assert not v.allowed and v.reason == FORBIDDEN
    assert "employment_area='43'" in v.message and "'employment_authority:08'" in v.message


@pytest.mark.parametrize("area", ["", None, "08 ", "employment_authority:08"])
def test_an_area_that_is_not_the_publishers_code_is_refused(area):
    assert not check("employment_authority:08", "JobseekerStatus", jobseeker(area, "employment_authority:08")).allowed


def test_another_publisher_cannot_report_jobseekers_unless_configured_for_the_area():
    assert not check("municipality:091", "JobseekerStatus", jobseeker("08", "municipality:091")).allowed
    assert not check("migri", "JobseekerStatus", jobseeker("08", "migri")).allowed
    assert check("keha", "JobseekerStatus", jobseeker("43", "keha")).allowed  # its configured authorities name the areas
    assert not check("keha", "JobseekerStatus", jobseeker("01", "keha")).allowed
    assert check("integration-hub", "JobseekerStatus", jobseeker("01", "employment_authority:01")).allowed  # the hub itself: any


def test_the_source_must_be_the_publishers_own():
    v = check("employment_authority:08", "JobseekerStatus", jobseeker("08", "employment_authority:43"))
    assert not v.allowed and "source=" in v.message


def test_residence_permits_come_from_migri():
    assert check("migri", "ResidencePermit", {"source": "migri", "basis": "work"}).allowed
    v = check("municipality:091", "ResidencePermit", {"source": "migri", "basis": "work"})
    assert not v.allowed and v.reason == FORBIDDEN and "source='migri'" in v.message


def test_service_needs_name_the_publisher_or_one_of_its_authorities():
    assert check("municipality:091", "ServiceNeeds", needs("municipality:091", "municipality:091")).allowed
    assert check("wellbeing_area:04", "ServiceNeeds", needs("wellbeing_area:04", "wellbeing_area:04")).allowed
    assert check("wellbeing_area:04", "ServiceNeeds", needs("municipality:092", "wellbeing_area:04")).allowed
    v = check("municipality:091", "ServiceNeeds", needs("wellbeing_area:04", "municipality:091"))
    assert not v.allowed and v.reason == FORBIDDEN and "identified_by='wellbeing_area:04'" in v.message


def test_refusals_never_quote_an_identity_code():
    v = check("employment_authority:08", "JobseekerStatus", jobseeker(HETU, "employment_authority:08"))
    assert not v.allowed and HETU not in v.message
    v = check("municipality:091", "ServiceNeeds", needs(HETU, "municipality:091"))
    assert not v.allowed and HETU not in v.message


def test_employment_authority_of_an_area_code():
    assert employment_authority_of("08") == "employment_authority:08"
    assert employment_authority_of("") is None and employment_authority_of(None) is None and employment_authority_of(8) is None


# --- `hub publish` of the routing facts ----------------------------------------------------------
PUBLISHERS_FILE = """publishers:
  - id: employment_authority:08
    key_env: KEY_EA_08
  - id: migri
    key_env: KEY_MIGRI
  - id: municipality:091
    key_env: KEY_091
"""
PUBLISH_ENV = {"KEY_EA_08": "e" * 32, "KEY_MIGRI": "m" * 32, "KEY_091": "k" * 32}


def _publish(tmp_path, topic: str, who: str, name: str, record: dict, *extra: str):
    import json

    from click.testing import CliRunner

    from hub.cli import main
    from hub.schemas.codec import default_codec

    (tmp_path / "publishers.yaml").write_text(PUBLISHERS_FILE)
    (tmp_path / "fact.json").write_text(default_codec().to_json(name, record))
    out = CliRunner().invoke(main, ["publish", "--topic", topic, "--as", who, "--dry-run", *extra, str(tmp_path / "fact.json")],
                             env={"HUB_PUBLISHERS": str(tmp_path / "publishers.yaml"), **PUBLISH_ENV})
    return out, (json.loads(out.output) if out.exit_code == 0 else None)


def _fact(name: str, source: str, **fields) -> dict:
    from hub.schemas.envelope import envelope

    return {**envelope(source), "person_id": HETU, **fields}


def test_hub_publish_signs_each_fact_for_its_own_publisher(tmp_path):
    from hub.adapters.publisher_keys import load
    from hub.domain.publishers import authenticate
    from hub.schemas.codec import default_codec

    codec = default_codec()
    cases = [
        ("hub.jobseeker-status.v1", "employment_authority:08", "JobseekerStatus",
         _fact("JobseekerStatus", "employment_authority:08", status="registered", status_date=dt.date(2026, 1, 5), employment_area="08")),
        ("hub.residence-permits.v1", "migri", "ResidencePermit",
         _fact("ResidencePermit", "migri", basis="eu_registration", first_permit_date=dt.date(2025, 9, 1))),
        ("hub.service-needs.v1", "municipality:091", "ServiceNeeds",
         _fact("ServiceNeeds", "municipality:091", needs=["social"], identified_by="municipality:091", identified_on=dt.date(2026, 1, 7))),
    ]
    for topic, who, name, record in cases:
        out, sent = _publish(tmp_path, topic, who, name, record, "--key", "client-4711")
        assert out.exit_code == 0, out.output
        assert sent["topic"] == topic and sent["key"] == "client-4711" and sent["headers"]["ce_type"] == f"fi.integrationhub.{name}.v1"
        value = codec.encode(name, codec.from_jsonable(name, sent["record"]))
        assert authenticate(list(sent["headers"].items()), value, load(tmp_path / "publishers.yaml", PUBLISH_ENV)).publisher == who


def test_hub_publish_refuses_another_employment_area_and_a_permit_not_from_migri(tmp_path):
    record = _fact("JobseekerStatus", "employment_authority:08", status="ended", status_date=dt.date(2026, 1, 5), employment_area="43")
    out, _ = _publish(tmp_path, "hub.jobseeker-status.v1", "employment_authority:08", "JobseekerStatus", record)
    assert out.exit_code == 1 and "employment_area='43'" in out.output
    permit = _fact("ResidencePermit", "migri", basis="work", first_permit_date=dt.date(2025, 9, 1))
    out, _ = _publish(tmp_path, "hub.residence-permits.v1", "municipality:091", "ResidencePermit", permit)
    assert out.exit_code == 1 and "source='migri'" in out.output


def test_hub_publish_keeps_identity_codes_out_of_keys_and_hub_topics_to_the_hub(tmp_path):
    permit = _fact("ResidencePermit", "migri", basis="work", first_permit_date=dt.date(2025, 9, 1))
    out, _ = _publish(tmp_path, "hub.residence-permits.v1", "migri", "ResidencePermit", permit, "--key", HETU)
    assert out.exit_code == 2 and "identity code" in out.output and HETU not in out.output
    out, sent = _publish(tmp_path, "hub.residence-permits.v1", "migri", "ResidencePermit", permit)
    assert out.exit_code == 0 and sent["key"] is None  # no person_key: the hub re-keys the fact itself
    out, _ = _publish(tmp_path, "hub.routing-facts.v1", "migri", "ResidencePermit", permit, "--schema", "ResidencePermit")
    assert out.exit_code == 2 and "only the hub writes it" in out.output
