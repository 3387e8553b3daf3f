"""The small interfaces the use cases of hub/services/ work through: the streams pass the real
adapters (Kafka, the hub database), the unit tests in-memory fakes (tests/fakes.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class Consumed:
    """A decoded record and the consumed record it came from (what its dead letter carries)."""

    source: Any
    record: dict


class Publisher(Protocol):
    async def publish(self, topic: str, name: str, record: dict, key: str) -> Awaitable[Any]:
        """Send `record` (schema `name`) to `topic`; returns once it is sent, with an awaitable done
        when the broker acknowledged it (raising if it did not)."""


class DeadLetters(Protocol):
    """Where the records of one batch that the hub cannot process go, whole, with a reason code."""

    async def send(self, source: Any, reason: str, message: str) -> None:
        """Dead-letter `source` (the consumed record an item came from); a record is sent once per
        batch however often it is handled. `kept` waits until it exists."""

    async def kept(self) -> None:
        """Returns once every dead letter sent so far exists; raises an outage (the batch is read
        again) when one could not be kept."""


@dataclass(frozen=True)
class Failures:
    """Tells an outage (the outside world failed: the same work succeeds later, so the batch is read
    again whole) from a failure of one record, and names the latter's dead-letter reason."""

    is_outage: Callable[[BaseException], bool]
    reason: Callable[[BaseException], str]


class PersonStates(Protocol):
    """Newcomer detection's state per person (compact JSON, `hub.newcomers.detection.encode_state`), by person key."""

    async def get_many(self, keys: Iterable[str]) -> dict[str, str]: ...

    async def write(self, changes: Mapping[str, str | None]) -> None:
        """One transaction: set each key's state, remove those given None."""


class Ledger(Protocol):
    """The referral ledger (`hub.adapters.referral_ledger.ReferralLedger`, its calls awaited)."""

    async def record_many(self, items: list, now: dt.datetime) -> list:
        """Record the decisions of each (RoutingInput, decisions): a `Recorded` per item, in order."""

    async def mark_published(self, referral_ids: list[str], now: dt.datetime) -> None: ...

    async def apply_status(self, status: dict, now: dt.datetime) -> Any:
        """A `StatusOutcome`: applied, duplicate, or a dead-letter reason code."""
