"""The composition root of the stream processors: one place that builds the whole pipeline.

`build()` upgrades the database to the migrations' head (under a PostgreSQL advisory lock, so that
workers starting together do not race; `hub db upgrade` beforehand is optional), makes the faust app and registers every agent with its
real dependencies; the worker, the demo, the tests and the benchmarks all start from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.adapters import sealing
from hub.adapters.database import upgrade
from hub.config import Settings
from hub.adapters.database import create_engine, session_factory
from hub.streams import consent_agents, newcomer_agents, ops_agents, routing_agents
from hub.streams.app import HubApp


@dataclass
class Pipeline:
    hub: HubApp
    newcomers: newcomer_agents.NewcomerObserved
    routing: routing_agents.RoutingObserved
    consent: consent_agents.ConsentWiring
    ops: ops_agents.OpsObserved  # /metrics endpoint (bound port in ops.endpoint.port once running) and consumer lag


def build(settings: Settings, kafka_url: str) -> Pipeline:
    sealing.configure(settings.data_keys)  # personal data at rest (HUB_DATA_KEYS)
    database_url = settings.resolved_database_url()
    upgrade(database_url)
    hub = HubApp(settings, kafka_url)
    newcomers = newcomer_agents.register(hub, window_days=settings.newcomer_window_days)
    routing = routing_agents.register(hub, database_url=database_url, rules=_rules(settings))
    consent = consent_agents.register(hub, session_factory(create_engine(database_url)), relay=settings.outbox_relay)
    ops = ops_agents.register(hub)  # serves /metrics on HUB_METRICS_ADDR:HUB_METRICS_PORT while the app runs
    return Pipeline(hub=hub, newcomers=newcomers, routing=routing, consent=consent, ops=ops)


def _rules(settings: Settings):
    if not settings.routing_rules:
        return None
    from hub.routing.rules import load_rules

    return load_rules(settings.routing_rules)
