"""Issue 3 end to end: replay server -> DVV client -> ingest (crash, rerun) -> broker -> detection -> newcomers."""

import asyncio
import datetime as dt

import pytest

from hub.adapters.database import create_engine, upgrade
from hub.adapters.dvv.client import ClientConfig, DvvClient
from hub.adapters.dvv.cursor import CursorStore
from hub.adapters.dvv.ingest import KafkaSink, ingest
from hub.config import Settings
from hub.schemas import topics
from hub.streams import newcomer_agents
from hub.streams.pipeline import hub_app
from hub.streams.runner import running, wait_for
from tests.integration.test_dvv_ingest_pipeline import StopsAfter, pages_with_a_bad_change
from tests.kafka_helpers import decoded, read_topic

pytestmark = pytest.mark.integration
SECRET = "e2e-secret"


def test_each_newcomer_exactly_once_despite_a_crash_and_duplicates(fresh_kafka_url, tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    upgrade(url)
    engine = create_engine(url)
    cursor = CursorStore(engine)
    first, pages = pages_with_a_bad_change()
    from tests.dvv_replay import ReplayServer

    async def scenario():
        with ReplayServer(pages, first) as server:
            client = DvvClient(ClientConfig(base_url=server.url, backoff=0.001), sleep=lambda s: None)
            start = client.first_key(dt.date(2026, 5, 11))
            sink = await KafkaSink(fresh_kafka_url).start()
            with pytest.raises(ConnectionError):  # the publisher dies in the middle of page 2
                await ingest(client.pages(start), StopsAfter(sink, 12), secret=SECRET, cursor=cursor)
            await sink.stop()
            async with KafkaSink(fresh_kafka_url) as sink:  # restart from the stored cursor: page 2 again
                await ingest(client.pages(cursor.load()), sink, secret=SECRET, cursor=cursor)
            assert cursor.load() == 5446623600

        hub = hub_app(Settings(app_id="dvv-e2e", person_key_secret=SECRET), fresh_kafka_url)
        seen = newcomer_agents.register(hub, database_url=url)
        async with running(hub):
            await wait_for(lambda: seen.consumed >= 17, 60, "detection to consume every change, duplicates included")
            await asyncio.sleep(1)
        return seen

    seen = asyncio.run(scenario())
    engine.dispose()
    newcomers = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=1)))
    arrived = [n for n in newcomers if n["change"] == "arrived"]
    assert arrived, "the fixture's arrival from abroad makes a newcomer"
    assert len({n["person_key"] for n in arrived}) == len(arrived) == len({n["event_id"] for n in arrived})
    assert sum(seen.newcomers.values()) == len(arrived)
    dead = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=1)))
    assert [d["reason"] for d in dead] == ["invalid_person_id"]
