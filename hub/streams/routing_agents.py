"""Routing's entrypoints: newcomers and routing facts -> referrals on per-recipient topics; referral
statuses -> the ledger.

Two batch consumers decode their records, hand them to the use cases (`hub.services.routing`) and
count what they did; timers keep the authorities' open/overdue gauges current. The newcomers'
consumer reads hub.newcomers.v1 and hub.routing-facts.v1 together, co-partitioned (partition i of
both to one member), so one member takes a person's newcomers and facts in order and keeps the
person's circumstances (`hub.adapters.circumstances_store`). Bad input goes to the dead-letter topic
with a reason code and the stream goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from hub import metrics
from hub.adapters.circumstances_store import SqlCircumstances
from hub.adapters.database import create_engine
from hub.adapters.referral_ledger import ReferralLedger, refresh_gauges
from hub.routing.model import FINLAND
from hub.routing.reference import Reference
from hub.routing.rules import Rules
from hub.adapters.kafka.errors import failure_reason
from hub.services.routing import Routed, Routing, StatusApplied
from hub.schemas import topics
from hub.domain.clock import utcnow
from hub.streams.app import HubApp
from hub.streams.service_ports import BatchDeadLetters, DatabaseCircumstances, DatabaseLedger, TopicsDeadLetters, count_isolated

log = logging.getLogger(__name__)

CONSUMER_NAME = "routing-newcomers"  # the batch consumer of newcomers and routing facts; its group is `<app id>.routing-newcomers`
STATUS_CONSUMER_NAME = "routing-referral-status"  # the batch consumer of referral statuses; group `<app id>.routing-referral-status`


class RoutingObserved:
    """What the routing streams did in this process (tests, demo summary)."""

    def __init__(self, ledger: ReferralLedger) -> None:
        self.ledger = ledger
        self.consumed: Counter = Counter()  # (topic, outcome)
        self.referrals: Counter = Counter()  # authority id -> referrals published for the first time
        self.published: int = 0
        self.dead_letters: Counter = Counter()  # reason
        self.changed: set[str] = set()  # authorities whose open/overdue gauges are to be recounted

    def count(self, topic: str, outcome: str, n: int = 1) -> None:
        if n:
            metrics.events_consumed.labels(topic, outcome).inc(n)
            self.consumed[(topic, outcome)] += n

    def dead_lettered(self, topic: str) -> Callable[[str], None]:
        """Counts a dead letter of `topic` by its reason (the metric is counted where it is sent)."""
        def counted(reason: str) -> None:
            self.dead_letters[reason] += 1
            self.consumed[(topic, "dead_letter")] += 1
        return counted

    def routed(self, topic: str, out: Routed, facts_topic: str | None = None) -> None:
        self.published += out.published
        for referral in out.created:
            metrics.referrals.labels(referral["to"], referral["purpose"]).inc()
            self.referrals[referral["to"]] += 1
        for withdrawal in out.withdrawals:
            metrics.referrals_withdrawn.labels(withdrawal["to"], withdrawal["cause"]).inc()
        for update in out.updates:
            metrics.referrals_updated.labels(update["to"]).inc()
        for seconds in out.waits:
            metrics.registration_to_referral.observe(seconds)
        self.changed.update(out.changed)
        self.count(topic, "duplicate", out.duplicates)
        self.count(topic, "routed", out.routed - out.duplicates)
        if facts_topic is not None:
            self.count(facts_topic, "duplicate", out.facts_duplicates)
            self.count(facts_topic, "routed", out.facts_routed - out.facts_duplicates)  # the person routed again
            self.count(facts_topic, "kept", out.facts_kept)  # waits for the person's newcomer

    def applied(self, topic: str, out: StatusApplied) -> None:
        if not out.accepted:
            return  # counted as a dead letter
        self.count(topic, out.code)
        if out.changed:
            self.changed.add(out.changed)
        if out.assessment_seconds is not None:
            metrics.referral_to_assessment.observe(out.assessment_seconds)


def register(
    hub: HubApp,
    *,
    database_url: str | None = None,
    ledger: ReferralLedger | None = None,
    circumstances: SqlCircumstances | None = None,
    rules: Rules | None = None,
    reference: Reference | None = None,
    newcomers_topic: str = topics.NEWCOMERS,
    facts_topic: str = topics.ROUTING_FACTS,
    status_topic: str = topics.REFERRAL_STATUS,
    topic_for: Callable[[str], str] = topics.referral_topic,
    clock: Callable[[], dt.datetime] = utcnow,
    gauge_interval: float = 60.0,
    changed_gauge_interval: float = 1.0,
    batch_size: int = 200,
) -> RoutingObserved:
    """Declare the routing streams on the hub's app: batch consumers (`hub.adapters.kafka.consumer`)
    of the newcomers (batches of up to `batch_size`, what has been fetched) and of the referral
    statuses (applied one at a time, in offset order). The newcomers' consumer reads the routing facts
    too, and keeps the persons' circumstances in `circumstances` (by default in the ledger's database).
    The tables must exist (`hub db upgrade`)."""
    if ledger is None:
        ledger = ReferralLedger(create_engine(database_url or hub.settings.resolved_database_url()))
    if circumstances is None:
        circumstances = SqlCircumstances(ledger.engine)
    seen = RoutingObserved(ledger)
    routing = Routing(DatabaseLedger(ledger), hub.publisher, clock=clock, skew=hub.settings.clock_skew_delta, rules=rules,
                      reference=reference, topic_for=topic_for, circumstances=DatabaseCircumstances(circumstances))
    schema_of = {newcomers_topic: "Newcomer", facts_topic: "RoutingFact"}

    async def route_batch(records) -> None:
        dead = TopicsDeadLetters(hub.publisher, hub.publisher_check, (newcomers_topic, facts_topic), seen.dead_lettered)
        items = [item for msg in records if (item := await dead.decoded(msg, schema_of[msg.topic])) is not None]
        seen.routed(newcomers_topic, await routing.route_batch(items, dead), facts_topic)

    async def apply_statuses(records) -> None:
        dead = BatchDeadLetters(hub.publisher, hub.publisher_check, status_topic, seen.dead_lettered(status_topic))
        for msg in records:
            status = await dead.decoded(msg, "ReferralStatus")
            if status is not None:
                seen.applied(status_topic, await routing.apply_status(status, dead))
        await dead.kept()

    count_isolated(hub.batch_consumer(STATUS_CONSUMER_NAME, status_topic, apply_statuses, batch_size), seen.dead_lettered(status_topic))
    # the newcomers' consumer is declared last: `hub.batch_consumers[-1]` (tests, tools) is routing's newcomers
    consumer = hub.batch_consumer(CONSUMER_NAME, [newcomers_topic, facts_topic], route_batch, batch_size, co_partitioned=True)
    _count_isolated_by_topic(consumer, seen)
    _gauge_timers(hub, seen, ledger, clock, gauge_interval, changed_gauge_interval)
    return seen


def _count_isolated_by_topic(consumer, seen: RoutingObserved) -> None:
    """`count_isolated` for a consumer of several topics: the record counted under its own topic."""
    dead_letter_alone = consumer.isolate

    async def isolate(record, exc) -> None:
        await dead_letter_alone(record, exc)
        seen.dead_lettered(record.topic)(failure_reason(exc))

    consumer.isolate = isolate


def _gauge_timers(hub: HubApp, seen: RoutingObserved, ledger: ReferralLedger, clock, interval: float, changed_interval: float) -> None:
    """The authorities' open/overdue gauges: those whose counts changed are read again at most once per
    `changed_interval`, every authority once per `interval` (overdue grows with the calendar, not only
    with events). Each refresh reads the counts table (one row per authority, kept by the ledger's
    transactions) and, once a day, moves its day: the referrals that fell due since, by an index range
    on their due date. Neither grows with the ledger."""
    # a thread of its own: the day's move waits for the ledger writers counting against the old day,
    # and must not hold up the event loop meanwhile
    gauges_db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="referral-gauges")

    async def recount(authorities: set[str] | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(gauges_db, refresh_gauges, ledger, today(clock()), authorities)

    @hub.app.timer(interval=changed_interval, name="routing-referral-gauges-changed")
    async def changed_gauges():
        if not seen.changed:
            return
        authorities = set(seen.changed)
        seen.changed.clear()
        try:
            await recount(authorities)
        except Exception as exc:  # noqa: BLE001 - a failed recount must not stop the worker
            seen.changed.update(authorities)  # recounted on the next tick
            log.warning("referral gauges not refreshed this time: %s", type(exc).__name__)

    @hub.app.timer(interval=interval, name="routing-referral-gauges")
    async def gauges():
        await recount()


def today(now: dt.datetime) -> dt.date:
    """The calendar day in Finland, against which due dates are compared."""
    return now.astimezone(FINLAND).date()
