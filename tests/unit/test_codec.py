"""The codec: wire format, JSON form, and one precise error type for bad bytes."""

import datetime as dt
import io
import json
import struct

import fastavro
import fastavro.utils
import pytest
from hypothesis import given, settings, strategies as st

from hub.schemas.codec import SCHEMA_DIR, Codec, CodecError, default_codec
from tests.avro_strategies import for_schema

codec = default_codec()
ENVELOPE = {"event_id", "occurred_at", "recorded_at", "source", "schema_version"}
DESIGN_EVENTS = {"PopulationChange", "Newcomer", "Referral", "ReferralStatus", "AssessmentCompleted", "Consent", "PlanRequest", "DeadLetter"}


def test_every_design_event_has_a_schema_with_the_envelope():
    assert DESIGN_EVENTS <= set(codec.names)
    for name in codec.names:
        fields = {f["name"] for f in codec.raw_schema(name)["fields"]}
        assert ENVELOPE <= fields, name


def test_schema_ids_are_unique_and_stable():
    every = [v.schema_id for n in codec.names for v in codec.versions(n)]
    assert len(set(every)) == len(every)  # every version of every schema has its own id
    # written into data already published: never renumber. The hub wrote PopulationChange version 2
    # with id 1 before version 3; version 1 was never written by the hub and got an id of its own
    assert codec.earlier_ids("PopulationChange") == {1: 17, 2: 1} and codec.schema_id("PopulationChange") == 14
    # Newcomer version 1 (id 2) was written by the hub before version 2 (id 16)
    assert codec.earlier_ids("Newcomer") == {1: 2} and codec.schema_id("Newcomer") == 16
    assert {n: codec.schema_id(n) for n in ("Referral", "ReferralStatus", "AssessmentCompleted", "Consent", "PlanRequest", "Notice")} == dict(zip(
        ("Referral", "ReferralStatus", "AssessmentCompleted", "Consent", "PlanRequest", "Notice"), range(3, 9)))
    # DeadLetter version 1 (id 9) was written by the hub before version 2 (id 18)
    assert codec.earlier_ids("DeadLetter") == {1: 9} and codec.schema_id("DeadLetter") == 18


@pytest.mark.parametrize("schema_id", sorted(v.schema_id for n in default_codec().names for v in default_codec().versions(n)))
def test_a_record_of_every_version_decodes_into_the_current_schema(schema_id):
    """A record written with any version (its own schema, its own id) decodes into the current schema."""
    version = codec.version_of_id(schema_id)
    writer = fastavro.parse_schema(version.raw, named_schemas={})
    record = next(fastavro.utils.generate_many(writer, 1))
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">I", schema_id))
    fastavro.schemaless_writer(buf, writer, record)
    event = codec.decode(buf.getvalue(), version.name, check_bounds=False)
    assert event.schema_id == schema_id and event.name == version.name
    current = {f["name"] for f in codec.raw_schema(version.name)["fields"]}
    assert set(event.record) == current
    assert codec.decode(codec.encode(version.name, event.record), check_bounds=False).record == event.record  # a whole current record


def test_a_record_written_with_an_earlier_released_version_is_read_into_the_current_schema():
    """Data on hub.population-changes.v1 written with PopulationChange version 2 (id 1, by the hub
    before the upgrade or by a municipal system still on it) decodes, the new field at its default."""
    v2 = fastavro.parse_schema(json.loads((SCHEMA_DIR / "history" / "PopulationChange" / "v2.avsc").read_text()), named_schemas={})
    record = {"event_id": "2f1e4c9a-7d3b-4f51-9c1e-0a6b8d2e4f10", "occurred_at": dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc),
              "recorded_at": dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc), "source": "municipality:091", "schema_version": 2,
              "person_id": "010594Y9032", "change_type": "move_in", "municipality_code": "049", "previous_municipality_code": "091"}
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">I", 1))
    fastavro.schemaless_writer(buf, v2, record)
    event = codec.decode(buf.getvalue(), "PopulationChange")
    assert event.name == "PopulationChange" and event.schema_id == 1
    assert event.record["municipality_code"] == "049" and event.record["arrived_in_finland"] is None
    assert codec.schema_of_id(1) == ("PopulationChange", json.loads((SCHEMA_DIR / "history" / "PopulationChange" / "v2.avsc").read_text()))


@pytest.mark.parametrize("name", sorted(default_codec().names))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip_every_schema(name, data):
    record = data.draw(for_schema(codec.parsed_schema(name)))
    wire = codec.encode(name, record)
    assert wire[0] == 0 and struct.unpack(">I", wire[1:5])[0] == codec.schema_id(name)
    event = codec.decode(wire, check_bounds=False)  # any record of the schema; the input bounds: tests/unit/test_bounds.py
    assert event.name == name and event.record == record
    # the JSON form round-trips too, and is plain JSON with the schema's field names
    text = codec.to_json(name, record)
    assert set(json.loads(text)) == {f["name"] for f in codec.raw_schema(name)["fields"]}
    assert codec.from_json(name, text, check_bounds=False) == record


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_codec_error(garbage):
    try:
        event = codec.decode(garbage)
    except CodecError as exc:
        assert exc.reason in {"undecodable", "wrong_magic", "unknown_schema_id"}
    else:  # garbage that happens to be a valid record is still a record of a known schema
        assert event.name in codec.names


