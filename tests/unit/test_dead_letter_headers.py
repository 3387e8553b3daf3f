"""The DeadLetter record keeps the original record's Kafka headers (schema version 2), reads version-1 dead
letters (no headers), and a replay's headers are the original ones plus `hub_replay_of`."""

import asyncio
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


class _Producer:
    """Refuses values over 100 kB as too large (as aiokafka does over max_request_size); keeps the rest."""

    def __init__(self):
        self.sent = []

    async def send(self, topic, value, key, headers=None):
        from aiokafka import errors

        if len(value) > 100_000:
            raise errors.MessageSizeTooLargeError("too large")
        self.sent.append((topic, value, key, headers))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _Store:
    def __init__(self):
        self.rows = []

    def add(self, record):
        self.rows.append(record)
        return len(self.rows)


class _Calls:
    async def run(self, fn, *args):
        return fn(*args)


def _pointer_of(original_headers):
    from hub.adapters.kafka.publisher import Publisher
    from hub.config import Settings

    producer, store = _Producer(), _Store()
    publisher = Publisher(Settings(app_id="unit-dead-headers"), "kafka://unused:9092", default_codec(), lambda: producer)
    publisher._existing.add("hub.dead-letters.v1")
    publisher.dead_letter_store, publisher._dead_letter_calls = store, _Calls()

    async def go():
        await (await publisher.dead_letter(b"\x07" * 200_000, "wrong_magic", "m", original_topic="t", original_key=b"k",
                                           original_headers=original_headers))

    asyncio.run(go())
    (sent,) = producer.sent
    return default_codec().decode(sent[1], "DeadLetter").record, store.rows[0]


def test_a_dead_letter_kept_in_the_database_points_with_the_headers_unless_they_are_huge():
    pointer, row = _pointer_of(HEADERS)
    assert pointer["original_value"] == b"" and kafka_headers(pointer["original_headers"]) == HEADERS
    assert kafka_headers(row["original_headers"]) == HEADERS
    huge = [("x-big", b"h" * (65 * 1024))]
    pointer, _ = _pointer_of(huge)
    assert pointer["original_headers"] == [] and "its 1 header(s) (66565 bytes) are not kept" in pointer["message"]
