"""Found by the soak test: an input topic that exists with other partitions than the hub's tables."""

import asyncio
import datetime as dt
import time
import uuid

import pytest

from hub.adapters.dvv.ingest import process_page
from hub.adapters.dvv.page import parse_page
from hub.adapters.dvv.synthetic import generate_pages
from hub.adapters.kafka_admin import ensure_topics
from hub.schemas.codec import default_codec
from hub.streams import topics
from tests.kafka_helpers import produce, read_topic
from tests.soak.worker import WorkerProcess

pytestmark = pytest.mark.integration


def test_the_worker_refuses_to_start_when_an_input_topic_has_other_partitions(fresh_kafka_url, database_url, tmp_path):
    ensure_topics(fresh_kafka_url, [topics.POPULATION_CHANGES], 4)  # what the broker's auto-creation did in the soak run
    now = dt.datetime.now(dt.timezone.utc)
    rec, key = next(e for text in generate_pages(changes=50, seed=1, day=(now - dt.timedelta(days=2)).date())
                    for e in process_page(parse_page(text), secret="s", now=now).events)
    value = default_codec().encode("PopulationChange", rec)
    worker = WorkerProcess({"HUB_KAFKA_URL": fresh_kafka_url, "HUB_DATABASE_URL": database_url, "HUB_APP_ID": f"parts-{uuid.uuid4().hex[:6]}",
                            "HUB_PERSON_KEY_SECRET": "s", "HUB_DATA_DIR": str(tmp_path), "HUB_LOG_LEVEL": "WARNING"}, tmp_path)
    worker.start()
    try:
        asyncio.run(produce(fresh_kafka_url, topics.POPULATION_CHANGES, [(key.encode(), value)]))
        deadline = time.monotonic() + 90
        letters = []
        while worker.alive() and time.monotonic() < deadline and not letters:
            letters = [m for m in asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, timeout=3, settle=0.5))]
        reasons = [default_codec().decode(m.value).record["reason"] for m in letters]
        assert not letters, f"the population change was dead-lettered ({reasons}) instead of the worker refusing the topic layout"
        assert not worker.alive() and worker.returncode() != 0, "the worker kept running with mismatched partitions"
        assert topics.POPULATION_CHANGES in worker.logs() and "HUB_TOPIC_PARTITIONS" in worker.logs()
    finally:
        worker.stop()
