"""Take in the facts other authorities report about a person (a jobseeker status from the employment
authority, a residence permit from Migri, service needs from a municipality or a wellbeing area) and
hand each on to routing as a RoutingFact keyed by the person's pseudonymous key.

Each decoded input record (its publisher checked and its bounds kept before it got here) is checked
(`hub.routing.circumstances.check_input`: the identity code, dates, the fields routing needs; its
`occurred_at` not after the hub's clock), keyed with the hub's person key (as detection keys the
person's newcomers, so both land on the same partition of the co-partitioned topics) and published
under an event id derived from the input's, so a replay repeats it and routing removes the repeat. A
record that fails a check, or whose RoutingFact the broker refuses for the record's own sake, is
dead-lettered with its reason; the batch is done once every RoutingFact is acknowledged and every
dead letter exists. An outage raises: the batch is read again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from hub.domain import hetu
from hub.domain.clock import check_not_future
from hub.domain.errors import Rejected
from hub.routing.circumstances import check_input, fact_record
from hub.services.ports import Clock, Consumed, DeadLetters, Failures, Publisher
from hub.schemas import topics

log = logging.getLogger(__name__)

WHAT = "fact intake"


@dataclass
class Taken:
    """What taking a batch of facts did."""

    published: Counter = field(default_factory=Counter)  # input schema name -> RoutingFacts published (acknowledged)


class FactIntake:
    """The use case "take in a batch of facts" over its ports."""

    def __init__(self, publisher: Publisher, failures: Failures, *, person_key_secret: str, clock: Clock, skew: dt.timedelta,
                 facts_topic: str = topics.ROUTING_FACTS) -> None:
        self.publisher = publisher
        self.failures = failures
        self.secret = person_key_secret
        self.clock = clock
        self.skew = skew
        self.facts_topic = facts_topic

    async def take(self, facts: Sequence[Consumed], dead_letters: DeadLetters) -> Taken:
        """Check and publish `facts` (decoded JobseekerStatus, ResidencePermit and ServiceNeeds
        records, `Consumed.name` their schema, in the order read)."""
        now = self.clock()
        sends: list[tuple[Consumed, object]] = []
        for item in facts:
            try:
                check_not_future(item.record.get("occurred_at"), now, skew=self.skew)
                check_input(item.name, item.record)
                key = hetu.person_key(item.record["person_id"], self.secret)
                ack = await self.publisher.publish(self.facts_topic, "RoutingFact", fact_record(item.name, item.record, key, now), key)
            except Rejected as exc:
                await dead_letters.send(item.source, exc.reason, f"{item.name}: {exc.message}" if not exc.message.startswith(item.name) else exc.message)
                continue
            except Exception as exc:  # noqa: BLE001 - one record's failure must not stop the batch
                await self._failed(item, exc, dead_letters)
                continue
            sends.append((item, ack))
        out = Taken()
        results = await asyncio.gather(*(ack for _, ack in sends), return_exceptions=True)
        for (item, _), result in zip(sends, results):
            if isinstance(result, BaseException):
                await self._failed(item, result, dead_letters)
            else:
                out.published[item.name] += 1
        await dead_letters.kept()
        return out

    async def _failed(self, item: Consumed, exc: BaseException, dead_letters: DeadLetters) -> None:
        """An outage is raised again (the batch is read again); any other error is the record's own:
        dead-lettered, the error's type named, never its text (it may quote personal data)."""
        if self.failures.is_outage(exc):
            raise exc
        log.error("%s failed with %s on %s %s; record sent to dead letters", WHAT, type(exc).__name__, item.name, item.record.get("event_id"))
        await dead_letters.send(item.source, self.failures.reason(exc),
                                f"{WHAT} could not hand the {item.name} on to routing ({type(exc).__name__}); the record is kept for replay")
