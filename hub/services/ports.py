"""The small interfaces the use cases of hub/services/ work through: the streams pass the real
adapters (Kafka, the hub database), the unit tests in-memory fakes (tests/fakes.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, NamedTuple, Protocol

from hub.consent.model import Assessment, ConsentRecord

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class Consumed:
    """A decoded record and the consumed record it came from (what its dead letter carries)."""

    source: Any
    record: dict
    name: str = ""  # the record's schema name, where a use case takes more than one


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


class StoredCircumstances(NamedTuple):
    """One person's row of routing's circumstances (`hub.routing.circumstances`)."""

    facts: str  # `encode` of the person's Circumstances
    newcomer: str | None  # `encode_newcomer` of the person's last Newcomer (no identity code); None: not seen yet


class PersonCircumstances(Protocol):
    """Routing's circumstances per person (facts from other authorities, the last Newcomer), by person key."""

    async def get_many(self, keys: Iterable[str]) -> dict[str, StoredCircumstances]: ...

    async def write(self, rows: Mapping[str, StoredCircumstances], now: dt.datetime) -> None:
        """One transaction: store each person's row."""


class Ledger(Protocol):
    """The referral ledger (`hub.adapters.referral_ledger.ReferralLedger`, its calls awaited)."""

    async def record_many(self, items: list, now: dt.datetime) -> list:
        """Record the decisions of each (RoutingInput, decisions): a `Recorded` per item, in order."""

    async def mark_published(self, referral_ids: list[str], now: dt.datetime) -> None: ...

    async def apply_status(self, status: dict, now: dt.datetime) -> Any:
        """A `StatusOutcome`: applied, duplicate, or a dead-letter reason code."""


# -- the consent registry ------------------------------------------------------------------------
class HeldItem(Protocol):
    """An assessment no consent covered yet, kept until one does."""

    id: int
    assessment_id: str
    recipient: str
    reason: str  # why it was held
    held_at: dt.datetime
    assessment: bytes  # the AssessmentCompleted record as received (wire format)


class Disclosure(Protocol):
    """The audit row of one plan request: who received which categories of whose data, on which basis."""

    request_id: str
    recipient: str
    person_key: str  # the hub's own person key of the person
    consent_id: str | None

    def as_dict(self) -> dict:
        """disclosed_at, recipient, data_categories, consent_id, legal_basis, request_id, assessor, assessment_id."""


class ConsentHistory(Protocol):
    """The append-only consent history by person key, the tombstones retention leaves of ended
    consents, and the held assessments."""

    def lock(self, person_key: str) -> None:
        """Serialise this person's transactions across workers until the unit of work ends."""

    def history(self, person_key: str) -> list[ConsentRecord]:
        """The person's consent events in the order they were stored."""

    def add(self, rec: ConsentRecord, person_key: str, now: dt.datetime) -> None: ...

    def tombstone(self, person_key: str, consent_id: str, now: dt.datetime) -> str | None:
        """How the consent ended (revoked, expired) when retention removed its history and left a
        tombstone, else None. Finding one keeps it `now` longer (a replay may bring the event again)."""

    def first_events(self, consent_id: str) -> dict[str, ConsentRecord]:
        """Person id -> the first event of that person's consent `consent_id` (ids are unique per person only)."""

    def due(self, now: dt.datetime) -> list[str]:
        """Identity codes of persons with a grant whose valid_until has passed, or with held items and
        a grant whose valid_from has passed (the pure rules decide what is due)."""

    def own_held(self) -> list[str]:
        """Person keys with an unreleased held item whose assessor is its recipient (held before a plan
        request to the assessor itself needed no consent)."""

    def held(self, person_key: str) -> list[HeldItem]:
        """The person's unreleased held items, oldest first."""

    def hold(self, assessment: Assessment, person_key: str, encoded: bytes, reason: str, now: dt.datetime) -> None: ...

    def release(self, item_id: int, request_id: str, now: dt.datetime) -> None: ...

    def held_count(self) -> int: ...


class Outbox(Protocol):
    """Messages written with the state change that caused them, sent to Kafka after the commit."""

    def enqueue(self, topic: str, name: str, event_id: str, value: bytes, key: str | None,
                headers: list[tuple[str, bytes]], now: dt.datetime, *, recipient: str | None = None, stream: str | None = None) -> int:
        """Add a message (schema `name`, encoded `value`); its outbox id. A numbered one (plan request,
        notice) names its recipient and stream; the relay numbers it when it sends it."""


class ProcessedEvents(Protocol):
    """The idempotency marks: the event ids each consumer has applied."""

    def first_time(self, consumer: str, event_id: str) -> bool:
        """Mark `event_id` applied by `consumer`; False when it was applied before."""


class DisclosureAudit(Protocol):
    """Every plan request (a disclosure, or one to the assessor itself that discloses nothing) and
    every withdrawal of one that was not sent after all."""

    def add(self, plan: dict, person_key: str, outbox_id: int, now: dt.datetime, disclosed: bool = True) -> None:
        """Record a plan request; `disclosed` false when it goes to its own assessor."""

    def of_person(self, person_key: str) -> list[Disclosure]:
        """The person's disclosures (not the plan requests to an assessor itself), in the order they were made."""

    def withdrawals(self, request_ids: Iterable[str]) -> dict[str, list[dict]]:
        """Request id -> its withdrawals (reason, channel, withdrawn_at)."""


class ConsentUnitOfWork(Protocol):
    """One transaction of the consent registry: `with units() as uow: ...; uow.commit()`. What is not
    committed when the block ends is rolled back: state, outbox messages, marks and audit rows go
    together or not at all."""

    consents: ConsentHistory
    outbox: Outbox
    processed: ProcessedEvents
    audit: DisclosureAudit

    def __enter__(self) -> ConsentUnitOfWork: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None: ...
