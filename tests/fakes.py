"""In-memory fakes of the services' ports (`hub.services.ports`) for unit tests: no broker, no
database. Each fake writes what happens to a shared `journal`, so a test can check the order of
sends, acknowledgements and writes."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Callable, Iterable, Mapping

from hub.services.ports import Failures

T0 = dt.datetime(2025, 6, 20, 12, tzinfo=dt.timezone.utc)


class Outage(ConnectionError):
    """The fakes' outage: the broker or the database did not answer."""


class TooLarge(ValueError):
    """The fakes' refusal of one record for its own sake."""


FAILURES = Failures(is_outage=lambda exc: isinstance(exc, (ConnectionError, TimeoutError)),
                    reason=lambda exc: "unprocessable" if isinstance(exc, ValueError) else "internal_error")


class Clock:
    """A clock a test sets; each call returns the current time."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class FakePublisher:
    """Sends nowhere: `sent` holds (topic, name, record, key); an acknowledgement fails with the
    error `fails(topic, record, key)` returns (None: acknowledged). `refuses` makes the send itself raise."""

    def __init__(self, journal: list, fails: Callable[[str, dict, str], BaseException | None] | None = None,
                 refuses: Callable[[str, dict, str], BaseException | None] | None = None) -> None:
        self.journal = journal
        self.sent: list[tuple[str, str, dict, str]] = []
        self.fails = fails or (lambda topic, record, key: None)
        self.refuses = refuses or (lambda topic, record, key: None)

    async def publish(self, topic: str, name: str, record: dict, key: str) -> Any:
        refused = self.refuses(topic, record, key)
        if refused is not None:
            raise refused
        self.sent.append((topic, name, record, key))
        self.journal.append(("sent", name, record["event_id"]))
        error = self.fails(topic, record, key)

        async def ack():
            await asyncio.sleep(0)
            if error is not None:
                raise error
            self.journal.append(("acked", name, record["event_id"]))

        return ack()


class FakeDeadLetters:
    """Keeps one batch's dead letters in `sent` (source, reason, message), each source once."""

    def __init__(self, journal: list, fails: BaseException | None = None) -> None:
        self.journal = journal
        self.sent: list[tuple[Any, str, str]] = []
        self.fails = fails

    async def send(self, source, reason: str, message: str) -> None:
        if any(s is source for s, _, _ in self.sent):
            return
        self.sent.append((source, reason, message))
        self.journal.append(("dead_letter", source, reason))

    async def kept(self) -> None:
        if self.fails is not None and self.sent:
            raise self.fails
        self.journal.append(("dead_letters_kept", len(self.sent)))

    @property
    def reasons(self) -> list[tuple[Any, str]]:
        return [(s, r) for s, r, _ in self.sent]


class MemoryStates:
    """Person states in a dict; `write` is one transaction (all or nothing)."""

    def __init__(self, journal: list, states: dict[str, str] | None = None, fails: BaseException | None = None) -> None:
        self.journal = journal
        self.states = dict(states or {})
        self.fails = fails

    async def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        return {k: self.states[k] for k in keys if k in self.states}

    async def write(self, changes: Mapping[str, str | None]) -> None:
        if self.fails is not None:
            raise self.fails
        for key, state in changes.items():
            if state is None:
                self.states.pop(key, None)
            else:
                self.states[key] = state
        self.journal.append(("states_written", sorted(changes)))


class JournalLedger:
    """A real referral ledger (`hub.adapters.referral_ledger.ReferralLedger`, SQLite in memory: its
    idempotency and supersession are simpler to use than to fake) behind the async port, its calls journaled."""

    def __init__(self, journal: list, ledger=None) -> None:
        from sqlalchemy.pool import StaticPool

        from hub.adapters import database
        from hub.adapters.referral_ledger import ReferralLedger

        if ledger is None:
            engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
            database.Base.metadata.create_all(engine)
            ledger = ReferralLedger(engine)
        self.ledger = ledger
        self.journal = journal

    async def record_many(self, items: list, now) -> list:
        done = self.ledger.record_many(items, now)
        self.journal.append(("recorded", len(items)))
        return done

    async def mark_published(self, referral_ids: list[str], now) -> None:
        self.ledger.mark_published(referral_ids, now)
        self.journal.append(("marked_published", list(referral_ids)))

    async def apply_status(self, status: dict, now) -> Any:
        outcome = self.ledger.apply_status(status, now)
        self.journal.append(("status", outcome.code))
        return outcome
