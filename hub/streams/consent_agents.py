"""Consent-gated propagation: thin handlers of hub.assessments.v1 and hub.consents.v1 (each read by
a batch consumer, `hub.adapters.kafka.consumer`), the outbox relay, and the periodic sweep (expiries;
consents that became valid). The decisions are in hub.consent.model, the transactions in
hub.services.consent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from hub.domain.clock import utcnow
from hub import metrics
from hub.adapters.consent_uow import SqlConsentUnits
from hub.adapters.database import create_engine, session_factory, with_database_retry
from hub.consent import legal_bases as legal_basis_file
from hub.consent import records
from hub.consent.model import InvalidConsent, LegalBasis
from hub.services.consent import ConsentRegistry, Outcome
from hub.schemas.codec import CodecError
from hub.schemas import topics
from hub.streams.app import HubApp
from hub.streams.outbox_relay import CONSENTS_CONSUMER, ConsentsApplied, OutboxRelay

log = logging.getLogger(__name__)

ASSESSMENTS_CONSUMER = "consent-assessments"  # the batch consumer of assessments, group `<app id>.consent-assessments`


@dataclass
class ConsentWiring:
    """What register() built, for the demo summary and tests."""

    registry: ConsentRegistry
    relay: OutboxRelay


def register(
    hub: HubApp,
    sessions: sessionmaker | None = None,
    *,
    legal_bases: Sequence[LegalBasis] | None = None,
    relay: bool = True,
    relay_interval: float = 1.0,
    sweep_interval: float = 60.0,
    batch_size: int = 100,
) -> ConsentWiring:
    """Read the consent topics with batch consumers of the hub's app. `relay=False` leaves committed
    outbox rows unsent (tests use it to stand for a worker that dies between the commit and the publish).

    A batch's records are handled one at a time, in offset order: decoded (a record that does not
    decode, or that the registry refuses, is dead-lettered with the precise reason), applied in one
    transaction each, counted, and the outbox relayed. An outage raises: nothing of the batch is
    committed and it is read again (a record applied already is a duplicate then). Any other error
    is the record's own: the batch consumer narrows the batch down to it and dead-letters it once."""
    settings = hub.settings
    if sessions is None:
        sessions = session_factory(create_engine(settings.resolved_database_url()))
    if legal_bases is None:
        legal_bases = legal_basis_file.load(settings.consent_legal_bases)
    registry = ConsentRegistry(SqlConsentUnits(sessions), legal_bases=legal_bases, person_key_secret=settings.person_key_secret, codec=hub.codec,
                               recorded_by=settings.app_id)
    # the relay sends a plan request only after every consent on hub.consents.v1 is applied: by this
    # worker's consumer (which reports its positions) or by another member of its group (committed offsets)
    consents_applied = ConsentsApplied(hub)
    outbox_relay = OutboxRelay(hub.publisher, sessions, legal_bases=registry.legal_bases, consents=consents_applied)
    metrics.consent_held.set(registry.held_count())

    async def after(outcome: Outcome) -> None:
        now = utcnow()
        for recipient, _categories, assessed_at in outcome.disclosed:
            metrics.disclosures.labels(recipient=recipient).inc()
            metrics.assessment_to_plan_request.observe(max(0.0, (now - assessed_at).total_seconds()))
        for _recipient, assessed_at in outcome.own_plans:  # a plan request to the assessor itself: no disclosure
            metrics.assessment_to_plan_request.observe(max(0.0, (now - assessed_at).total_seconds()))
        if outcome.held or outcome.released:
            metrics.consent_held.set(registry.held_count())
        if relay and (outcome.disclosed or outcome.own_plans or outcome.notices or outcome.recorded):
            await outbox_relay.flush_or_log()

    async def reject(msg, topic: str, reason: str, message: str) -> None:
        """Dead-letter `msg` and return once its dead letter exists (an outage raises: the batch is read again)."""
        first = not hub.publisher.dead_lettered_already(msg)  # a narrowed-down batch is handled again: count each record once
        sends: list = []
        await hub.publisher.dead_letter_acked(msg, reason, message, sends)
        await sends[0]
        if first:
            metrics.events_consumed.labels(topic=topic, outcome="dead_letter").inc()

    async def decode(msg, topic: str, name: str, convert):
        """The domain object of a record, or None after dead-lettering it with a precise reason."""
        try:
            return convert(hub.codec.decode(msg.value, name).record, now=utcnow(), skew=settings.clock_skew_delta)
        except CodecError as exc:
            await reject(msg, topic, exc.reason, exc.message)
        except InvalidConsent as exc:
            await reject(msg, topic, exc.reason, f"{name}: {exc}")
        return None

    def done(topic: str, msg) -> None:
        """The record is applied or dead-lettered: the relay may count it as applied."""
        if topic == topics.CONSENTS:
            consents_applied.applied(msg.partition, msg.offset)

    def consume(name: str, topic: str, schema: str, convert, handle, outcome) -> None:
        """A batch consumer of `topic`: per record, the publisher check, decode (or dead-letter), apply
        in one transaction, count, relay."""

        async def apply(msg) -> None:
            if hub.publisher_check.checks_publishers(msg.topic):
                refused = await hub.publisher_check.refuse(msg)
                if refused is not None:
                    await refused  # the dead letter exists before the record counts as done
                    return
            item = await decode(msg, topic, schema, convert)
            if item is None:
                return
            try:
                result = await with_database_retry(lambda: handle(item, msg), f"consent: applying a {schema}")
            except InvalidConsent as exc:  # refused against the registry: consent_ended, consent_id_in_use, person_key_mismatch
                await reject(msg, topic, exc.reason, f"{schema}: {exc}")
                return
            done(topic, msg)  # before `after`: its flush may send plan requests that waited for this consent
            metrics.events_consumed.labels(topic=topic, outcome="duplicate" if result.duplicate else outcome(item, result)).inc()
            await after(result)

        async def apply_batch(batch) -> None:
            for msg in batch:
                await apply(msg)
                done(topic, msg)

        consumer = hub.batch_consumer(name, topic, apply_batch, batch_size)
        dead_letter_alone = consumer.isolate

        async def isolate(msg, exc) -> None:
            """A record whose handling failed alone: dead-lettered by the hub, then done for the relay."""
            await dead_letter_alone(msg, exc)
            done(topic, msg)

        consumer.isolate = isolate

    def assessment_from_avro(rec, **kw):
        return records.assessment_from_avro(rec, person_key_secret=settings.person_key_secret, **kw)

    consume(ASSESSMENTS_CONSUMER, topics.ASSESSMENTS, "AssessmentCompleted", assessment_from_avro,
            lambda a, msg: registry.handle_assessment(a, bytes(msg.value)),
            lambda a, result: "disclosed" if result.disclosed else "own_plan" if result.own_plans else "held")
    consume(CONSENTS_CONSUMER, topics.CONSENTS, "Consent", records.consent_from_avro,
            lambda rec, msg: registry.record_consent(rec),
            lambda rec, result: rec.action)

    if relay:
        hub.app.service(consents_applied)  # stops its Kafka client with the app
        outbox_relay.refresh_gauge()

        @hub.app.timer(relay_interval, name="consent-outbox-relay")
        async def relay_pending():
            # rows written by `hub consent grant|revoke` or left by a crashed worker
            await outbox_relay.flush_or_log()

    @hub.app.timer(sweep_interval, name="consent-sweep")
    async def sweep():
        try:
            outcome = registry.sweep()
            metrics.consent_held.set(registry.held_count())  # also counts what `hub consent grant` released
        except sa.exc.SQLAlchemyError as exc:
            log.warning("consent sweep: database error (%s); the next sweep retries", type(exc).__name__)
            return
        await after(outcome)

    return ConsentWiring(registry, outbox_relay)
