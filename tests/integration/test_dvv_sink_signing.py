"""`hub ingest dvv` signs what it publishes when HUB_PUBLISHERS gives the hub a key of its own."""

import asyncio
import datetime as dt
import uuid

import pytest

from hub.adapters.dvv.ingest import KafkaSink
from hub.domain import hetu
from hub.domain.publishers import Publisher, Publishers, authenticate
from hub.schemas.envelope import envelope
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

HUB_KEY = b"h" * 32


def test_the_standalone_dvv_sink_signs_each_record_so_the_publisher_check_accepts_it(kafka_url):
    uid = uuid.uuid4().hex[:8]
    changes, dead = f"test.{uid}.changes", f"test.{uid}.dead"
    record = envelope("dvv")
    record.update(person_id=hetu.make(dt.date(1990, 1, 1), 931), change_type="move_in", municipality_code="091")

    async def scenario():
        async with KafkaSink(kafka_url, changes_topic=changes, dead_letters_topic=dead, signer=("integration-hub", HUB_KEY)) as sink:
            await sink.change(record, "k-1")
            await sink.flush()
        return await read_topic(kafka_url, changes, min_count=1)

    (message,) = asyncio.run(scenario())
    publishers = Publishers.of([Publisher("integration-hub", (HUB_KEY,), frozenset({"*"}), frozenset({"*"}))])
    verdict = authenticate(message.headers, message.value, publishers)
    assert verdict.allowed and verdict.publisher == "integration-hub"
    wrong = Publishers.of([Publisher("integration-hub", (b"x" * 32,), frozenset({"*"}), frozenset({"*"}))])
    assert not authenticate(message.headers, message.value, wrong).allowed
