"""Newcomer detection: population changes in, newcomers out, one state row per person (in the hub database).

Thin wiring of the pure detection (`hub.newcomers.detection`) to a batch consumer of the
population-changes topic (`hub.adapters.batch_consumer`), the person states (`hub.adapters.person_states`)
and the app's producer."""

from __future__ import annotations

import asyncio
import logging
import time

from collections import Counter
from dataclasses import dataclass, field

from hub import metrics
from hub.adapters.batch_consumer import Outage, failure_reason, is_outage
from hub.adapters.database import DatabaseCalls, create_engine, with_database_retry
from hub.adapters.person_states import PersonStates, SqlPersonStates
from hub.domain import population_change
from hub.newcomers.detection import newcomer_record, person_keys, step
from hub.schemas.codec import CodecError
from hub.schemas import topics
from hub.streams.app import HubApp
from hub.domain.clock import utcnow

log = logging.getLogger(__name__)

CONSUMER_NAME = "newcomer-detection"  # the batch consumer; its group is `<app id>.newcomer-detection`


class DeadLetterNotAcknowledged(Outage):
    """A dead letter the broker did not acknowledge: the batch is read again."""


@dataclass
class NewcomerObserved:
    """What detection did in this process (demo summary, tests)."""

    states: object = None  # the PersonStates detection reads and writes
    consumed: int = 0
    newcomers: Counter = field(default_factory=Counter)  # municipality code -> arrived
    moved: int = 0
    dead_letters: int = 0
    first_at: float | None = None  # time.monotonic() when the first batch reached detection (benchmarks)


@dataclass
class _Batch:
    stored: dict = field(default_factory=dict)  # person key -> state JSON, as stored before this batch
    states: dict = field(default_factory=dict)  # person key -> state JSON (None: removed) written by this batch so far
    steps: list = field(default_factory=list)  # (consumed record, Step, monotonic start), in offset order
    sends: list = field(default_factory=list)  # (index of the step, person key, send future)


