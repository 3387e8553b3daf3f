"""The composition root of the stream processors: one place that builds the whole pipeline.

`build()` upgrades the database to the migrations' head (under a PostgreSQL advisory lock, so that
workers starting together do not race; `hub db upgrade` beforehand is optional), makes the one
database engine of the worker, the hub's app with its publisher and publisher check (`hub_app`),
and registers every stream with its real dependencies on that engine; the worker, the demo, the
tests and the benchmarks all start from here. `hub_app()` alone: an app without streams, which the
integration tests register their own on.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from hub.adapters import sealing
from hub.adapters.circumstances_store import SqlCircumstances
from hub.adapters.database import create_engine, session_factory, upgrade
from hub.adapters.dead_letter_store import DeadLetterStore
from hub.adapters.kafka.publisher import Publisher
from hub.adapters.kafka.publisher_check import PublisherCheck
from hub.adapters.person_states import SqlPersonStates
from hub.adapters.referral_ledger import ReferralLedger
from hub.config import Settings
from hub.schemas.codec import Codec, default_codec
from hub.schemas.topics import INPUT_TOPICS
from hub.streams import consent_agents, fact_agents, newcomer_agents, ops_agents, routing_agents
from hub.streams.app import HubApp


@dataclass
class Pipeline:
    hub: HubApp
    newcomers: newcomer_agents.NewcomerObserved
    facts: fact_agents.FactsObserved  # the fact intake: jobseeker status, residence permits, service needs -> routing facts
    routing: routing_agents.RoutingObserved
    consent: consent_agents.ConsentWiring
    ops: ops_agents.OpsObserved  # /metrics endpoint (bound port in ops.endpoint.port once running) and consumer lag
    engine: sa.Engine  # the worker's one database engine: detection's states, routing's circumstances, the ledger, consents, kept dead letters


def build(settings: Settings, kafka_url: str) -> Pipeline:
    sealing.configure(settings.data_keys)  # personal data at rest (HUB_DATA_KEYS)
    database_url = settings.resolved_database_url()
    upgrade(database_url)
    engine = create_engine(database_url)
    hub = hub_app(settings, kafka_url, dead_letter_store=DeadLetterStore(engine))
    newcomers = newcomer_agents.register(hub, window_days=settings.newcomer_window_days, states=SqlPersonStates(engine))
    facts = fact_agents.register(hub)
    routing = routing_agents.register(hub, ledger=ReferralLedger(engine), circumstances=SqlCircumstances(engine), rules=_rules(settings))
    consent = consent_agents.register(hub, session_factory(engine), relay=settings.outbox_relay)
    ops = ops_agents.register(hub)  # serves /metrics on HUB_METRICS_ADDR:HUB_METRICS_PORT while the app runs
    return Pipeline(hub=hub, newcomers=newcomers, facts=facts, routing=routing, consent=consent, ops=ops, engine=engine)


def hub_app(settings: Settings, kafka_url: str, codec: Codec | None = None, *, signed_topics: tuple[str, ...] = INPUT_TOPICS,
            dead_letter_store: DeadLetterStore | None = None) -> HubApp:
    """The hub's app with its publisher and publisher check, made once here. `signed_topics`: the
    topics whose records must be signed when `settings.publishers` is set (the input topics; tests
    name their own). `dead_letter_store` keeps dead letters too large for the topic (else made on first use)."""
    codec = codec or default_codec()
    hub: HubApp | None = None
    # outside a batch consumer the publisher sends through the app's producer (made when the app starts)
    publisher = Publisher(settings, kafka_url, codec, lambda: hub.producer if hub is not None else None)
    publisher.dead_letter_store = dead_letter_store
    check = PublisherCheck(settings.publishers, frozenset(signed_topics), codec, publisher)
    hub = HubApp(settings, kafka_url, codec, publisher=publisher, publisher_check=check)
    return hub


def _rules(settings: Settings):
    if not settings.routing_rules:
        return None
    from hub.routing.rules import load_rules

    return load_rules(settings.routing_rules)
