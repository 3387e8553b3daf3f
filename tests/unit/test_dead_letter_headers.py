"""The DeadLetter record keeps the original record's Kafka headers (schema version 2), reads version-1 dead
letters (no headers), and a replay's headers are the original ones plus `hub_replay_of`."""

import io
import json
import struct

import fastavro

from hub.adapters.replay import REPLAY_HEADER, replayed_headers
from hub.schemas.codec import SCHEMA_DIR, default_codec
from hub.schemas.compatibility import load_history
from hub.schemas.envelope import dead_letter_record, header_list, kafka_headers

HEADERS = [("ce_id", b"e-1"), ("hub-signature", b"v1,abc"), ("x-trace", b"one"), ("x-trace", b"two"), ("x-empty", None), ("x-bin", b"\x00\xff")]


def test_headers_go_into_the_dead_letter_as_they_came_and_come_back_out():
    record = dead_letter_record(b"\x07bad", "wrong_magic", "first byte is 7", original_topic="hub.newcomers.v1", partition=2, offset=5,
                                original_key=b"k", original_headers=HEADERS)
    assert record["original_headers"] == [{"key": k, "value": v} for k, v in HEADERS]
    codec = default_codec()
    back = codec.decode(codec.encode("DeadLetter", record), "DeadLetter").record
    assert kafka_headers(back["original_headers"]) == HEADERS  # order, repeats, a null value, any bytes
    assert dead_letter_record(b"x", "invalid_json", "line 1", location="f.jsonl:1")["original_headers"] == []
    assert header_list(None) == [] and kafka_headers(None) == []


def test_a_version_1_dead_letter_still_decodes_with_no_headers():
    codec = default_codec()
    assert codec.earlier_ids("DeadLetter") == {1: 9} and codec.schema_id("DeadLetter") != 9
    v1, v2 = load_history()["DeadLetter"]
    assert v2 == json.loads((SCHEMA_DIR / "dead_letter.avsc").read_text())
    assert {f["name"] for f in v2["fields"]} - {f["name"] for f in v1["fields"]} == {"original_headers"}
    old = {k: v for k, v in dead_letter_record(b"\x07", "wrong_magic", "m", original_topic="t").items() if k != "original_headers"}
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, 9))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(v1), old)
    record = codec.decode(buf.getvalue(), "DeadLetter").record
    assert record["original_headers"] == [] and record["original_topic"] == "t"


def test_a_replay_keeps_the_headers_and_names_the_original_once():
    again = replayed_headers([*HEADERS, (REPLAY_HEADER, b"hub.newcomers.v1/0/1")], "hub.newcomers.v1/2/5")
    assert again == [*HEADERS, (REPLAY_HEADER, b"hub.newcomers.v1/2/5")]
