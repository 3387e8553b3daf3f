"""Dead letters keep the original record's Kafka headers, and a replay puts them back (real broker, real PostgreSQL).

A routing stream dead-letters two records with headers of their own (CloudEvents attributes, a publisher's
signature, a repeated key, a header without a value): one small (its headers on the DeadLetter record as they
came, in order), one ~1 MB (kept whole in the database; the record on the topic that points at it still
carries the headers). `hub dead-letters replay` then puts both back on the topic they came from with their
key, value bytes and headers, plus `hub_replay_of` naming the original; a dead letter of a file is left.
"""

import asyncio
import datetime as dt
import os
import subprocess
import sys
import uuid

import pytest

from hub.adapters import database
from hub.adapters.dead_letter_store import DeadLetterStore, row_id_of
from hub.adapters.referral_ledger import ReferralLedger
from hub.adapters.replay import REPLAY_HEADER, Range, replay_dead_letters
from hub.config import Settings
from hub.schemas import topics
from hub.schemas.codec import default_codec
from hub.schemas.envelope import dead_letter_record, envelope
from hub.streams.pipeline import hub_app
from hub.streams.routing_agents import register
from hub.streams.runner import running, wait_for
from tests.conftest import TEST_DATA_KEY
from tests.kafka_helpers import publish_all, read_topic

pytestmark = pytest.mark.integration


def _headers(tag: str) -> list[tuple[str, bytes | None]]:
    return [
        ("ce_specversion", b"1.0"), ("ce_id", f"ev-{tag}".encode()), ("ce_type", b"fi.integrationhub.Newcomer.v1"),
        ("ce_source", b"/municipality/091"), ("hub-publisher", b"municipality:091"), ("hub-signature", b"v1,c2lnbmF0dXJl"),
        ("x-trace", b"one"), ("x-trace", b"two"), ("x-empty", None), ("x-binary", bytes(range(256))),
    ]


@pytest.fixture
def db_url(own_database_url):
    database.upgrade(own_database_url)
    return own_database_url


def test_dead_letters_keep_the_original_headers_and_a_replay_puts_them_back(fresh_kafka_url, db_url):
    uid = uuid.uuid4().hex[:8]
    settings = Settings(app_id=f"dead-headers-{uid}", database_url=db_url)
    engine = database.create_engine(db_url)
    codec = default_codec()
    small, big = b"\x07not avro", b"\x07" + bytes(range(256)) * 4096  # wrong_magic both; the big one ~1 MB
    good = envelope("hub:newcomer-detection", occurred_at=dt.datetime(2025, 6, 15, 9, tzinfo=dt.timezone.utc))
    good.update(person_key=f"pk-good-{uid}", municipality_code="092", nationalities=["SY"])

    async def scenario():
        hub = hub_app(settings, fresh_kafka_url)
        seen = register(hub, ledger=ReferralLedger(engine), batch_size=100)
        await publish_all(fresh_kafka_url, [
            (topics.NEWCOMERS, b"small-key", small, _headers("small")),
            (topics.NEWCOMERS, b"big-key", big, _headers("big")),
            (topics.NEWCOMERS, good["person_key"].encode(), codec.encode("Newcomer", good), None),
            # a file's dead letter (no topic) on the dead-letter topic too: a replay leaves it
            (topics.DEAD_LETTERS, None, codec.encode("DeadLetter", dead_letter_record(b"x;y", "invalid_json", "line 3 is not JSON",
                                                                                        location="day.jsonl:3")), None),
        ], max_request_size=4 * 1024 * 1024)
        async with running(hub):
            await wait_for(lambda: seen.consumed[(topics.NEWCOMERS, "routed")] == 1, 90, "the newcomer after the bad records routed")

    asyncio.run(scenario())
    try:
        messages = asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=3))
        dead = {m.key: (m, codec.decode(m.value, "DeadLetter").record) for m in messages}
        small_msg, small_dead = dead[b"small-key"]
        assert small_dead["original_value"] == small and small_dead["reason"] == "wrong_magic"
        assert [(h["key"], h["value"]) for h in small_dead["original_headers"]] == _headers("small")  # as they came, in order
        # the dead-letter record's own Kafka headers are its own CloudEvents attributes, not the original's
        own = dict(small_msg.headers)
        assert own["ce_type"] == b"fi.integrationhub.DeadLetter.v1" and own["ce_id"] == str(small_dead["event_id"]).encode()
        assert "x-trace" not in own
        _, big_dead = dead[b"big-key"]
        assert big_dead["original_value"] == b"" and row_id_of(big_dead["location"]) is not None  # the original is in the database
        assert [(h["key"], h["value"]) for h in big_dead["original_headers"]] == _headers("big")
        assert dead[None][1]["original_headers"] == []

        before = asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=3))
        env = {**os.environ, "HUB_KAFKA_URL": fresh_kafka_url, "HUB_DATABASE_URL": db_url, "HUB_DATA_KEYS": TEST_DATA_KEY,
               "HUB_STARTUP_TIMEOUT": "10"}
        out = subprocess.run([sys.executable, "-m", "hub.cli", "dead-letters", "replay", "--from-offset", "0"], capture_output=True, text=True,
                             timeout=180, env=env, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == f"replayed 2 of 3 dead letter(s) onto their topics ({topics.NEWCOMERS}: 2); left 1 (no_topic: 1)"
        after = asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=len(before) + 2))
        replayed = {m.key: m for m in after if any(k == REPLAY_HEADER for k, _ in m.headers)}
        assert set(replayed) == {b"small-key", b"big-key"}
        for key, value, tag, was in ((b"small-key", small, "small", small_dead), (b"big-key", big, "big", big_dead)):
            m = replayed[key]
            assert m.value == value
            where = f"{topics.NEWCOMERS}/{was['original_partition']}/{was['original_offset']}"
            assert list(m.headers) == [*_headers(tag), (REPLAY_HEADER, where.encode())]  # the original headers, then where it was

        # without the hub database the kept original is left, and a filter selects by reason
        result = asyncio.run(replay_dead_letters(fresh_kafka_url, Range(from_offset=0), codec, reason="wrong_magic"))
        assert result.republished == {topics.NEWCOMERS: 1} and result.skipped == {"kept_in_database": 1, "not_selected": 1}
        assert DeadLetterStore(engine).get(row_id_of(big_dead["location"]))["original_value"] == big
    finally:
        engine.dispose()
