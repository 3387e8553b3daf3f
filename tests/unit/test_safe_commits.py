"""Which offsets the worker may commit (hub.adapters.faust_consumer), on faust's real Consumer object.

A commit says "everything before this offset is done": if it passes an offset that was never
processed, a crash afterwards loses that record for good. faust's own rule is off by one at the head
and switched off when the committed offset is 0 or unknown; the crash soak lost an assessment to it.
"""

import logging
import time

import pytest
from faust.types import TP
from faust.types.tuples import Message

from hub.adapters import faust_consumer
from hub.config import Settings
from hub.streams.app import HubApp

TOPIC = TP("hub.assessments.v1", 0)


@pytest.fixture()
def consumer():
    hub = HubApp(Settings(app_id="safe-commits"), "kafka://127.0.0.1:1")
    return hub.app.consumer  # created, never started: only its bookkeeping is used


def acked(consumer, *offsets, tp=TOPIC):
    consumer._acked[tp].extend(offsets)
    consumer._acked_index[tp].update(offsets)


def test_faust_is_patched(consumer):
    assert type(consumer)._new_offset is faust_consumer.safe_new_offset
    assert type(consumer).perform_seek is faust_consumer.perform_seek


def test_an_unacknowledged_offset_at_the_head_holds_the_commit(consumer):
    consumer._committed_offset[TOPIC] = 10
    acked(consumer, 11, 12)  # 10 is still being processed (or was dropped)
    assert consumer._new_offset(TOPIC) is None  # faust's own rule commits 13 here, skipping 10
    acked(consumer, 10)
    assert consumer._new_offset(TOPIC) == 13
    assert list(consumer._acked[TOPIC]) == []


def test_nothing_is_committed_while_the_base_is_unknown(consumer):
    acked(consumer, 5, 6, 7)  # e.g. acknowledged after faust forgot the partition's offsets in a rebalance
    assert consumer._new_offset(TOPIC) is None


def test_a_committed_zero_is_a_base(consumer):
    consumer._committed_offset[TOPIC] = 0
    acked(consumer, 1, 2)
    assert consumer._new_offset(TOPIC) is None  # faust skips its check when the committed offset is 0
    acked(consumer, 0)
    assert consumer._new_offset(TOPIC) == 3


def test_a_record_acknowledged_twice_does_not_stop_the_run(consumer):
    consumer._committed_offset[TOPIC] = 13
    consumer._acked[TOPIC].extend([13, 14, 14, 15, 17])  # fetched twice around a rebalance
    assert consumer._new_offset(TOPIC) == 16  # faust's consecutive run stops at the repeated 14
    assert list(consumer._acked[TOPIC]) == [17]


def test_the_fetch_loop_neither_drops_nor_skips_records_of_acknowledged_topics(consumer, monkeypatch):
    """After a rebalance, records fetched before faust's seek back to the committed offset bumped the
    fetch loop's read offset: it then counted the offsets in between as a gap (done) and dropped the
    re-fetched records as duplicates, while streams skipped the stale ones: never processed, yet
    committed. For the topics agents acknowledge the loop reads no read offset now (so it does neither),
    and no gap is recorded; changelogs keep faust's behaviour."""
    import asyncio

    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: topic == TOPIC.topic)
    changelog = TP("hub-newcomer-state-changelog", 0)
    consumer._read_offset[TOPIC] = 3698
    consumer._read_offset[changelog] = 17
    get = consumer._read_offset.__getitem__  # what the fetch loop binds
    assert get(TOPIC) is None
    assert get(changelog) == 17
    asyncio.run(consumer._add_gap(TOPIC, 3695, 3698))
    assert not consumer._gap[TOPIC]
    consumer._committed_offset[TOPIC] = 3695
    acked(consumer, 3698, 3699)
    assert consumer._new_offset(TOPIC) is None  # 3695..3697 were never processed: no commit past them


def test_a_dropped_offset_is_reported_once_and_not_committed(consumer, monkeypatch, caplog):
    consumer._committed_offset[TOPIC] = 40
    acked(consumer, 41, 42)
    clock = [1000.0]
    monkeypatch.setattr(faust_consumer.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger=faust_consumer.__name__):
        assert consumer._new_offset(TOPIC) is None
        clock[0] += faust_consumer.DROPPED_AFTER + 1
        assert consumer._new_offset(TOPIC) is None
        assert consumer._new_offset(TOPIC) is None
    reports = [r for r in caplog.records if "never processed" in r.getMessage()]
    assert len(reports) == 1 and "40..40" in reports[0].getMessage()


def test_a_dropped_offset_is_read_again_in_this_process(consumer, monkeypatch, caplog):
    """A record faust dropped must not wait for the next restart (the short crash soak once ended
    with no restart after the drop, and a referral was never made): the partition is read again
    from its base, counted in hub_consumer_rereads_total, again while the drop lasts."""
    import asyncio

    from hub import metrics

    consumer._committed_offset[TOPIC] = 2
    acked(consumer, 3, 4)
    sought = []

    async def seek_wait(partitions):
        sought.append(dict(partitions))

    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    clock = [1000.0]
    monkeypatch.setattr(faust_consumer.time, "monotonic", lambda: clock[0])
    counter = metrics.consumer_rereads.labels(TOPIC.topic)
    before = counter._value.get()

    async def commits():
        assert consumer._new_offset(TOPIC) is None
        await asyncio.sleep(0)
        assert sought == []  # not yet: it may still be on its way to the stream
        clock[0] += faust_consumer.DROPPED_AFTER + 1
        assert consumer._new_offset(TOPIC) is None
        await asyncio.sleep(0)
        assert sought == [{TOPIC: 2}]
        assert consumer._new_offset(TOPIC) is None
        await asyncio.sleep(0)
        assert len(sought) == 1  # one seek per DROPPED_AFTER
        clock[0] += faust_consumer.DROPPED_AFTER + 1
        consumer._new_offset(TOPIC)
        await asyncio.sleep(0)
        assert sought == [{TOPIC: 2}, {TOPIC: 2}]
        acked(consumer, 2)  # the record read again is processed
        assert consumer._new_offset(TOPIC) == 5
        await asyncio.sleep(0)
        assert not consumer._hub_seeks  # finished seeks are not kept

    with caplog.at_level(logging.INFO, logger=faust_consumer.__name__):
        asyncio.run(commits())
    assert counter._value.get() == before + 2
    assert [r.levelno for r in caplog.records if "never processed" in r.getMessage()] == [logging.WARNING, logging.INFO]


