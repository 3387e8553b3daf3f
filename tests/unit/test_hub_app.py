"""The hub's faust app: what faust starts with it, where it keeps its data, and a record that fails
alone in a batch consumer (dead-lettered with its error's type only)."""

import asyncio
from types import SimpleNamespace

import pytest

from hub.config import Settings
from hub.streams.app import HubApp
from hub.streams.pipeline import hub_app


def _started_by_faust(hub: HubApp) -> list:
    return list(hub.app.boot_strategy.server())


def test_faust_starts_neither_its_producer_nor_its_consumer_without_agents():
    """Every stream is a batch consumer and every send goes through the hub's producers: faust's
    consumer would join the group `<app id>` with nothing subscribed, its producer send nothing."""
    hub = hub_app(Settings(app_id="boot-test"), "kafka://127.0.0.1:1")
    hub.batch_consumer("stream", "hub.test.v1", lambda records: None, 10)
    started = _started_by_faust(hub)
    assert hub.app.producer not in started and hub.app.consumer not in started
    assert hub.app.agents in started  # the app's own services: agents manager, sensors


def test_a_faust_agent_brings_faust_consumer_back():
    hub = hub_app(Settings(app_id="boot-agent"), "kafka://127.0.0.1:1")

    @hub.app.agent(hub.app.topic("hub.test.v1", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"))
    async def collect(stream):
        async for _ in stream:
            pass

    started = _started_by_faust(hub)
    assert hub.app.consumer in started and hub.app.producer not in started


def test_faust_keeps_its_data_directory_under_hub_data_dir(tmp_path):
    """faust's default data directory is `<app id>-data` in the working directory. The hub's goes under HUB_DATA_DIR."""
    hub = hub_app(Settings(app_id="datadir-test", data_dir=tmp_path), "kafka://127.0.0.1:1")
    assert hub.app.conf.datadir == tmp_path / "faust" / "datadir-test"


def test_a_record_failing_alone_is_dead_lettered_with_the_type_only():
    hub = hub_app(Settings(app_id="isolate"), "kafka://127.0.0.1:1")
    letters = []

    async def capture(value, reason, message, **kw):
        letters.append((value, reason, message, kw))
        kept = asyncio.get_running_loop().create_future()  # the dead letter exists
        kept.set_result(None)
        return kept

    hub.publisher.dead_letter = capture
    record = SimpleNamespace(value=b"\x00raw", topic="hub.newcomers.v1", partition=0, offset=7, key=b"k")
    asyncio.run(hub.isolate("routing", record, KeyError("131052-308T")))
    ((value, reason, message, kw),) = letters
    assert value == b"\x00raw" and reason == "internal_error" and kw["offset"] == 7
    assert "KeyError" in message and "131052" not in message


def test_the_composition_root_makes_the_publisher_and_its_check_and_hands_them_to_the_app():
    """`hub_app` makes the publisher and the publisher check once; HubApp makes neither. Outside a
    batch consumer the publisher sends through the app's producer, which exists while the app runs."""
    hub = hub_app(Settings(app_id="root"), "kafka://127.0.0.1:1", signed_topics=("hub.test.v1",))
    assert hub.publisher_check.publisher is hub.publisher
    assert hub.publisher.codec is hub.codec is hub.publisher_check.codec
    assert hub.publisher_check.signed_topics == frozenset({"hub.test.v1"})
    assert hub.publisher.default_producer() is None  # the app is not running
    hub.app.hub_producer = running_producer = object()
    assert hub.publisher.producer_here() is running_producer
    with pytest.raises(TypeError):
        HubApp(hub.settings, "kafka://127.0.0.1:1", hub.codec)  # no publisher of its own


def test_a_consumer_of_co_partitioned_topics_asks_for_the_range_assignor_first():
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor

    from hub.adapters.kafka.consumer import CO_PARTITIONED
    from hub.schemas import topics

    hub = hub_app(Settings(app_id="co-test"), "kafka://localhost:1")
    plain = hub.batch_consumer("plain", "hub.test.v1", lambda records: None, 10)
    co = hub.batch_consumer("co", [topics.NEWCOMERS, topics.ROUTING_FACTS], lambda records: None, 10, co_partitioned=True)
    assert "partition_assignment_strategy" not in plain._options
    assert co._options["partition_assignment_strategy"] == CO_PARTITIONED and CO_PARTITIONED[0] is RangePartitionAssignor
    assert co.topics == (topics.NEWCOMERS, topics.ROUTING_FACTS)