def test_wrong_magic_byte():
    wire = codec.encode("ReferralStatus", _status())
    with pytest.raises(CodecError) as err:
        codec.decode(b"\x01" + wire[1:])
    assert err.value.reason == "wrong_magic"


def test_unknown_schema_id():
    wire = codec.encode("ReferralStatus", _status())
    with pytest.raises(CodecError) as err:
        codec.decode(wire[:1] + struct.pack(">I", 9999) + wire[5:])
    assert err.value.reason == "unknown_schema_id"


def test_truncated_and_trailing_bytes():
    wire = codec.encode("ReferralStatus", _status())
    for bad in (wire[:-2], wire + b"\x00", wire[:4]):
        with pytest.raises(CodecError) as err:
            codec.decode(bad)
        assert err.value.reason == "undecodable"


def test_unexpected_schema_is_reported():
    wire = codec.encode("ReferralStatus", _status())
    with pytest.raises(CodecError) as err:
        codec.decode(wire, expect="PopulationChange")
    assert err.value.reason == "unexpected_schema"


def test_encode_rejects_a_record_that_does_not_match_and_never_quotes_values():
    bad = dict(_status(), status="lost-in-space-010101-900A")
    with pytest.raises(CodecError) as err:
        codec.encode("ReferralStatus", bad)
    assert err.value.reason == "invalid_record"
    assert "010101" not in str(err.value)


def test_from_json_errors_name_the_field():
    with pytest.raises(CodecError) as err:
        codec.from_json("ReferralStatus", json.dumps({**codec.to_jsonable("ReferralStatus", _status()), "status": "nope"}))
    assert err.value.reason == "invalid_json" and "status" in str(err.value)
    with pytest.raises(CodecError) as err:
        codec.from_json("ReferralStatus", "{not json")
    assert err.value.reason == "invalid_json"


def test_codec_can_be_built_from_a_directory(tmp_path):
    (tmp_path / "schema_ids.json").write_text('{"A/v1": 1}')
    (tmp_path / "a.avsc").write_text('{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}')
    c = Codec(tmp_path)
    assert c.decode(c.encode("A", {"x": 5})).record == {"x": 5}


def test_an_earlier_released_version_keeps_its_id_and_a_wrong_entry_is_refused(tmp_path):
    (tmp_path / "history" / "A").mkdir(parents=True)
    (tmp_path / "history" / "A" / "v1.avsc").write_text('{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}')
    v2 = '{"type":"record","name":"A","fields":[{"name":"x","type":"int"},{"name":"y","type":["null","string"],"default":null}]}'
    (tmp_path / "history" / "A" / "v2.avsc").write_text(v2)
    (tmp_path / "a.avsc").write_text(v2)
    (tmp_path / "schema_ids.json").write_text('{"A/v2": 2, "A/v1": 1}')
    c = Codec(tmp_path)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema({"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]}), {"x": 5})
    assert c.decode(b"\x00" + struct.pack(">I", 1) + body.getvalue()).record == {"x": 5, "y": None}
    assert c.decode(c.encode("A", {"x": 6, "y": "z"})).schema_id == 2 and c.earlier_ids("A") == {1: 1}
    refused = {
        '{"A/v2": 2, "A/v7": 1}': "names no schema version",
        '{"A/v2": 2, "B/v1": 1}': "names no schema version",
        '{"A/v2": 1, "A/v1": 1}': "share id 1",  # two versions would share an id
        '{"A/v2": 2}': 'A/v1 has no id: add "A/v1": 3',
        '{"A": 2, "A/v1": 1}': "names no version",  # an id not tied to a version would move with the next one
        '{"A/v2": 2, "A/v1": 1, "A/v1": 3}': "appears twice",
        '{"A/v2": 0, "A/v1": 1}': "whole number",
    }
    for wrong, why in refused.items():
        (tmp_path / "schema_ids.json").write_text(wrong)
        with pytest.raises(RuntimeError, match="schema_ids.json") as err:
            Codec(tmp_path)
        assert why in str(err.value), wrong


def test_a_schema_change_without_a_version_of_its_own_is_refused(tmp_path):
    """The changed schema would be written under the id of the version before it: refused, naming the fix."""
    (tmp_path / "history" / "A").mkdir(parents=True)
    (tmp_path / "history" / "A" / "v1.avsc").write_text('{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}')
    (tmp_path / "a.avsc").write_text('{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}')
    (tmp_path / "schema_ids.json").write_text('{"A/v1": 1}')
    with pytest.raises(RuntimeError, match='a.avsc differs from history/A/v1.avsc: add it as history/A/v2.avsc with a new id "A/v2"'):
        Codec(tmp_path)


def _status():
    from hub.schemas.envelope import envelope

    rec = envelope("wellbeing_area:05")
    rec.update(referral_id="r-1", authority="wellbeing_area:05", status="accepted", reason=None)
    return rec
