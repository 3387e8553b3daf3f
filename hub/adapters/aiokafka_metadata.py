"""A fix for aiokafka's producer metadata: keep tracking every topic the process sends to.

`AIOKafkaClient._wait_on_metadata(topic)` returns early when the cluster metadata already knows
the topic, without adding it to the client's tracked topics. Right after start-up the client holds
metadata of *all* topics (it tracks none yet), so the first sends to existing topics are never
tracked; as soon as one new topic is added, metadata refreshes ask for the tracked topics only, the
untracked ones vanish from the cluster view, and a batch queued for them waits for a partition
leader that never comes (for faust's default 20 minutes). Seen as stalled workers and tests on the
embedded broker; the same code path runs against Apache Kafka.

`apply()` wraps the method so that the topic is tracked first; idempotent.
"""

from __future__ import annotations


def apply() -> None:
    from aiokafka.client import AIOKafkaClient

    original = AIOKafkaClient._wait_on_metadata
    if getattr(original, "_hub_tracks_topics", False):
        return

    async def _wait_on_metadata(self, topic):
        self._topics.add(topic)  # tracked from the first send on, so later refreshes keep it
        return await original(self, topic)

    _wait_on_metadata._hub_tracks_topics = True
    AIOKafkaClient._wait_on_metadata = _wait_on_metadata


apply()