def test_after_a_rebalance_every_acknowledged_partition_is_read_again_from_its_base(consumer, monkeypatch):
    """aiokafka's seek to the committed offsets leaves a partition with nothing or 0 committed where
    its fetches had got to; records fetched before a rebalance and skipped by the stream (older
    generation) were then never read again (a fresh group lost offset 2 of the newcomers topic in the
    short crash soak). The hub seeks those partitions to their base itself."""
    import asyncio

    fresh, zero, trimmed, resumed = (TP("hub.newcomers.v1", i) for i in range(4))
    changelog = TP("hub-newcomer-state-changelog", 0)
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: topic == "hub.newcomers.v1")
    sought = []

    async def seek_to_committed():
        return {fresh: None, zero: 0, trimmed: 5, resumed: 9, changelog: None}

    async def earliest_offsets(*tps):
        assert changelog not in tps
        return {fresh: 0, zero: 0, trimmed: 8, resumed: 0}

    async def seek_wait(partitions):
        sought.append(dict(partitions))

    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer, "earliest_offsets", earliest_offsets)
    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    asyncio.run(consumer.perform_seek())
    assert sought == [{fresh: 0, zero: 0, trimmed: 8}]  # `resumed`: aiokafka has sought to 9 itself
    assert {tp: consumer._committed_offset[tp] for tp in (fresh, zero, trimmed, resumed)} == {fresh: 0, zero: 0, trimmed: 8, resumed: 9}
    assert changelog not in consumer._committed_offset


def test_an_offset_in_processing_is_not_reported(consumer, monkeypatch, caplog):
    consumer._committed_offset[TOPIC] = 50
    acked(consumer, 51)
    in_flight = Message(TOPIC.topic, TOPIC.partition, 50, 0.0, 0, [], b"k", b"v", None, tp=TOPIC)
    consumer._unacked_messages.add(in_flight)
    clock = [time.monotonic()]
    monkeypatch.setattr(faust_consumer.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger=faust_consumer.__name__):
        consumer._new_offset(TOPIC)
        clock[0] += faust_consumer.DROPPED_AFTER + 1
        assert consumer._new_offset(TOPIC) is None
    assert not [r for r in caplog.records if "never processed" in r.getMessage()]


def test_the_base_of_a_partition():
    a, b, c, d = (TP("t", i) for i in range(4))
    committed = {a: 7, b: 0, c: None, d: -1}
    assert faust_consumer._base_offsets(committed, {a: 0, b: 0, c: 3, d: 0}) == {a: 7, b: 0, c: 3, d: 0}
    assert faust_consumer._base_offsets({a: 7}, {a: 12}) == {a: 12}  # retention removed 7..11
    assert faust_consumer._base_offsets({c: None}, {}) == {c: None}


def test_the_table_manager_starts_recovery_without_faust_fixed_pause(monkeypatch):
    """The hub declares its tables before the app starts, so faust's 1 s pause at the table manager's
    start (for tables declared later) is skipped: the worker consumes about a second sooner."""
    import asyncio

    from faust.tables.manager import TableManager

    hub = HubApp(Settings(app_id="tables-first"), "kafka://127.0.0.1:1")
    assert hub.app.hub_tables_declared_first
    manager = hub.app.tables
    calls = []

    async def sleep(seconds):
        calls.append(("sleep", seconds))

    async def update_channels():
        calls.append("channels")

    class Recovery:
        async def start(self):
            calls.append("recovery")

    monkeypatch.setattr(manager, "sleep", sleep)
    monkeypatch.setattr(manager, "_update_channels", update_channels)
    monkeypatch.setattr(TableManager, "recovery", Recovery(), raising=False)
    asyncio.run(manager.on_start())
    assert calls == ["channels", "recovery"]
    hub.app.hub_tables_declared_first = False  # any other faust app keeps faust's behaviour
    calls.clear()
    asyncio.run(manager.on_start())
    assert calls[0] == ("sleep", 1.0)


def test_no_recovery_consistency_check_with_the_in_memory_store():
    """faust's check that a table's persisted offset is not above the changelog's high watermark is
    for persistent stores; with the in-memory store it only raced the broker (a crash soak saw
    4974 > 4973 in a rebalance, and the worker crashed). A persistent store must bring it back."""
    hub = HubApp(Settings(app_id="recovery-check"), "kafka://127.0.0.1:1")
    assert str(hub.app.conf.store).startswith("memory:")
    assert hub.app.conf.recovery_consistency_check is False


def test_faust_keeps_its_data_directory_under_hub_data_dir(tmp_path):
    """faust's default data directory is `<app id>-data` in the working directory: tests and benches
    left dozens of them in the checkout. The hub's goes under HUB_DATA_DIR."""
    hub = HubApp(Settings(app_id="datadir-test", data_dir=tmp_path), "kafka://127.0.0.1:1")
    assert hub.app.conf.datadir == tmp_path / "faust" / "datadir-test"
