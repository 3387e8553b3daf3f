"""Consumer lag per topic, the /metrics endpoint and its settings."""

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


def test_health_is_200_when_every_consumer_runs_and_503_naming_those_that_do_not():
    import urllib.error
    import urllib.request

    from hub.streams.ops_agents import MetricsEndpoint

    stopped: list[str] = []
    endpoint = MetricsEndpoint("127.0.0.1", 0, lambda: stopped)
    endpoint.start()
    base = endpoint.url.removesuffix("/metrics")
    try:
        with urllib.request.urlopen(base + "/health", timeout=5) as resp:
            assert resp.status == 200 and resp.read() == b"ok\n"
        stopped.append("detection")
        try:
            urllib.request.urlopen(base + "/health", timeout=5)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and b"detection" in exc.read()
        with urllib.request.urlopen(endpoint.url, timeout=5) as resp:
            assert b"hub_events_consumed_total" in resp.read()
    finally:
        endpoint.stop()


def test_a_batch_consumer_is_alive_only_while_its_processing_runs():
    import asyncio

    from hub.adapters.kafka.consumer import BatchConsumer

    from aiokafka.errors import ConsumerStoppedError

    class Stopping:  # a fetch that finds the consumer stopped once released: the processing task ends
        def __init__(self):
            self.release = asyncio.Event()

        async def getmany(self, **_):
            await self.release.wait()
            raise ConsumerStoppedError()

    class Consumer(BatchConsumer):
        async def connect(self):
            self.consumer = Stopping()

    async def check():
        consumer = Consumer(name="detection", topics=["t"], group_id="g", handle=None, consumer_options={})
        assert not consumer.alive  # not started
        await consumer.on_start()
        await asyncio.sleep(0)
        assert consumer.alive
        consumer.consumer.release.set()
        for _ in range(10):
            await asyncio.sleep(0)
        assert not consumer.alive  # its task ended

    asyncio.run(check())


def test_measure_sets_and_clears_the_gauge_per_topic():
    import asyncio
    from types import SimpleNamespace

    from hub import metrics
    from hub.streams.ops_agents import LagObserved, measure_consumer_lag

    detection = SimpleNamespace(lag=lambda: asyncio.sleep(0, {"test.lag.a": 3, "test.lag.b": 6}))
    routing = SimpleNamespace(lag=lambda: asyncio.sleep(0, {"test.lag.c": 4}))
    hub = SimpleNamespace(batch_consumers=[detection, routing])
    seen = LagObserved()
    assert asyncio.run(measure_consumer_lag(hub, seen)) == {"test.lag.a": 3, "test.lag.b": 6, "test.lag.c": 4}
    assert metrics.consumer_lag.labels("test.lag.b")._value.get() == 6
    detection.lag = lambda: asyncio.sleep(0, {"test.lag.a": 3})  # a rebalance gave b to another worker, and c's partitions too
    routing.lag = lambda: asyncio.sleep(0, {})
    assert asyncio.run(measure_consumer_lag(hub, seen)) == {"test.lag.a": 3}
    samples = {s.labels["topic"] for fam in metrics.REGISTRY.collect() if fam.name == "hub_consumer_lag_messages" for s in fam.samples}
    assert "test.lag.a" in samples and "test.lag.b" not in samples
    metrics.consumer_lag.remove("test.lag.a")
