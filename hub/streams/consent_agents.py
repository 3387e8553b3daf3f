"""Consent-gated propagation: thin agents on hub.assessments.v1 and hub.consents.v1, the outbox
relay, and the periodic sweep (expiries; consents that became valid). The decisions are in
hub.consent.model, the transactions in hub.services.consent.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from hub import metrics
from hub.adapters.batch_consumer import is_outage
from hub.adapters.database import create_engine, session_factory, with_database_retry
from hub.consent import legal_bases as legal_basis_file
from hub.consent import records
from hub.consent.model import InvalidConsent, LegalBasis
from hub.services.consent import ConsentRegistry, Outcome
from hub.domain import hetu
from hub.schemas.codec import CodecError
from hub.schemas import topics
from hub.streams.app import HubApp
from hub.streams.outbox_relay import ConsentsApplied, OutboxRelay

log = logging.getLogger(__name__)


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
) -> ConsentWiring:
    """Declare the consent agents on the hub's app. `relay=False` leaves committed outbox rows unsent
    (tests use it to stand for a worker that dies between the commit and the publish)."""
    settings = hub.settings
    if sessions is None:
        sessions = session_factory(create_engine(settings.resolved_database_url()))
    if legal_bases is None:
        legal_bases = legal_basis_file.load(settings.consent_legal_bases)
    registry = ConsentRegistry(sessions, legal_bases=legal_bases, person_key_secret=settings.person_key_secret, codec=hub.codec,
                               recorded_by=settings.app_id)
    # the relay sends a plan request only after every consent on hub.consents.v1 is applied (this worker's agent reports its positions)
    consents_applied = ConsentsApplied(hub)
    outbox_relay = OutboxRelay(hub, sessions, legal_bases=registry.legal_bases, consents=consents_applied)
    metrics.consent_held.set(registry.held_count())

    async def after(outcome: Outcome) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        for recipient, _categories, assessed_at in outcome.disclosed:
            metrics.disclosures.labels(recipient=recipient).inc()
            metrics.assessment_to_plan_request.observe(max(0.0, (now - assessed_at).total_seconds()))
        if outcome.held or outcome.released:
            metrics.consent_held.set(registry.held_count())
        if relay and (outcome.disclosed or outcome.notices or outcome.recorded):
            await outbox_relay.flush_or_log()

    async def reject(event, topic: str, reason: str, message: str) -> None:
        await hub.dead_letter_acked(event.message, reason, message)  # exists (acknowledged or kept) before the agent takes the next record
        metrics.events_consumed.labels(topic=topic, outcome="dead_letter").inc()

    async def decode(event, topic: str, name: str, convert):
        """The domain object of an event, or None after dead-lettering it with a precise reason."""
        try:
            return convert(hub.codec.decode(event.message.value, name).record, now=dt.datetime.now(dt.timezone.utc), skew=settings.clock_skew_delta)
        except CodecError as exc:
            await reject(event, topic, exc.reason, exc.detail)
        except InvalidConsent as exc:
            await reject(event, topic, exc.reason, f"{name}: {exc}")
        return None

    def done(topic: str, event) -> None:
        if topic == topics.CONSENTS:
            consents_applied.applied(event.message.partition, event.message.offset)

    def consume(topic: str, schema: str, convert, handle, outcome) -> None:
        """An agent: decode (or dead-letter), apply in one transaction, count, relay."""

        async def apply(event) -> None:
            item = await decode(event, topic, schema, convert)
            if item is None:
                return
            try:
                result = await with_database_retry(lambda: handle(item, event), f"consent: applying a {schema}")
            except InvalidConsent as exc:  # refused against the registry: consent_ended, consent_id_in_use, person_key_mismatch
                await reject(event, topic, exc.reason, f"{schema}: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - a record this code cannot apply must not stop the agent
                if is_outage(exc):  # waited out by handle_safely, nothing dead-lettered
                    raise
                # the traceback may quote SQL parameters: scrub identity codes before logging it
                log.error("consent: applying a %s failed; dead-lettered: %s", schema, hetu.scrub(traceback.format_exc()))
                await reject(event, topic, "processing_error", f"applying the {schema} failed ({type(exc).__name__}); see the worker log, fix, and replay it")
                return
            done(topic, event)  # before `after`: its flush may send plan requests that waited for this consent
            metrics.events_consumed.labels(topic=topic, outcome="duplicate" if result.duplicate else outcome(item, result)).inc()
            await after(result)

        @hub.app.agent(hub.topic(topic), name=f"consent-{schema}")
        async def agent(stream):
            async for event in stream.events():
                await hub.handle_safely(event, apply, f"consent: a {schema}")
                done(topic, event)  # applied or dead-lettered: the relay may count it as applied

    def assessment_from_avro(rec, **kw):
        return records.assessment_from_avro(rec, person_key_secret=settings.person_key_secret, **kw)

    consume(topics.ASSESSMENTS, "AssessmentCompleted", assessment_from_avro,
            lambda a, event: registry.handle_assessment(a, bytes(event.message.value)),
            lambda a, result: "disclosed" if result.disclosed else "held")
    consume(topics.CONSENTS, "Consent", records.consent_from_avro,
            lambda rec, event: registry.record_consent(rec),
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
