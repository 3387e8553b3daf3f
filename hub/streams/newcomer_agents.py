"""Newcomer detection agent: population changes in, newcomers out, one state row per person."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

from faust.streams import _current_event  # faust keys table changelog partitions by it

from hub import metrics
from hub.domain import hetu
from hub.newcomers.detection import Change, PersonState, detect, merge_identity, newcomer_record
from hub.streams import topics
from hub.streams.app import HubApp, utcnow


@dataclass
class NewcomerObserved:
    """What detection did in this process (demo summary, tests)."""

    table: object = None
    consumed: int = 0
    newcomers: Counter = field(default_factory=Counter)  # municipality code -> arrived
    moved: int = 0
    dead_letters: int = 0


class Batch:
    """What one batch of changes does before the acknowledgements: sends, new states, counts."""

    def __init__(self) -> None:
        self.sends: list = []
        self.states: dict[str, tuple] = {}  # person key -> (event, new state or None: delete)
        self.after_ack: list = []

    def get(self, table, key: str):
        entry = self.states.get(key)
        return table.get(key) if entry is None else entry[1]


def register(hub: HubApp, window_days: int | None = None, batch_size: int = 500, batch_within: float = 0.005) -> NewcomerObserved:
    """Declare the detection agent and its changelog-backed state table.

    Changes are taken in batches (up to `batch_size`, or what arrived within `batch_within`
    seconds) so that the broker's acknowledgements are awaited once per batch, not per newcomer.
    """
    from hub.newcomers.detection import DEFAULT_WINDOW_DAYS

    window = window_days or DEFAULT_WINDOW_DAYS
    secret = hub.settings.person_key_secret
    seen = NewcomerObserved()
    people = hub.app.Table("newcomer-state", default=None, key_type=str,
                           partitions=hub.settings.topic_partitions)

    @hub.app.agent(hub.topic(topics.POPULATION_CHANGES), name="newcomer-detection")
    async def detect_newcomers(stream):
        async for events in stream.take_events(batch_size, within=batch_within):
            await detect_batch(events)

    async def detect_batch(events) -> None:
        """Detect in a batch, then wait for the acknowledgements of every Newcomer published, and
        only then write the people's new states (a crash in between re-detects: same derived
        event ids, removed downstream). States changed earlier in the batch are read back from it."""
        batch = Batch()
        for event in events:
            await hub.handle_safely(event, lambda e: handle(e, batch), "newcomer detection")
        await asyncio.gather(*batch.sends)
        for key, (event, state) in batch.states.items():
            # the table sends each change to the changelog partition of the event that made it
            _current_event.set(weakref.ref(event))
            if state is None:
                if people.get(key) is not None:
                    del people[key]
            else:
                people[key] = state
        for done in batch.after_ack:
            done()
        seen.consumed += len(events)

    async def handle(event, batch: "Batch") -> None:
        started = time.monotonic()
        decoded = await hub.decode_or_dead_letter(event, "PopulationChange")
        if decoded is None:
            metrics.events_consumed.labels(topics.POPULATION_CHANGES, "dead_letter").inc()
            seen.dead_letters += 1
            return
        record = decoded.record
        try:
            hetu.validate(record["person_id"])
            if record.get("previous_person_id"):
                hetu.validate(record["previous_person_id"])
        except hetu.InvalidHetu as exc:
            msg = event.message
            await hub.dead_letter(msg.value, exc.reason, f"PopulationChange {record['event_id']}: {exc}", original_topic=msg.topic,
                                  partition=msg.partition, offset=msg.offset, original_key=msg.key)
            metrics.events_consumed.labels(topics.POPULATION_CHANGES, "dead_letter").inc()
            seen.dead_letters += 1
            return
        change = Change.from_record(record)
        key = hetu.person_key(change.person_id, secret)
        raw = batch.get(people, key)
        state = PersonState.from_json(raw) if raw else None
        old_key = hetu.person_key(change.previous_person_id, secret) if change.previous_person_id else None
        if old_key:  # identity-code correction: follow the person to the new code
            old_raw = batch.get(people, old_key)
            state = merge_identity(PersonState.from_json(old_raw) if old_raw else None, state, change.person_id)
        state, found = detect(state, change, window)
        for ev in found:
            batch.sends.append(await hub.publish(topics.NEWCOMERS, "Newcomer", newcomer_record(ev, key, utcnow()), key=key))
            batch.after_ack.append(partial(count_newcomer, ev))
        batch.states[key] = (event, state.to_json())
        if old_key and old_key != key:
            batch.states[old_key] = (event, None)
        metrics.events_consumed.labels(topics.POPULATION_CHANGES, "newcomer" if found else "ok").inc()
        metrics.processing_latency.labels(topics.POPULATION_CHANGES).observe(time.monotonic() - started)

    def count_newcomer(ev) -> None:
        if ev.change == "arrived":
            metrics.newcomers.labels(ev.state.municipality_code or "unknown").inc()
            seen.newcomers[ev.state.municipality_code or "unknown"] += 1
        else:
            seen.moved += 1

    seen.table = people
    return seen
