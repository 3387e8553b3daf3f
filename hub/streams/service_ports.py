"""The ports of the use cases (`hub.services.ports`) on the hub's publisher and database: what the
stream entrypoints hand to the services. The publisher (`hub.adapters.kafka.publisher.Publisher`)
is the publishing port itself."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterable, Mapping

from hub import metrics
from hub.adapters.kafka.errors import Outage, failure_reason, is_outage
from hub.adapters.database import DatabaseCalls, with_database_retry
from hub.schemas.codec import CodecError
from hub.services.ports import Consumed, Failures
from hub.adapters.kafka.publisher import Publisher
from hub.adapters.kafka.publisher_check import PublisherCheck

FAILURES = Failures(is_outage=is_outage, reason=failure_reason)


class DeadLetterNotAcknowledged(Outage):
    """A dead letter the broker did not acknowledge: the batch is read again."""


class BatchDeadLetters:
    """The dead letters of one batch of a batch consumer: sent at once, awaited together before the
    batch is committed. Each record is counted once (`counted(reason)` and `hub_events_consumed_total`),
    however often the batch consumer's narrowing handles it; a record the publisher check refuses
    is counted by the hub, and by `counted(None)` too when `counts_refusals`."""

    def __init__(self, publisher: Publisher, check: PublisherCheck, topic: str, counted: Callable[[str | None], None] | None = None, *,
                 counts_refusals: bool = False) -> None:
        self.publisher = publisher
        self.check = check
        self.counted = counted
        self.counts_refusals = counts_refusals
        self.consumed_dead_letter = metrics.events_consumed.labels(topic, "dead_letter")
        self.sends: list = []

    async def refused(self, msg) -> bool:
        """The publisher check of one record (`PublisherCheck.refuse`): whether it was refused (dead-lettered)."""
        if not self.check.checks_publishers(msg.topic):
            return False
        first = not self.publisher.dead_lettered_already(msg)
        sent = await self.check.refuse(msg)
        if sent is None:
            return False
        self.sends.append(sent)
        if first and self.counts_refusals and self.counted is not None:
            self.counted(None)
        return True

    async def decoded(self, msg, schema: str) -> Consumed | None:
        """The record decoded, or None when the publisher check refused it or it does not decode (dead-lettered)."""
        if await self.refused(msg):
            return None
        try:
            return Consumed(msg, self.publisher.codec.decode(msg.value, schema).record, schema)
        except CodecError as exc:
            await self.send(msg, exc.reason, exc.message)
            return None

    async def send(self, source, reason: str, message: str) -> None:
        first = not self.publisher.dead_lettered_already(source)
        await self.publisher.dead_letter_acked(source, reason, message, self.sends)
        if first:
            self.consumed_dead_letter.inc()
            if self.counted is not None:
                self.counted(reason)

    async def kept(self) -> None:
        if any(isinstance(r, BaseException) for r in await asyncio.gather(*self.sends, return_exceptions=True)):
            # a record not processed and not kept: nothing of the batch is committed
            raise DeadLetterNotAcknowledged("a dead letter of this batch was not acknowledged by the broker or kept in the database")


class TopicsDeadLetters:
    """The dead letters of one batch of a batch consumer that reads several topics: a `BatchDeadLetters`
    per topic (each counts under its own topic), sent and awaited together."""

    def __init__(self, publisher: Publisher, check: PublisherCheck, topics: Iterable[str], counted: Callable[[str], Callable[[str | None], None] | None]) -> None:
        self.by_topic = {topic: BatchDeadLetters(publisher, check, topic, counted(topic)) for topic in topics}

    async def decoded(self, msg, schema: str) -> Consumed | None:
        return await self.by_topic[msg.topic].decoded(msg, schema)

    async def send(self, source, reason: str, message: str) -> None:
        await self.by_topic[source.topic].send(source, reason, message)

    async def kept(self) -> None:
        for dead in self.by_topic.values():
            await dead.kept()


def count_isolated(consumer, counted: Callable[[str], None]) -> None:
    """A record whose handling failed alone (the batch consumer narrowed its batch down to it) is
    dead-lettered by the hub (`consumer.isolate`), and counted by `counted(reason)` too."""
    dead_letter_alone = consumer.isolate

    async def isolate(record, exc) -> None:
        await dead_letter_alone(record, exc)
        counted(failure_reason(exc))

    consumer.isolate = isolate


class DatabaseStates:
    """Newcomer detection's person states (`hub.adapters.person_states`, synchronous SQL) awaited
    through `DatabaseCalls`; while the database is unreachable a call waits and retries (nothing
    is dead-lettered for it)."""

    def __init__(self, states, what: str) -> None:
        self.states = states
        self.what = what
        self.calls = DatabaseCalls(getattr(states, "engine", None), "person-states")

    async def _run(self, doing: str, fn, *args):
        return await with_database_retry(lambda: self.calls.run(fn, *args), f"{self.what}: {doing}")

    async def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        return await self._run("reading the persons' states", self.states.get_many, keys)

    async def write(self, changes: Mapping[str, str | None]) -> None:
        await self._run("writing the persons' states", self.states.write, changes)


class DatabaseCircumstances:
    """Routing's per-person circumstances (`hub.adapters.circumstances_store`, synchronous SQL) awaited
    through `DatabaseCalls`, like the ledger beside it: an unreachable database raises (the batch is
    read again)."""

    def __init__(self, store) -> None:
        self.store = store
        self.calls = DatabaseCalls(getattr(store, "engine", None), "person-circumstances")

    async def get_many(self, keys: Iterable[str]) -> dict:
        return await self.calls.run(self.store.get_many, keys)

    async def write(self, rows: Mapping, now) -> None:
        await self.calls.run(self.store.write, rows, now)


class DatabaseLedger:
    """The referral ledger (synchronous SQL) awaited through `DatabaseCalls`: each call is awaited
    before the next, so the order per key and "published only after the broker acknowledged" are
    those of sequential code. An unreachable database raises (the batch is read again)."""

    def __init__(self, ledger) -> None:
        self.ledger = ledger
        self.calls = DatabaseCalls(ledger.engine, "referral-ledger")

    async def record_many(self, items: list, now) -> list:
        return await self.calls.run(self.ledger.record_many, items, now)

    async def mark_published(self, referral_ids: list[str], now) -> None:
        await self.calls.run(self.ledger.mark_published, referral_ids, now)

    async def apply_status(self, status: dict, now) -> Any:
        return await self.calls.run(self.ledger.apply_status, status, now)
