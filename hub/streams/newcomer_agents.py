"""Newcomer detection agent: population changes in, newcomers out, one state row per person."""

from __future__ import annotations

import time

from collections import Counter
from dataclasses import dataclass, field

from hub import metrics
from hub.domain import hetu, population_change
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


def register(hub: HubApp, window_days: int | None = None) -> NewcomerObserved:
    """Declare the detection agent and its changelog-backed state table."""
    from hub.newcomers.detection import DEFAULT_WINDOW_DAYS

    window = window_days or DEFAULT_WINDOW_DAYS
    secret = hub.settings.person_key_secret
    skew = hub.settings.clock_skew_delta
    seen = NewcomerObserved()
    people = hub.app.Table("newcomer-state", default=None, key_type=str,
                           partitions=hub.settings.topic_partitions)

    @hub.app.agent(hub.topic(topics.POPULATION_CHANGES), name="newcomer-detection")
    async def detect_newcomers(stream):
        async for event in stream.events():
            await hub.handle_safely(event, handle, "newcomer detection")
            seen.consumed += 1

    async def handle(event) -> None:
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
        raw = people.get(key)
        state = PersonState.from_json(raw) if raw else None
        old_key = hetu.person_key(change.previous_person_id, secret) if change.previous_person_id else None
        if old_key:  # identity-code correction: follow the person to the new code
            old_raw = people.get(old_key)
            state = merge_identity(PersonState.from_json(old_raw) if old_raw else None, state, change.person_id)
        state, found = detect(state, change, window)
        for ev in found:
            # acknowledged before the state records the change: a crash in between re-detects
            # (same derived event id, removed downstream) instead of losing the newcomer
            await hub.publish_acked(topics.NEWCOMERS, "Newcomer", newcomer_record(ev, key, utcnow()), key=key)
            if ev.change == "arrived":
                metrics.newcomers.labels(ev.state.municipality_code or "unknown").inc()
                seen.newcomers[ev.state.municipality_code or "unknown"] += 1
            else:
                seen.moved += 1
        people[key] = state.to_json()
        if old_key and people.get(old_key) is not None:
            del people[old_key]
        metrics.events_consumed.labels(topics.POPULATION_CHANGES, "newcomer" if found else "ok").inc()
        metrics.processing_latency.labels(topics.POPULATION_CHANGES).observe(time.monotonic() - started)

    seen.table = people
    return seen
