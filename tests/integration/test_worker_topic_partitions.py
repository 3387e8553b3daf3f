"""Found by the soak test: an input topic that exists with other partitions than HUB_TOPIC_PARTITIONS
(a broker's auto-creation made it). With detection's state in a faust table, co-partitioned with its
changelog, every population change was dead-lettered and the worker had to refuse such a layout; the
state is in the database now, so a worker simply processes the topic as it is."""

import asyncio
import datetime as dt
import time
import uuid

import pytest

from hub.adapters.dvv.ingest import process_page
from hub.adapters.dvv.page import parse_page
from hub.adapters.dvv.synthetic import generate_pages
from hub.adapters.kafka.admin import ensure_topics
from hub.schemas.codec import default_codec
from hub.schemas import topics
from tests.kafka_helpers import produce, read_topic
from tests.soak.worker import WorkerProcess

pytestmark = pytest.mark.integration


def test_the_worker_processes_an_input_topic_with_other_partitions(fresh_kafka_url, own_database_url, tmp_path):
    ensure_topics(fresh_kafka_url, [topics.POPULATION_CHANGES], 4)  # what the broker's auto-creation did in the soak run
    now = dt.datetime.now(dt.timezone.utc)
    rec, key = next(e for text in generate_pages(changes=200, seed=1, day=(now - dt.timedelta(days=2)).date())
                    for e in process_page(parse_page(text), secret="s", now=now).events
                    if e[0]["change_type"] == "immigration")
    value = default_codec().encode("PopulationChange", rec)
    worker = WorkerProcess({"HUB_KAFKA_URL": fresh_kafka_url, "HUB_DATABASE_URL": own_database_url, "HUB_APP_ID": f"parts-{uuid.uuid4().hex[:6]}",
                            "HUB_PERSON_KEY_SECRET": "s", "HUB_DATA_DIR": str(tmp_path), "HUB_LOG_LEVEL": "WARNING"}, tmp_path)
    worker.start()
    try:
        asyncio.run(produce(fresh_kafka_url, topics.POPULATION_CHANGES, [(key.encode(), value)]))
        deadline = time.monotonic() + 90
        found = []
        while worker.alive() and time.monotonic() < deadline and not found:
            found = [r for r in (default_codec().decode(m.value).record
                                 for m in asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, timeout=3, settle=0.5)))
                     if r["person_id"] == rec["person_id"]]
        assert found, f"no newcomer for the change (worker alive: {worker.alive()}); log:\n{worker.logs()[-3000:]}"
        assert not asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, timeout=2, settle=0.5))
        assert worker.alive()
    finally:
        worker.stop()


def test_a_provisioned_recipient_topic_needs_no_admin_call_on_its_first_record(fresh_kafka_url, monkeypatch):
    """What `hub topics --create` made is known from the worker's start: the first referral to a
    provisioned recipient goes straight to the producer, with no admin client built for it."""
    from hub import config
    from hub.adapters.kafka import admin
    from hub.streams.pipeline import hub_app

    provisioned, unknown = "hub.referrals.municipality.049.v1", "hub.referrals.municipality.091.v1"
    ensure_topics(fresh_kafka_url, [provisioned], 1)
    hub = hub_app(config.Settings(app_id=f"provisioned-{uuid.uuid4().hex[:6]}"), fresh_kafka_url)
    hub.publisher.ensure_topics()
    calls = []
    real = admin.ensure_topics
    monkeypatch.setattr(admin, "ensure_topics", lambda url, names, *a, **kw: calls.append(list(names)) or real(url, names, *a, **kw))

    async def first_records():
        await hub.publisher.ensure_exists(provisioned)
        await hub.publisher.ensure_exists(unknown)  # not provisioned: made now, as before
        await hub.publisher.ensure_exists(unknown)

    asyncio.run(first_records())
    assert calls == [[unknown]]
