"""The batch consumer's fetch wait (hub.adapters.kafka.consumer `_pace`): short while records flow,
back to the long wait once the topic has been quiet. The consumer here is a stand-in holding the
fetcher attribute aiokafka builds its fetch requests from; the real broker is in
tests/integration/test_batch_consumer.py."""

import inspect
from types import SimpleNamespace

from aiokafka.consumer.fetcher import Fetcher

from hub.adapters.kafka.consumer import BatchConsumer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def consumer(busy: int | None, idle: int = 100, idle_after: float = 1.0):
    clock = Clock()

    async def handle(records):  # pragma: no cover - not called
        pass

    service = BatchConsumer(name="t", topics=["t"], group_id="g", handle=handle, consumer_options={"fetch_max_wait_ms": idle},
                            busy_fetch_wait_ms=busy, idle_after=idle_after, clock=clock)
    service.consumer = SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=idle))
    return service, clock


def test_the_wait_is_short_while_records_flow_and_long_again_after_a_quiet_second():
    service, clock = consumer(busy=5)
    service._pace(False)
    assert service.fetch_wait_ms == 100  # quiet from the start: the long wait
    service._pace(True)
    assert service.fetch_wait_ms == 5  # records came: the next fetches wait little
    clock.now += 0.9
    service._pace(False)
    assert service.fetch_wait_ms == 5  # empty fetches within the second keep the short wait
    clock.now += 0.2
    service._pace(False)
    assert service.fetch_wait_ms == 100  # a second without records: back to the long wait
    service._pace(True)
    assert service.fetch_wait_ms == 5


def test_without_a_busy_wait_the_consumers_own_wait_is_left_alone():
    service, clock = consumer(busy=None)
    service._pace(True)
    assert service.fetch_wait_ms == 100


def test_pacing_before_the_consumer_has_a_fetcher_does_nothing():
    service, _ = consumer(busy=5)
    service.consumer = None
    service._pace(True)
    assert service.fetch_wait_ms is None


def test_aiokafka_builds_each_fetch_request_from_the_fetchers_wait():
    # the attribute `_pace` sets is private to aiokafka (pinned in pyproject.toml): if an upgrade
    # stopped reading it per request, the busy wait would silently do nothing
    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher._get_actions_per_node)
