"""Consumer lag per topic (pure part), the /metrics endpoint and its settings."""

from collections import namedtuple

from hub.streams.ops_agents import lag_by_topic

TP = namedtuple("TP", "topic partition")


def test_lag_sums_partitions_per_topic():
    end = {TP("a", 0): 10, TP("a", 1): 5, TP("b", 0): 7}
    nxt = {TP("a", 0): 4, TP("a", 1): 5, TP("b", 0): 7}
    assert lag_by_topic(end, nxt) == {"a": 6, "b": 0}


def test_nothing_committed_counts_from_zero_and_unknown_end_is_skipped():
    assert lag_by_topic({TP("a", 0): 3, TP("b", 0): None}, {}) == {"a": 3}


def test_lag_is_never_negative():
    # a commit may land before the next end-offset answer
    assert lag_by_topic({TP("a", 0): 3}, {TP("a", 0): 4}) == {"a": 0}


def test_metrics_address_and_port_come_from_the_environment():
    from hub.config import Settings

    assert (Settings.from_env({}).metrics_addr, Settings.from_env({}).metrics_port) == ("127.0.0.1", 9108)
    s = Settings.from_env({"HUB_METRICS_ADDR": "0.0.0.0", "HUB_METRICS_PORT": "0"})
    assert (s.metrics_addr, s.metrics_port) == ("0.0.0.0", 0)


def test_a_taken_port_is_reported_with_the_setting_to_change():
    import socket
    import urllib.request

    import pytest

    from hub.streams.ops_agents import MetricsEndpoint, MetricsPortUnavailable

    first = MetricsEndpoint("127.0.0.1", 0)
    port = first.start()
    try:
        with urllib.request.urlopen(first.url, timeout=5) as resp:
            assert b"hub_events_consumed_total" in resp.read()
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        try:
            with pytest.raises(MetricsPortUnavailable, match="HUB_METRICS_PORT"):
                MetricsEndpoint("127.0.0.1", taken.getsockname()[1]).start()
        finally:
            taken.close()
    finally:
        first.stop()
    assert first.port == port and first._server is None


class _Consumer:
    """Stand-in for faust's consumer: only what measure_consumer_lag reads (no broker involved)."""

    def __init__(self, end, committed, earliest, assigned):
        self.end, self._committed_offset, self.earliest, self.assigned = end, committed, earliest, assigned
        self.randomly_assigned_topics = {"app-__assignor-__leader"}

    def assignment(self):
        return set(self.assigned)

    async def highwaters(self, *tps):
        return {tp: self.end[tp] for tp in tps}

    async def earliest_offsets(self, *tps):
        return {tp: self.earliest[tp] for tp in tps}


def test_measure_sets_and_clears_the_gauge_per_topic():
    import asyncio
    from types import SimpleNamespace

    from hub import metrics
    from hub.streams.ops_agents import LagObserved, measure_consumer_lag

    a, b, leader = TP("test.lag.a", 0), TP("test.lag.b", 0), TP("app-__assignor-__leader", 0)
    consumer = _Consumer(end={a: 10, b: 8, leader: 3}, committed={a: 7}, earliest={b: 2, leader: 0}, assigned=[a, b, leader])
    batch = SimpleNamespace(lag=lambda: asyncio.sleep(0, {"test.lag.c": 4}))  # a batch consumer (newcomer detection): its own measure
    hub = SimpleNamespace(app=SimpleNamespace(consumer=consumer, monitor=SimpleNamespace(tp_committed_offsets={a: 6}), tables={}),
                          batch_consumers=[batch])
    seen = LagObserved()
    assert asyncio.run(measure_consumer_lag(hub, seen)) == {"test.lag.a": 3, "test.lag.b": 6, "test.lag.c": 4}  # b: nothing committed, from the earliest
    assert metrics.consumer_lag.labels("test.lag.b")._value.get() == 6
    consumer.assigned = [a]  # a rebalance gave b to another worker, and c's partitions too
    batch.lag = lambda: asyncio.sleep(0, {})
    assert asyncio.run(measure_consumer_lag(hub, seen)) == {"test.lag.a": 3}
    samples = {s.labels["topic"] for fam in metrics.REGISTRY.collect() if fam.name == "hub_consumer_lag_messages" for s in fam.samples}
    assert "test.lag.a" in samples and "test.lag.b" not in samples
    metrics.consumer_lag.remove("test.lag.a")
