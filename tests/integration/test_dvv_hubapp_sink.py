"""The demo's path: the synthetic day through a running HubApp's publisher (PublisherSink), real broker;
and the cursor table on SQLite and PostgreSQL."""

import asyncio
import uuid

import pytest

from hub.adapters import database
from hub.adapters.dvv.cursor import CursorStore
from hub.adapters.dvv.ingest import PublisherSink, ingest_files
from hub.adapters.dvv.sample import sample_files
from hub.config import Settings
from hub.schemas import topics
from hub.streams.pipeline import hub_app
from hub.streams.runner import running, wait_for

pytestmark = pytest.mark.integration
SAMPLE = sample_files()


def test_synthetic_day_through_a_running_hubapp(fresh_kafka_url):
    """On a broker of its own: the shared one holds other tests' DVV dead letters, which would satisfy the wait below early."""
    async def scenario():
        hub = hub_app(Settings(app_id=f"dvv-sink-{uuid.uuid4().hex[:8]}"), fresh_kafka_url)
        seen, dead = set(), []

        async def changes(batch):
            seen.update(str(hub.codec.decode(msg.value, "PopulationChange").record["event_id"]) for msg in batch)

        async def letters(batch):
            dead.extend(hub.codec.decode(msg.value, "DeadLetter").record for msg in batch)

        hub.batch_consumer("collect-changes", topics.POPULATION_CHANGES, changes, 500)
        hub.batch_consumer("collect-dead-letters", topics.DEAD_LETTERS, letters, 500)

        async with running(hub):
            report = await ingest_files(SAMPLE, PublisherSink(hub.publisher), secret="s")
            await wait_for(lambda: len(seen) >= report.published, 60, "the day's events back from the broker")
            await wait_for(lambda: len([d for d in dead if d["source"] == "hub:ingest-dvv"]) >= 3, 60, "the day's dead letters")
        return report, seen, dead

    report, seen, dead = asyncio.run(scenario())
    assert report.published == 105 and sum(report.dead_letters.values()) == 3
    assert {d["reason"] for d in dead if d["source"] == "hub:ingest-dvv"} >= {"invalid_person_id", "unknown_municipality", "future_date"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_cursor_store(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if backend == "sqlite" else request.getfixturevalue("database_url")
    database.upgrade(url)
    assert "0004_dvv_cursor" in database.applied_revisions(url)
    store = CursorStore.from_url(url, feed=f"feed-{uuid.uuid4().hex[:6]}")
    try:
        assert store.load() is None
        store.save(5446623423)
        store.save(5446623512)
        assert store.load() == 5446623512
        assert CursorStore(store.engine, feed="another").load() is None
    finally:
        store.dispose()
