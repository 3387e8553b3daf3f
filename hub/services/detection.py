"""Detect the newcomers in a batch of population changes: validate each change, run the pure
detection step (`hub.newcomers.detection`) against the persons' stored states, publish the
newcomers, then write the states.

The order keeps every newcomer: a newcomer is acknowledged by the broker before the state that
records its change is written (a crash in between detects it again, under the same derived event
id, and downstream removes the repeat), and the caller commits the batch's offsets only after
`Detection.detect` returned. A change whose newcomer the broker or the producer refused for the
record's own sake (too large) is dead-lettered and its state not written; so are the same person's
later changes in the batch, which were detected against that unwritten state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Collection, Sequence

from hub.domain import population_change
from hub.routing.reference import municipality_codes
from hub.newcomers.detection import DEFAULT_WINDOW_DAYS, Step, newcomer_record, person_keys, step
from hub.services.ports import Clock, Consumed, DeadLetters, Failures, PersonStates, Publisher
from hub.schemas import topics

log = logging.getLogger(__name__)

WHAT = "newcomer detection"


class Detection:
    """The use case "detect a batch of population changes" over its ports."""

    def __init__(self, states: PersonStates, publisher: Publisher, failures: Failures, *, person_key_secret: str, clock: Clock,
                 skew: dt.timedelta, window_days: int = DEFAULT_WINDOW_DAYS, newcomers_topic: str = topics.NEWCOMERS,
                 municipalities: Collection[str] | None = None) -> None:
        self.states = states
        self.publisher = publisher
        self.failures = failures
        self.secret = person_key_secret
        self.clock = clock
        self.skew = skew
        self.window_days = window_days
        self.newcomers_topic = newcomers_topic
        self.municipalities = municipality_codes() if municipalities is None else municipalities

    async def detect(self, changes: Sequence[Consumed], dead_letters: DeadLetters) -> list[Step]:
        """Detect `changes` (decoded PopulationChange records, in offset order); returns the steps
        whose state was written, once every newcomer and dead letter of the batch exists. Raises
        an outage (nothing written: the batch is read again) when the broker or the database did
        not answer. Per record, plain calls; a coroutine only where a record is sent."""
        checked = await self._checked(changes, dead_letters)
        wanted = {k for _, keys in checked for k in keys if k}
        stored = await self.states.get_many(wanted) if wanted else {}
        pending: dict[str, str | None] = {}  # person key -> state written by this batch so far (None: removed)

        def lookup(key: str):
            """The person's state as of this point of the batch: its own writes first, then the store."""
            return pending[key] if key in pending else stored.get(key)

        steps: list[tuple[Consumed, Step]] = []
        sends: list[tuple[int, str, object]] = []  # (index of the step, person key, acknowledgement)
        for change, keys in checked:
            try:
                done = step(change.record, lookup, self.secret, self.window_days, keys=keys)
                acks = [await self.publisher.publish(self.newcomers_topic, "Newcomer", newcomer_record(ev, done.key, self.clock()), done.key)
                        for ev in done.found]
            except Exception as exc:  # noqa: BLE001 - one record's failure must not stop the batch
                await self._failed(change, exc, dead_letters)
                continue
            if done.old_key and done.old_key != done.key:
                pending[done.old_key] = None
            pending[done.key] = done.state
            sends.extend((len(steps), done.key, ack) for ack in acks)
            steps.append((change, done))
        refused = await self._refused(sends)
        changes_to_write: dict[str, str | None] = {}
        written = []
        for index, (change, done) in enumerate(steps):
            error = next((refused[k][1] for k in (done.key, done.old_key) if k in refused and index >= refused[k][0]), None)
            if error is not None:
                log.error("%s: the newcomer of PopulationChange %s was refused (%s); record sent to dead letters", WHAT,
                          change.record.get("event_id"), type(error).__name__)
                await dead_letters.send(change.source, self.failures.reason(error),
                                        f"{WHAT} could not publish the newcomer ({type(error).__name__}); the record is kept for replay")
                continue
            changes_to_write[done.key] = done.state
            if done.old_key is not None and done.old_key != done.key:
                changes_to_write[done.old_key] = None
            written.append(done)
        await self.states.write(changes_to_write)  # before the batch's offsets are committed
        await dead_letters.kept()
        return written

    async def _checked(self, changes: Sequence[Consumed], dead_letters: DeadLetters) -> list[tuple[Consumed, tuple[str, str | None]]]:
        """The changes that pass the checks of `hub ingest dvv` (a municipal system may publish here
        directly), with their person keys; the others dead-lettered."""
        now = self.clock()
        checked = []
        for change in changes:
            try:
                problems = population_change.validate(change.record, now=now, municipalities=self.municipalities, skew=self.skew)
                if problems:
                    detail = "; ".join(dict.fromkeys(p.message for p in problems))
                    await dead_letters.send(change.source, problems[0].reason, f"PopulationChange {change.record['event_id']}: {detail}")
                    continue
                checked.append((change, person_keys(change.record, self.secret)))
            except Exception as exc:  # noqa: BLE001 - one record's failure must not stop the batch
                await self._failed(change, exc, dead_letters)
        return checked

    async def _refused(self, sends: list[tuple[int, str, object]]) -> dict[str, tuple[int, BaseException]]:
        """Waits for every newcomer's acknowledgement: person key -> the first step whose newcomer
        was refused for its own sake, and why. An outage (a timeout, the broker unreachable) is
        raised: nothing is written and the batch is read again."""
        results = await asyncio.gather(*(ack for _, _, ack in sends), return_exceptions=True)
        refused: dict[str, tuple[int, BaseException]] = {}
        for (index, key, _), result in zip(sends, results):
            if isinstance(result, BaseException):
                if self.failures.is_outage(result):
                    raise result
                refused.setdefault(key, (index, result))
        return refused

    async def _failed(self, change: Consumed, exc: Exception, dead_letters: DeadLetters) -> None:
        """A change whose handling raised: an outage is raised again (the batch is read again); any
        other error is the record's own and sends it to dead letters, the error's type named, never
        its text (it may quote personal data)."""
        if self.failures.is_outage(exc):
            raise exc
        log.error("%s failed with %s on PopulationChange %s; record sent to dead letters", WHAT, type(exc).__name__,
                  change.record.get("event_id"))
        await dead_letters.send(change.source, self.failures.reason(exc),
                                f"{WHAT} failed with {type(exc).__name__}; the record is kept for replay after a fix")
