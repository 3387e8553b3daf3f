"""The codec: wire format, JSON form, and one precise error type for bad bytes."""

import json
import struct

import pytest
from hypothesis import given, settings, strategies as st

from hub.schemas.codec import Codec, CodecError, default_codec
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
    ids = [codec.schema_id(n) for n in codec.names]
    assert len(set(ids)) == len(ids)
    assert codec.schema_id("PopulationChange") == 1  # written into data already published: never renumber


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
    (tmp_path / "schema_ids.json").write_text('{"A": 1}')
    (tmp_path / "a.avsc").write_text('{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}')
    c = Codec(tmp_path)
    assert c.decode(c.encode("A", {"x": 5})).record == {"x": 5}


def _status():
    from hub.schemas.envelope import envelope

    rec = envelope("wellbeing_area:05")
    rec.update(referral_id="r-1", authority="wellbeing_area:05", status="accepted", reason=None)
    return rec