def register(hub: HubApp, window_days: int | None = None, *, states: PersonStates | None = None, database_url: str | None = None,
             batch_size: int = 200) -> NewcomerObserved:
    """Declare newcomer detection on the hub's app. The persons' states live in `states` (by default
    the hub database, `hub.adapters.person_states`; its table must exist: `hub db upgrade`). Changes
    are read in batches of up to `batch_size` records (what has been fetched: a lone change does not
    wait for others) by a batch consumer (`hub.adapters.batch_consumer`), not a faust agent: faust's
    per-record machinery cost more than detection itself (bench/RESULTS.md, session 6)."""
    from hub.newcomers.detection import DEFAULT_WINDOW_DAYS

    window = window_days or DEFAULT_WINDOW_DAYS
    secret = hub.settings.person_key_secret
    skew = hub.settings.clock_skew_delta
    if states is None:
        states = SqlPersonStates(create_engine(database_url or hub.settings.resolved_database_url()))
    seen = NewcomerObserved(states=states)
    # the states are synchronous SQL, one call at a time: on the event loop for SQLite, on a thread of
    # their own for PostgreSQL (`DatabaseCalls`); while the database is unreachable the batch waits
    # and retries (nothing is dead-lettered for it)
    db = DatabaseCalls(getattr(states, "engine", None), "person-states")

    async def in_db(what: str, fn, *args):
        return await with_database_retry(lambda: db.run(fn, *args), f"newcomer detection: {what}")

    topic = topics.POPULATION_CHANGES
    # the labelled series this stream counts, looked up once (labels() per record was ~5 % of a worker)
    consumed_ok = metrics.events_consumed.labels(topic, "ok")
    consumed_newcomer = metrics.events_consumed.labels(topic, "newcomer")
    latency = metrics.processing_latency.labels(topic)

    async def detect_batch(records) -> None:
        # a batch at a time: its persons' states are read in one query, its newcomers sent together
        # and acknowledged once, then the states written in one transaction; the batch consumer
        # commits the offsets after that. Per record, plain calls; a coroutine only where a record
        # is sent (a newcomer, a dead letter): this loop carries every population change
        if seen.first_at is None:
            seen.first_at = time.monotonic()
        batch = _Batch()
        dead = []  # send futures of this batch's dead letters: acknowledged before the commit
        checked = []  # (consumed record, decoded record, person keys, monotonic start) of those that passed the checks
        now = utcnow()
        for msg in records:
            started = time.monotonic()
            try:
                first = not hub.dead_lettered_already(msg)  # a narrowed-down batch is handled again: count each record once
                if hub.checks_publishers(msg.topic):
                    refused = await hub.refuse(msg)
                    if refused is not None:
                        dead.append(refused)
                        seen.dead_letters += first
                        continue
                record, keys, rejected = check(msg, now)
                if rejected is None:
                    checked.append((msg, record, keys, started))
                else:
                    dead.append(await hub.dead_letter_message(msg, *rejected))
                    if first:
                        _count_dead_letter()
            except Exception as exc:  # noqa: BLE001 - as hub.handle_safely: a worker must survive any single record
                await hub.internal_error(msg, "newcomer detection", exc, dead)
            finally:
                seen.consumed += 1
        wanted = {k for _, _, keys, _ in checked for k in keys if k}
        batch.stored = await in_db("reading the persons' states", states.get_many, wanted) if wanted else {}

        def lookup(key: str):
            """The person's state as of this point of the batch: its own writes first, then the store."""
            return batch.states[key] if key in batch.states else batch.stored.get(key)

        for msg, record, keys, started in checked:
            try:
                done = step(record, lookup, secret, window, keys=keys)
                for ev in done.found:
                    # acknowledged before the state records the change (below): a crash in between
                    # re-detects (same derived event id, removed downstream) instead of losing the newcomer
                    sent = await hub.publish(topics.NEWCOMERS, "Newcomer", newcomer_record(ev, done.key, utcnow()), key=done.key)
                    batch.sends.append((len(batch.steps), done.key, sent))
            except Exception as exc:  # noqa: BLE001 - as hub.handle_safely
                await hub.internal_error(msg, "newcomer detection", exc, dead)
                continue
            if done.old_key and done.old_key != done.key:
                batch.states[done.old_key] = None
            batch.states[done.key] = done.state
            batch.steps.append((msg, done, started))
        results = await asyncio.gather(*(sent for _, _, sent in batch.sends), return_exceptions=True)
        failed: dict[str, tuple[int, BaseException]] = {}  # person key -> the first step whose newcomer was refused, and why
        for (index, key, _), result in zip(batch.sends, results):
            if isinstance(result, BaseException):
                if is_outage(result):  # not acknowledged (a timeout, the broker unreachable): nothing written, the batch is read again
                    raise result
                if key not in failed:
                    failed[key] = (index, result)
        changes: dict[str, str | None] = {}
        written = []
        for index, (msg, done, started) in enumerate(batch.steps):
            refused = next((failed[k][1] for k in (done.key, done.old_key) if k in failed and index >= failed[k][0]), None) if failed else None
            if refused is not None:
                # as one at a time: a change whose newcomer the producer or the broker refused (too
                # large) is dead-lettered (kept for replay) and its state is not written; so are the
                # person's later changes of this batch, which were detected against that unwritten state
                await _unacknowledged(msg, refused, dead)
                continue
            changes[done.key] = done.state
            if done.old_key is not None and done.old_key != done.key:
                changes[done.old_key] = None
            written.append((done, started))
        await in_db("writing the persons' states", states.write, changes)  # before the batch's offsets are committed
        if any(isinstance(r, BaseException) for r in await asyncio.gather(*dead, return_exceptions=True)):
            # a record not processed and not kept: the batch is read again (nothing committed)
            raise DeadLetterNotAcknowledged("a dead letter of this batch was not acknowledged by the broker or kept in the database")
        finished = time.monotonic()
        found = 0
        for done, started in written:
            if done.found:
                found += 1
                for ev in done.found:
                    if ev.change == "arrived":
                        metrics.newcomers.labels(ev.state.municipality_code or "unknown").inc()
                        seen.newcomers[ev.state.municipality_code or "unknown"] += 1
                    else:
                        seen.moved += 1
            latency.observe(finished - started)
        if found:
            consumed_newcomer.inc(found)
        if len(written) > found:
            consumed_ok.inc(len(written) - found)

    consumer = hub.batch_consumer(CONSUMER_NAME, topic, detect_batch, batch_size)
    dead_letter_alone = consumer.isolate

    async def isolate(record, exc) -> None:
        """A change whose detection failed alone (the batch narrowed down to it): dead-lettered by the hub, counted here too."""
        await dead_letter_alone(record, exc)
        seen.dead_letters += 1

    consumer.isolate = isolate

    async def _unacknowledged(msg, exc: BaseException, dead: list) -> None:
        log.error("newcomer detection: a newcomer of %s[%s]@%s was refused (%s); record sent to dead letters",
                  msg.topic, msg.partition, msg.offset, type(exc).__name__)
        first = not hub.dead_lettered_already(msg)
        dead.append(await hub.dead_letter_message(msg, failure_reason(exc),
                                                  f"newcomer detection could not publish the newcomer ({type(exc).__name__}); the record is kept for replay"))
        if first:
            _count_dead_letter()

    def _count_dead_letter() -> None:
        metrics.events_consumed.labels(topic, "dead_letter").inc()
        seen.dead_letters += 1

    def check(msg, now):
        """Decode and validate one record: (record, person keys, None), or (None, None, (reason,
        message)) of its dead letter."""
        try:
            record = hub.codec.decode(msg.value, "PopulationChange").record
        except CodecError as exc:
            return None, None, (exc.reason, exc.detail)
        # the same checks as `hub ingest dvv`: a municipal system may publish here directly
        problems = population_change.validate(record, now=now, skew=skew)
        if problems:
            detail = "; ".join(dict.fromkeys(p.message for p in problems))
            return None, None, (problems[0].reason, f"PopulationChange {record['event_id']}: {detail}")
        return record, person_keys(record, secret), None

    return seen
