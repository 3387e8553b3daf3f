"""Newcomer detection agent: population changes in, newcomers out, one state row per person."""

from __future__ import annotations

import asyncio
import logging
import time

from collections import Counter
from dataclasses import dataclass, field

from hub import metrics
from hub.domain import population_change
from hub.newcomers.detection import newcomer_record, step
from hub.streams import topics
from hub.streams.app import HubApp, current_event, utcnow

log = logging.getLogger(__name__)


@dataclass
class NewcomerObserved:
    """What detection did in this process (demo summary, tests)."""

    table: object = None
    consumed: int = 0
    newcomers: Counter = field(default_factory=Counter)  # municipality code -> arrived
    moved: int = 0
    dead_letters: int = 0


@dataclass
class _Batch:
    states: dict = field(default_factory=dict)  # person key -> state JSON (None: removed) written by this batch so far
    steps: list = field(default_factory=list)  # (event, Step, monotonic start), in offset order
    sends: list = field(default_factory=list)  # (index of the step, person key, send future)


def register(hub: HubApp, window_days: int | None = None, *, batch_size: int = 200, batch_within: float = 0.05) -> NewcomerObserved:
    """Declare the detection agent and its changelog-backed state table. Changes are taken in
    batches of up to `batch_size` events, within `batch_within` seconds of the first."""
    from hub.newcomers.detection import DEFAULT_WINDOW_DAYS

    window = window_days or DEFAULT_WINDOW_DAYS
    secret = hub.settings.person_key_secret
    skew = hub.settings.clock_skew_delta
    seen = NewcomerObserved()
    people = hub.app.Table("newcomer-state", default=None, key_type=str,
                           partitions=hub.settings.topic_partitions)

    @hub.app.agent(hub.topic(topics.POPULATION_CHANGES), name="newcomer-detection")
    async def detect_newcomers(stream):
        # a batch at a time: its newcomers are sent together and acknowledged once, then the
        # persons' states are written; the events are acknowledged (offsets committable) after that
        async for events in stream.take_events(batch_size, within=batch_within):
            await detect_batch(events)

    async def detect_batch(events) -> None:
        batch = _Batch()
        for event in events:
            await hub.handle_safely(event, lambda e: handle(e, batch), "newcomer detection")
            seen.consumed += 1
        results = await asyncio.gather(*(sent for _, _, sent in batch.sends), return_exceptions=True)
        failed: dict[str, int] = {}  # person key -> the first step whose newcomer was not acknowledged
        for (index, key, _), result in zip(batch.sends, results):
            if isinstance(result, BaseException) and key not in failed:
                failed[key] = index
        for index, (event, done, started) in enumerate(batch.steps):
            if any(k in failed and index >= failed[k] for k in (done.key, done.old_key)):
                # as one at a time: a change whose newcomer was not acknowledged is dead-lettered
                # (kept for replay) and its state is not written; so are the person's later changes
                # of this batch, which were detected against that unwritten state
                await _unacknowledged(event)
                continue
            with current_event(event):  # the changelog record goes to this event's partition
                people[done.key] = done.state
                if done.old_key is not None and people.get(done.old_key) is not None:
                    del people[done.old_key]
            for ev in done.found:
                if ev.change == "arrived":
                    metrics.newcomers.labels(ev.state.municipality_code or "unknown").inc()
                    seen.newcomers[ev.state.municipality_code or "unknown"] += 1
                else:
                    seen.moved += 1
            metrics.events_consumed.labels(topics.POPULATION_CHANGES, "newcomer" if done.found else "ok").inc()
            metrics.processing_latency.labels(topics.POPULATION_CHANGES).observe(time.monotonic() - started)

    async def _unacknowledged(event) -> None:
        msg = event.message
        log.error("newcomer detection: a newcomer of %s[%s]@%s was not acknowledged by the broker; record sent to dead letters",
                  msg.topic, msg.partition, msg.offset)
        await hub.dead_letter_message(msg, "internal_error", "newcomer detection could not publish the newcomer (not acknowledged); the record is kept for replay")
        _count_dead_letter()

    def _count_dead_letter() -> None:
        metrics.events_consumed.labels(topics.POPULATION_CHANGES, "dead_letter").inc()
        seen.dead_letters += 1

    def get(batch: "_Batch", key: str):
        """The person's state as of this point of the batch: its own writes first, then the table."""
        return batch.states[key] if key in batch.states else people.get(key)

    async def handle(event, batch: "_Batch") -> None:
        started = time.monotonic()
        decoded = await hub.decode_or_dead_letter(event, "PopulationChange")
        if decoded is None:
            _count_dead_letter()
            return
        record = decoded.record
        # the same checks as `hub ingest dvv`: a municipal system may publish here directly
        problems = population_change.validate(record, now=utcnow(), skew=skew)
        if problems:
            detail = "; ".join(dict.fromkeys(p.message for p in problems))
            await hub.dead_letter_message(event.message, problems[0].reason, f"PopulationChange {record['event_id']}: {detail}")
            _count_dead_letter()
            return
        done = step(record, lambda k: get(batch, k), secret, window)
        for ev in done.found:
            # acknowledged before the state records the change (detect_batch): a crash in between
            # re-detects (same derived event id, removed downstream) instead of losing the newcomer
            sent = await hub.publish(topics.NEWCOMERS, "Newcomer", newcomer_record(ev, done.key, utcnow()), key=done.key)
            batch.sends.append((len(batch.steps), done.key, sent))
        batch.states[done.key] = done.state
        if done.old_key:
            batch.states[done.old_key] = None
        batch.steps.append((event, done, started))

    seen.table = people
    return seen
