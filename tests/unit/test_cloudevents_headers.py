"""Every hub record's headers are CloudEvents Kafka binary mode, as the CloudEvents SDK reads them, and their
`source` is an RFC 3986 URI-reference by a grammar we did not write (rfc3986-validator, jsonschema's checker)."""

import datetime as dt
import json

import fastavro.utils
import jsonschema
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from hypothesis import given, strategies as st
from rfc3986_validator import validate_rfc3986

from hub.deploy.topics import recipients
from hub.routing.reference import default_reference
from hub.schemas.asyncapi import CE_HEADERS
from hub.schemas.codec import default_codec
from hub.schemas.envelope import ce_source, cloudevent_body, cloudevent_headers, envelope, source_id

# every `source` the hub writes or its publishers do: the hub's own parts, DVV, Migri, and every recipient authority
SOURCES = ["hub", "hub:routing", "hub:consent", "hub:ingest-dvv", "dvv:muutosrajapinta", "migri", *recipients(default_reference())]


def _is_uri_reference(text: str) -> bool:
    return bool(validate_rfc3986(text, rule="URI_reference"))


@pytest.mark.parametrize("name", default_codec().names)
def test_sdk_reads_the_attributes_of_every_event_type(name):
    codec = default_codec()
    record = next(iter(fastavro.utils.generate_many(codec.parsed_schema(name), 1)))
    record.update(envelope("municipality:091", occurred_at=dt.datetime(2026, 11, 16, 8, 30, 0, 123000, tzinfo=dt.timezone.utc)))
    value = codec.encode(name, record)
    event = from_binary(KafkaMessage(headers=dict(cloudevent_headers(name, record)), key=b"pk", value=value), JSONFormat())
    assert event.get_specversion() == "1.0"
    assert event.get_id() == record["event_id"]
    assert event.get_type() == f"fi.integrationhub.{name}.v1"
    assert event.get_source() == "/municipality/091"
    assert event.get_time() == record["occurred_at"]
    assert event.get_datacontenttype() == "application/avro"
    assert event.get_data() == value


def test_an_authority_id_as_it_is_is_no_uri_reference_and_its_ce_source_is():
    """What java.net.URI refuses: `_` is not allowed in a scheme, and a relative path's first segment has no colon."""
    assert not _is_uri_reference("wellbeing_area:04") and not _is_uri_reference("employment_authority:08")
    assert ce_source("wellbeing_area:04") == "/wellbeing_area/04"
    assert ce_source("employment_authority:08") == "/employment_authority/08"
    assert ce_source("municipality:091") == "/municipality/091"
    assert ce_source("hub:routing") == "/hub/routing" and ce_source("migri") == "/migri" and ce_source(None) == "/hub"
    assert len(SOURCES) > 300 and any(s.startswith("wellbeing_area:") for s in SOURCES)
    for source in SOURCES:
        assert _is_uri_reference(ce_source(source)), source
        assert source_id(ce_source(source)) == source


@given(st.text(min_size=1, max_size=40))
def test_every_source_id_gives_a_uri_reference_that_names_it_alone(source):
    made = ce_source(source)
    assert _is_uri_reference(made) and made.startswith("/") and not made.startswith("//")
    assert source_id(made) == source  # one source per id: `source` + `id` stay unique


def test_the_headers_and_the_webhook_body_carry_it_and_the_sdk_reads_both():
    codec = default_codec()
    record = next(iter(fastavro.utils.generate_many(codec.parsed_schema("Referral"), 1)))
    record.update(envelope("wellbeing_area:04", occurred_at=dt.datetime(2026, 11, 16, 8, 30, tzinfo=dt.timezone.utc)))
    headers = dict(cloudevent_headers("Referral", record))
    assert headers["ce_source"] == b"/wellbeing_area/04"
    assert record["source"] == "wellbeing_area:04"  # the Avro record's own field (what publishers sign) is unchanged
    binary = from_binary(KafkaMessage(headers=headers, key=None, value=codec.encode("Referral", record)), JSONFormat())
    assert binary.get_source() == "/wellbeing_area/04"
    body = cloudevent_body("Referral", record, codec.to_jsonable("Referral", record))
    structured = JSONFormat().read(None, body)
    assert structured.get_source() == "/wellbeing_area/04" and structured.get_id() == str(record["event_id"])
    assert json.loads(body)["data"]["source"] == "wellbeing_area:04"


def test_the_asyncapi_header_schema_checks_ce_source_as_a_uri_reference():
    """jsonschema's format checker (rfc3986-validator underneath) on the documented headers."""
    validator = jsonschema.Draft7Validator(CE_HEADERS, format_checker=jsonschema.FormatChecker())
    record = envelope("employment_authority:08")
    headers = {k: v.decode() for k, v in cloudevent_headers("Referral", record)}
    assert list(validator.iter_errors(headers)) == []
    assert list(validator.iter_errors(dict(headers, ce_source="employment_authority:08")))  # the old form fails


JAVA_CHECK = """
public class UriCheck {
    public static void main(String[] args) {
        for (String arg : args) {
            try { new java.net.URI(arg); System.out.println("ok " + arg); }
            catch (java.net.URISyntaxException e) { System.out.println("refused " + arg); }
        }
    }
}
"""


@pytest.mark.skipif(not __import__("shutil").which("java"), reason="no java on PATH (java.net.URI is an extra witness; rfc3986-validator is the test)")
def test_java_net_uri_parses_every_ce_source(tmp_path):
    import subprocess

    source = tmp_path / "UriCheck.java"
    source.write_text(JAVA_CHECK)
    made = [ce_source(s) for s in SOURCES]
    out = subprocess.run(["java", str(source), "wellbeing_area:04", *made], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = out.stdout.splitlines()
    assert lines[0] == "refused wellbeing_area:04", out.stdout + out.stderr
    assert lines[1:] == [f"ok {m}" for m in made]
