"""Routing agents: newcomers -> referrals on per-recipient topics; referral statuses -> the ledger.

Thin by design: decode, call `route()` (pure), record in the ledger (idempotent, a batch of
newcomers per transaction), publish, count. Bad input goes to the dead-letter topic with a reason code and the agent goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from hub import metrics
from hub.adapters.batch_consumer import failure_reason
from hub.adapters.database import DatabaseCalls, create_engine
from hub.adapters.referral_ledger import ReferralLedger, refresh_gauges
from hub.domain.clock import FutureDate, check_not_future
from hub.routing.engine import route
from hub.routing.model import FINLAND, InputError, RoutingInput
from hub.routing.reference import Reference, default_reference
from hub.routing.rules import Rules, default_rules
from hub.schemas.codec import CodecError
from hub.schemas import topics
from hub.streams.app import HubApp, consumed_record
from hub.domain.clock import utcnow

log = logging.getLogger(__name__)

CONSUMER_NAME = "routing-newcomers"  # the batch consumer of newcomers; its group is `<app id>.routing-newcomers`


class RoutingObserved:
    """What the routing agents did in this process (tests, demo summary)."""

    def __init__(self, ledger: ReferralLedger) -> None:
        self.ledger = ledger
        self.consumed: Counter = Counter()  # (topic, outcome)
        self.referrals: Counter = Counter()  # authority id -> referrals published for the first time
        self.published: int = 0
        self.dead_letters: Counter = Counter()  # reason


def register(
    hub: HubApp,
    *,
    database_url: str | None = None,
    ledger: ReferralLedger | None = None,
    rules: Rules | None = None,
    reference: Reference | None = None,
    newcomers_topic: str = topics.NEWCOMERS,
    status_topic: str = topics.REFERRAL_STATUS,
    topic_for: Callable[[str], str] = topics.referral_topic,
    clock: Callable[[], dt.datetime] = utcnow,
    gauge_interval: float = 60.0,
    changed_gauge_interval: float = 1.0,
    batch_size: int = 200,
) -> RoutingObserved:
    """Declare the routing agents on the hub's app. The ledger's tables must exist (`hub db upgrade`).

    Newcomers are routed in batches of up to `batch_size` records, read by a batch consumer
    (`hub.adapters.batch_consumer`, group `<app id>.routing-newcomers`) rather than a faust agent:
    a batch is what has been fetched, a lone newcomer does not wait for others. Referral statuses
    stay a faust agent (one at a time, few)."""
    if ledger is None:
        ledger = ReferralLedger(create_engine(database_url or hub.settings.resolved_database_url()))
    rules = rules or default_rules()
    reference = reference or default_reference()
    seen = RoutingObserved(ledger)
    skew = hub.settings.clock_skew_delta
    # authorities whose open/overdue counts may have changed since their gauges were last set:
    # recounted by a timer (at most once per `changed_gauge_interval`), not once per event
    changed: set[str] = set()

    # The ledger is synchronous SQL, one call at a time: on the event loop for SQLite, on a thread of
    # its own for PostgreSQL (`DatabaseCalls`). Each agent awaits its call before it takes the next
    # event: the order per key, and "recorded as published only after the broker acked", are those
    # of the sequential code.
    db = DatabaseCalls(ledger.engine, "referral-ledger")
    # The gauges' recount reads every referral of the authorities it counts: it grows with the ledger
    # (~1.4 ms per 1,000 referrals on SQLite), so it has its own thread; when it shared the ledger's thread it held
    # up every routing batch behind it (latency p50 0.3 s after a 1M-event run; bench/RESULTS.md, session 8)
    gauges_db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="referral-gauges")

    in_db = db.run

    async def recount(authorities: set[str] | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(gauges_db, refresh_gauges, ledger, today(clock()), authorities)

    async def decode(event, topic: str, expect: str, sends: list | None = None):
        msg = consumed_record(event)
        try:
            return hub.codec.decode(msg.value, expect).record
        except CodecError as exc:
            await reject(event, topic, exc.reason, exc.detail, sends)
            return None

    async def reject(event, topic: str, reason: str, message: str, sends: list | None = None) -> None:
        """Dead-letter a faust event or a consumed record; its send future goes to `sends` when given,
        else it is awaited until the dead letter exists."""
        msg = consumed_record(event)
        first = not hub.dead_lettered_already(msg)  # a narrowed-down batch is handled again: count each record once
        await hub.dead_letter_acked(msg, reason, message, sends)
        if first:
            metrics.events_consumed.labels(topic, "dead_letter").inc()
            seen.dead_letters[reason] += 1
            seen.consumed[(topic, "dead_letter")] += 1

    def consumed(topic: str, outcome: str, n: int = 1) -> None:
        if n:
            metrics.events_consumed.labels(topic, outcome).inc(n)
            seen.consumed[(topic, outcome)] += n

    async def route_batch(records) -> None:
        # a batch at a time (read by a batch consumer, `hub.adapters.batch_consumer`): one ledger
        # transaction, every referral's send in flight together, one mark_published. The batch's
        # offsets are committed only after it is done, so a crash anywhere in it reads the batch
        # again, and the ledger sends again exactly what was not marked published.
        routed = []  # (record, newcomer, decisions) in offset order
        dead = []  # send futures of the batch's dead letters: acknowledged before the commit
        now = clock()
        for msg in records:
            if hub.checks_publishers(msg.topic):
                refused = await hub.refuse(msg)
                if refused is not None:
                    dead.append(refused)
                    continue
            try:  # plain calls per record; a coroutine only for a dead letter
                record = hub.codec.decode(msg.value, "Newcomer").record
            except CodecError as exc:
                await reject(msg, newcomers_topic, exc.reason, exc.detail, dead)
                continue
            try:
                newcomer = RoutingInput.from_record(record)
                check_not_future(newcomer.occurred_at, now, skew=skew)
                if not newcomer.person_key:
                    raise InputError("missing_person_key", "the Newcomer has an empty person_key; the detector must set the pseudonymous key")
                decisions = route(newcomer, rules, reference)
            except InputError as exc:
                await reject(msg, newcomers_topic, exc.code, exc.message, dead)
                continue
            except FutureDate as exc:
                await reject(msg, newcomers_topic, exc.reason, f"Newcomer: {exc.message}", dead)
                continue
            routed.append((record, newcomer, decisions))
        await asyncio.gather(*dead)  # kept (acknowledged) before the batch is committed; else it is read again
        if not routed:
            return
        done = await in_db(ledger.record_many, [(n, d) for _, n, d in routed], now)
        sent, published = [], []
        for (record, newcomer, _), recorded in zip(routed, done):
            for referral in recorded.to_publish:
                # the identity code is stored nowhere in the ledger; it travels from the newcomer
                referral = dict(referral, person_id=record.get("person_id"))
                sent.append(await hub.publish(topic_for(referral["to"]), "Referral", referral, key=newcomer.person_key))
                published.append(referral["referral_id"])
        await asyncio.gather(*sent)  # delivered (acks=all) before the ledger says so
        await in_db(ledger.mark_published, published, now)
        seen.published += len(published)
        duplicates = 0
        for (_, newcomer, _), recorded in zip(routed, done):
            for referral in recorded.created:
                metrics.referrals.labels(referral["to"], referral["purpose"]).inc()
                seen.referrals[referral["to"]] += 1
            if recorded.created and newcomer.occurred_at is not None:
                metrics.registration_to_referral.observe(max(0.0, (now - newcomer.occurred_at).total_seconds()))
            duplicates += recorded.duplicate
            changed.update(r["to"] for r in recorded.created)
            changed.update(recorded.superseded_authorities)
        consumed(newcomers_topic, "duplicate", duplicates)
        consumed(newcomers_topic, "routed", len(routed) - duplicates)

    async def apply_status(event) -> None:
        record = await decode(event, status_topic, "ReferralStatus")
        if record is None:
            return
        now = clock()
        try:
            check_not_future(record.get("occurred_at"), now, skew=skew)
        except FutureDate as exc:
            await reject(event, status_topic, exc.reason, f"ReferralStatus: {exc.message}")
            return
        outcome = await in_db(ledger.apply_status, record, now)
        if not outcome.accepted:
            await reject(event, status_topic, outcome.code, outcome.message)
            return
        consumed(status_topic, outcome.code)
        if outcome.code == "applied":
            changed.add(record["authority"])
            if outcome.state == "completed" and outcome.purpose == "initial_assessment" and outcome.referral_created_at is not None:
                metrics.referral_to_assessment.observe(_seconds_between(outcome.referral_created_at, record.get("occurred_at") or now))

    @hub.app.agent(hub.topic(status_topic), name="routing-referral-status")
    async def statuses(stream):
        async for event in stream.events():
            # an outage is waited out; a status the ledger cannot take (a value the database refuses) is dead-lettered
            await hub.handle_safely(event, apply_status, "routing: applying a referral status")

    consumer = hub.batch_consumer(CONSUMER_NAME, newcomers_topic, route_batch, batch_size)
    dead_letter_alone = consumer.isolate

    async def isolate(record, exc) -> None:
        """A newcomer whose routing failed alone (the batch narrowed down to it): dead-lettered by the hub, counted here too."""
        await dead_letter_alone(record, exc)
        seen.dead_letters[failure_reason(exc)] += 1
        seen.consumed[(newcomers_topic, "dead_letter")] += 1

    consumer.isolate = isolate

    @hub.app.timer(interval=changed_gauge_interval, name="routing-referral-gauges-changed")
    async def changed_gauges():
        if not changed:
            return
        authorities = set(changed)
        changed.clear()
        try:
            await recount(authorities)
        except Exception as exc:  # noqa: BLE001 - a failed recount must not stop the worker
            changed.update(authorities)  # recounted on the next tick
            log.warning("referral gauges not refreshed this time: %s", type(exc).__name__)

    @hub.app.timer(interval=gauge_interval, name="routing-referral-gauges")
    async def gauges():
        # overdue grows with the calendar, not only with events: recount every authority now and then
        await recount()

    return seen


def _seconds_between(start: dt.datetime, end: dt.datetime) -> float:
    # SQLite gives back naive datetimes: the ledger writes UTC
    start, end = (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc) for t in (start, end))
    return max(0.0, (end - start).total_seconds())


def today(now: dt.datetime) -> dt.date:
    """The calendar day in Finland, against which due dates are compared."""
    return now.astimezone(FINLAND).date()
