"""The consent registry's unit of work over the hub database (`hub.services.ports.ConsentUnitOfWork`):
one SQLAlchemy session and transaction, through which the use cases reach the consent history and
held items (hub.adapters.consent_store), the outbox, the idempotency marks and the disclosure audit.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from sqlalchemy.orm import Session, sessionmaker

from hub.adapters import consent_store as store
from hub.adapters import disclosure_check, idempotency, outbox
from hub.consent.model import Assessment, ConsentRecord


class SqlConsentHistory:
    def __init__(self, session: Session):
        self.session = session

    def lock(self, person_key: str) -> None:
        store.lock_person(self.session, person_key)

    def history(self, person_key: str) -> list[ConsentRecord]:
        return store.history(self.session, person_key)

    def add(self, rec: ConsentRecord, person_key: str, now: dt.datetime) -> None:
        store.add_consent_event(self.session, rec, person_key, now)

    def tombstone(self, person_key: str, consent_id: str, now: dt.datetime) -> str | None:
        row = store.touch_tombstone(self.session, person_key, consent_id, now)
        return None if row is None else row.ended_action

    def first_events(self, consent_id: str) -> dict[str, ConsentRecord]:
        return {person_id: row.to_record() for person_id, row in store.consent_events_by_person(self.session, consent_id).items()}

    def due(self, now: dt.datetime) -> list[str]:
        return store.persons_with_expiring_or_starting_consents(self.session, now)

    def own_held(self) -> list[str]:
        return store.persons_with_own_held_items(self.session)

    def held(self, person_key: str) -> list[store.HeldItem]:
        return store.held(self.session, person_key)

    def hold(self, assessment: Assessment, person_key: str, encoded: bytes, reason: str, now: dt.datetime) -> None:
        store.add_held(self.session, assessment=assessment, person_key=person_key, encoded=encoded, reason=reason, now=now)

    def release(self, item_id: int, request_id: str, now: dt.datetime) -> None:
        store.mark_released(self.session, item_id, request_id, now)

    def held_count(self) -> int:
        return store.held_count(self.session)


class SqlOutbox:
    def __init__(self, session: Session):
        self.session = session

    def enqueue(self, topic: str, name: str, event_id: str, value: bytes, key: str | None,
                headers: list[tuple[str, bytes]], now: dt.datetime, *, recipient: str | None = None, stream: str | None = None) -> int:
        return outbox.enqueue(self.session, topic, name, event_id, value, key, headers, now, recipient=recipient, stream=stream).id


class SqlProcessedEvents:
    def __init__(self, session: Session):
        self.session = session

    def first_time(self, consumer: str, event_id: str) -> bool:
        return idempotency.first_time(self.session, consumer, event_id)


class SqlDisclosureAudit:
    def __init__(self, session: Session):
        self.session = session

    def add(self, plan: dict, person_key: str, outbox_id: int, now: dt.datetime, disclosed: bool = True) -> None:
        store.add_disclosure(self.session, plan=plan, person_key=person_key, outbox_id=outbox_id, now=now, disclosed=disclosed)

    def of_person(self, person_key: str) -> list[store.Disclosure]:
        return store.disclosures(self.session, person_key)

    def withdrawals(self, request_ids: Iterable[str]) -> dict[str, list[dict]]:
        return disclosure_check.withdrawals(self.session, request_ids)


class SqlConsentUnitOfWork:
    """One session, one transaction: committed by `commit()`, rolled back otherwise, closed at the end."""

    def __init__(self, sessions: sessionmaker):
        self.sessions = sessions

    def __enter__(self) -> SqlConsentUnitOfWork:
        self.session = self.sessions()
        self.consents = SqlConsentHistory(self.session)
        self.outbox = SqlOutbox(self.session)
        self.processed = SqlProcessedEvents(self.session)
        self.audit = SqlDisclosureAudit(self.session)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is not None:
                self.session.rollback()
        finally:
            # also ends a transaction not committed; unlike rollback() it leaves the rows read in it
            # loaded, so a reading use case may use them after the block
            self.session.close()

    def commit(self) -> None:
        self.session.commit()


class SqlConsentUnits:
    """A new unit of work over `sessions` for each transaction: what `ConsentRegistry` is built with."""

    def __init__(self, sessions: sessionmaker):
        self.sessions = sessions

    def __call__(self) -> SqlConsentUnitOfWork:
        return SqlConsentUnitOfWork(self.sessions)
