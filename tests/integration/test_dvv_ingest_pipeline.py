"""Replay server -> DVV client -> ingest -> real broker, with the cursor in the real PostgreSQL."""

import asyncio
import json
import uuid

import pytest

from hub.adapters.database import create_engine, upgrade
from hub.adapters.dvv.client import ClientConfig, DvvClient
from hub.adapters.dvv.cursor import CursorStore
from hub.adapters.dvv.ingest import KafkaSink, bootstrap_servers, ingest
from hub.domain import hetu
from hub.schemas.codec import default_codec
from tests.dvv_replay import ReplayServer, fixture_pages

pytestmark = pytest.mark.integration
SECRET = "pipeline-secret"

BAD_CHANGE = {"henkilotunnus": "010190-900X", "muutospv": "2026-05-12T10:00:00.000Z", "tietoryhmat": [{"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": "091"}]}


def pages_with_a_bad_change():
    first, pages = fixture_pages()
    page2_key = max(pages)
    page2 = json.loads(pages[page2_key])
    page2["muutokset"].append(BAD_CHANGE)  # invalid check character
    pages[page2_key] = json.dumps(page2, ensure_ascii=False).encode()
    return first, pages


async def consume(kafka_url, topic, expect, timeout=30.0):
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers(kafka_url), auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    got = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < expect and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(records)
        # a short extra read: nothing more than expected may arrive
        batch = await consumer.getmany(timeout_ms=300)
        for records in batch.values():
            got.extend(records)
    finally:
        await consumer.stop()
    return got


class StopsAfter:
    """A real KafkaSink whose producer is stopped after `n` changes: publishing fails mid-run."""

    def __init__(self, sink, n):
        self.sink, self.n = sink, n

    async def change(self, record, key):
        self.n -= 1
        if self.n == 0:
            await self.sink.stop()
            raise ConnectionError("producer stopped mid-run")
        await self.sink.change(record, key)

    async def dead_letter(self, bad):
        await self.sink.dead_letter(bad)

    async def flush(self):
        await self.sink.flush()


def test_replay_to_broker_with_cursor_crash_and_rerun(kafka_url, database_url):
    tag = uuid.uuid4().hex[:8]
    changes_topic, dead_topic = f"test.dvv.changes.{tag}", f"test.dvv.dead.{tag}"
    upgrade(database_url)
    engine = create_engine(database_url)
    cursor = CursorStore(engine, feed=f"test-{tag}")
    first, pages = pages_with_a_bad_change()
    codec = default_codec()

    async def scenario():
        with ReplayServer(pages, first) as server:
            client = DvvClient(ClientConfig(base_url=server.url, backoff=0.001), sleep=lambda s: None)
            start = client.first_key(__import__("datetime").date(2026, 5, 11))
            assert cursor.load() is None

            # run 1: publishing stops during page 2 (after page 1 was acknowledged)
            sink = await KafkaSink(kafka_url, changes_topic=changes_topic, dead_letters_topic=dead_topic).start()
            with pytest.raises(ConnectionError):
                await ingest(client.pages(start), StopsAfter(sink, 9 + 3), secret=SECRET, cursor=cursor)
            await sink.stop()
            assert cursor.load() == 5446623512  # page 2 not acknowledged: not skipped

            # run 2: from the stored cursor, a fresh producer
            async with KafkaSink(kafka_url, changes_topic=changes_topic, dead_letters_topic=dead_topic) as sink:
                report = await ingest(client.pages(cursor.load()), sink, secret=SECRET, cursor=cursor)
            assert cursor.load() == 5446623600 == report.cursor
            assert report.pages == 1 and report.published == 6 and report.dead_letters == {"invalid_person_id": 1}
            assert server.muutokset_keys() == [5446623423, 5446623512, 5446623512]

        records = await consume(kafka_url, changes_topic, expect=9 + 2 + 6)
        dead = await consume(kafka_url, dead_topic, expect=1)
        return records, dead

    records, dead = asyncio.run(scenario())
    engine.dispose()

    events = [codec.decode(r.value, "PopulationChange").record for r in records]
    ids = [e["event_id"] for e in events]
    assert len(ids) == 17 and len(set(ids)) == 15  # the 2 re-sent page-2 events carry the same ids
    for r, e in zip(records, events):
        assert r.key.decode() == hetu.person_key(e["previous_person_id"] if e["change_type"] == "identity_correction" else e["person_id"], SECRET)
        assert dict(r.headers)["ce_id"].decode() == str(e["event_id"])
        assert hetu.scrub(r.key.decode()) == r.key.decode()
    assert {e["change_type"] for e in events} >= {"immigration", "move_in", "identity_correction", "death", "other"}

    (letter,) = [codec.decode(r.value, "DeadLetter").record for r in dead]
    assert letter["reason"] == "invalid_person_id" and letter["location"] == "record key 5446623512, muutos 5"
    assert json.loads(letter["original_value"]) == BAD_CHANGE
    assert "010190-900X" not in letter["message"]
