"""The worker consumer's fetch wait, which faust fixes at 1.5 s.

faust creates its worker consumer with `fetch_max_wait_ms=1500` and no setting to change it. A
fetch on partitions with nothing new is held that long at the broker; on the embedded broker a
record that arrives meanwhile does not end the wait, so at low load each hop of the pipeline
(population change -> newcomer -> referral) added up to 1.5 s (bench/RESULTS.md). `apply()` wraps
faust's factory so that an app with `hub_fetch_max_wait_ms` set gets that wait instead (aiokafka
reads the attribute when the consumer starts); idempotent, applied on import.
"""

from __future__ import annotations


def apply() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_hub_fetch_wait", False):
        return

    def _create_worker_consumer(self, transport):
        consumer = original(self, transport)
        wait = getattr(self.app, "hub_fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = int(wait)
        return consumer

    _create_worker_consumer._hub_fetch_wait = True
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


apply()
