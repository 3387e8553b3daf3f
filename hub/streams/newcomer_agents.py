"""Newcomer detection agent: population changes in, newcomers out, one state row per person."""

from __future__ import annotations

import asyncio
import logging
import time

from collections import Counter
from dataclasses import dataclass, field

from hub import metrics
from hub.domain import hetu, population_change
from hub.newcomers.detection import Change, PersonState, detect, merge_identity, newcomer_record
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
class _Step:
    """One change of a batch, detected: the state to write once the batch's newcomers are acknowledged."""

    event: object
    key: str
    state: dict
    old_key: str | None
    found: list
    started: float


@dataclass
class _Batch:
    states: dict = field(default_factory=dict)  # person key -> state JSON (None: removed) written by this batch so far
    steps: list = field(default_factory=list)
    sends: list = field(default_factory=list)  # (event, person key, send future)


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
        failed: dict[str, object] = {}  # person key -> the first event whose newcomer was not acknowledged
        for (event, key, _), result in zip(batch.sends, results):
            if isinstance(result, BaseException) and key not in failed:
                failed[key] = event
        for step in batch.steps:
            if step.key in failed or (step.old_key is not None and step.old_key in failed):
                # as one at a time: a change whose newcomer was not acknowledged is dead-lettered
                # (kept for replay) and its state is not written; so are the person's later changes
                # of this batch, which were detected against that unwritten state
                await _unacknowledged(step.event)
                continue
            with current_event(step.event):  # the changelog record goes to this event's partition
                people[step.key] = step.state
                if step.old_key is not None and people.get(step.old_key) is not None:
                    del people[step.old_key]
            for ev in step.found:
                if ev.change == "arrived":
                    metrics.newcomers.labels(ev.state.municipality_code or "unknown").inc()
                    seen.newcomers[ev.state.municipality_code or "unknown"] += 1
                else:
                    seen.moved += 1
            metrics.events_consumed.labels(topics.POPULATION_CHANGES, "newcomer" if step.found else "ok").inc()
            metrics.processing_latency.labels(topics.POPULATION_CHANGES).observe(time.monotonic() - step.started)

    async def _unacknowledged(event) -> None:
        msg = event.message
        log.error("newcomer detection: a newcomer of %s[%s]@%s was not acknowledged by the broker; record sent to dead letters",
                  msg.topic, msg.partition, msg.offset)
        await hub.dead_letter(msg.value, "internal_error", "newcomer detection could not publish the newcomer (not acknowledged); the record is kept for replay",
                              original_topic=msg.topic, partition=msg.partition, offset=msg.offset, original_key=msg.key)
        metrics.events_consumed.labels(topics.POPULATION_CHANGES, "dead_letter").inc()
        seen.dead_letters += 1

    def get(batch: "_Batch", key: str):
        """The person's state as of this point of the batch: its own writes first, then the table."""
        return batch.states[key] if key in batch.states else people.get(key)

    async def handle(event, batch: "_Batch") -> None:
        started = time.monotonic()
        decoded = await hub.decode_or_dead_letter(event, "PopulationChange")
        if decoded is None:
            metrics.events_consumed.labels(topics.POPULATION_CHANGES, "dead_letter").inc()
            seen.dead_letters += 1
            return
        record = decoded.record
        # the same checks as `hub ingest dvv`: a municipal system may publish here directly
        problems = population_change.validate(record, now=utcnow(), skew=skew)
        if problems:
            msg = event.message
            detail = "; ".join(dict.fromkeys(p.message for p in problems))
            await hub.dead_letter(msg.value, problems[0].reason, f"PopulationChange {record['event_id']}: {detail}", original_topic=msg.topic,
                                  partition=msg.partition, offset=msg.offset, original_key=msg.key)
            metrics.events_consumed.labels(topics.POPULATION_CHANGES, "dead_letter").inc()
            seen.dead_letters += 1
            return
        change = Change.from_record(record)
        key = hetu.person_key(change.person_id, secret)
        raw = get(batch, key)
        state = PersonState.from_json(raw) if raw else None
        old_key = hetu.person_key(change.previous_person_id, secret) if change.previous_person_id else None
        if old_key:  # identity-code correction: follow the person to the new code
            old_raw = get(batch, old_key)
            state = merge_identity(PersonState.from_json(old_raw) if old_raw else None, state, change.person_id)
        state, found = detect(state, change, window)
        for ev in found:
            # acknowledged before the state records the change (detect_batch): a crash in between
            # re-detects (same derived event id, removed downstream) instead of losing the newcomer
            sent = await hub.publish(topics.NEWCOMERS, "Newcomer", newcomer_record(ev, key, utcnow()), key=key)
            batch.sends.append((event, key, sent))
        value = state.to_json()
        batch.states[key] = value
        if old_key:
            batch.states[old_key] = None
        batch.steps.append(_Step(event, key, value, old_key, found, started))

    seen.table = people
    return seen
