"""Newcomer detection's entrypoint: population changes in (a batch consumer), newcomers out.

Decodes each batch, hands it to the use case (`hub.services.detection`), counts what it did. The
persons' states live in the hub database (`hub.adapters.person_states`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from hub import metrics
from hub.adapters.database import create_engine
from hub.adapters.person_states import PersonStates, SqlPersonStates
from hub.newcomers.detection import DEFAULT_WINDOW_DAYS
from hub.services.detection import Detection
from hub.schemas import topics
from hub.domain.clock import utcnow
from hub.streams.app import HubApp
from hub.streams.service_ports import FAILURES, BatchDeadLetters, DatabaseStates, count_isolated

CONSUMER_NAME = "newcomer-detection"  # the batch consumer; its group is `<app id>.newcomer-detection`


@dataclass
class NewcomerObserved:
    """What detection did in this process (demo summary, tests)."""

    states: object = None  # the PersonStates detection reads and writes
    consumed: int = 0
    newcomers: Counter = field(default_factory=Counter)  # municipality code -> arrived
    moved: int = 0
    dead_letters: int = 0
    first_at: float | None = None  # time.monotonic() when the first batch reached detection

    def dead_lettered(self, reason: str | None) -> None:
        self.dead_letters += 1


def register(hub: HubApp, window_days: int | None = None, *, states: PersonStates | None = None, database_url: str | None = None,
             batch_size: int = 200) -> NewcomerObserved:
    """Declare newcomer detection on the hub's app: a batch consumer of the population changes
    (`hub.adapters.kafka.consumer`, batches of up to `batch_size` records, what has been fetched).
    The persons' states live in `states` (by default the hub database; its table must exist:
    `hub db upgrade`)."""
    if states is None:
        states = SqlPersonStates(create_engine(database_url or hub.settings.resolved_database_url()))
    seen = NewcomerObserved(states=states)
    detection = Detection(DatabaseStates(states, "newcomer detection"), hub.publisher, FAILURES, clock=utcnow,
                          person_key_secret=hub.settings.person_key_secret, skew=hub.settings.clock_skew_delta,
                          window_days=window_days or DEFAULT_WINDOW_DAYS)
    topic = topics.POPULATION_CHANGES
    count = _Counts(topic, seen)

    async def detect_batch(records) -> None:
        started = time.monotonic()
        seen.first_at = seen.first_at or started
        dead = BatchDeadLetters(hub.publisher, hub.publisher_check, topic, seen.dead_lettered, counts_refusals=True)
        seen.consumed += len(records)  # a narrowed-down batch is handled again: counted again
        changes = [change for msg in records if (change := await dead.decoded(msg, "PopulationChange")) is not None]
        count(await detection.detect(changes, dead), started)

    count_isolated(hub.batch_consumer(CONSUMER_NAME, topic, detect_batch, batch_size), seen.dead_lettered)
    return seen


class _Counts:
    """Counts a batch's written changes: newcomers by municipality, moves, outcomes, latency (the
    labelled series looked up once, not per record)."""

    def __init__(self, topic: str, seen: NewcomerObserved) -> None:
        self.seen = seen
        self.ok = metrics.events_consumed.labels(topic, "ok")
        self.newcomer = metrics.events_consumed.labels(topic, "newcomer")
        self.latency = metrics.processing_latency.labels(topic)

    def __call__(self, written, started: float) -> None:
        finished = time.monotonic()
        found = 0
        for done in written:
            found += bool(done.found)
            for ev in done.found:
                if ev.change == "arrived":
                    municipality = ev.state.municipality_code or "unknown"
                    metrics.newcomers.labels(municipality).inc()
                    self.seen.newcomers[municipality] += 1
                else:
                    self.seen.moved += 1
            self.latency.observe(finished - started)
        if found:
            self.newcomer.inc(found)
        if len(written) > found:
            self.ok.inc(len(written) - found)
