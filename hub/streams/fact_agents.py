"""The fact intake's entrypoint: the facts other authorities report (jobseeker status, residence
permits, service needs) in, one RoutingFact per fact out to routing.

A batch consumer (`fact-intake`, group `<app id>.fact-intake`) reads the three input topics; each
record passes the publisher check and the codec (with the input's bounds), then the use case
(`hub.services.facts`) checks it, keys it with the person key and publishes its RoutingFact on
hub.routing-facts.v1. Bad input goes to the dead-letter topic with a reason code and the stream goes on.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from hub import metrics
from hub.domain.clock import utcnow
from hub.schemas import facts as contract
from hub.schemas import topics
from hub.services.facts import FactIntake
from hub.streams.app import HubApp
from hub.streams.service_ports import FAILURES, TopicsDeadLetters, count_isolated

CONSUMER_NAME = "fact-intake"  # the batch consumer of the fact inputs; its group is `<app id>.fact-intake`


@dataclass
class FactsObserved:
    """What the fact intake did in this process (tests, demo summary)."""

    consumed: Counter = field(default_factory=Counter)  # (topic, outcome)
    dead_letters: Counter = field(default_factory=Counter)  # reason

    def dead_lettered(self, topic: str) -> Callable[[str | None], None]:
        def counted(reason: str | None) -> None:
            self.dead_letters[reason or "forbidden"] += 1
            self.consumed[(topic, "dead_letter")] += 1
        return counted


def register(hub: HubApp, *, clock: Callable[[], dt.datetime] = utcnow, batch_size: int = 200,
             facts_topic: str = topics.ROUTING_FACTS) -> FactsObserved:
    """Declare the fact intake on the hub's app: a batch consumer of the fact input topics (batches
    of up to `batch_size` records, what has been fetched)."""
    seen = FactsObserved()
    intake = FactIntake(hub.publisher, FAILURES, person_key_secret=hub.settings.person_key_secret, clock=clock,
                        skew=hub.settings.clock_skew_delta, facts_topic=facts_topic)
    topic_of_schema = {schema: topic for topic, schema in contract.SCHEMA_OF_TOPIC.items()}
    accepted = {topic: metrics.events_consumed.labels(topic, "accepted") for topic in topics.FACT_TOPICS}

    async def take_batch(records) -> None:
        dead = TopicsDeadLetters(hub.publisher, hub.publisher_check, topics.FACT_TOPICS, seen.dead_lettered)
        facts = [item for msg in records if (item := await dead.decoded(msg, contract.SCHEMA_OF_TOPIC[msg.topic])) is not None]
        taken = await intake.take(facts, dead)
        for schema, n in taken.published.items():
            topic = topic_of_schema[schema]
            accepted[topic].inc(n)
            seen.consumed[(topic, "accepted")] += n

    consumer = hub.batch_consumer(CONSUMER_NAME, list(topics.FACT_TOPICS), take_batch, batch_size)
    count_isolated(consumer, lambda reason: seen.dead_letters.update([reason]))
    return seen
