"""Operations of a running worker: /metrics over HTTP and the consumer-lag gauge.

`register(hub)` attaches both to the faust app, so they start and stop with it, whether the app
runs under `hub worker` (faust.Worker) or in-process (`hub.streams.runner.running`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from mode import Service

from hub import metrics
from hub.streams.app import HubApp

log = logging.getLogger(__name__)


class MetricsPortUnavailable(RuntimeError):
    """The /metrics port cannot be bound (in use, or not allowed)."""


@dataclass
class MetricsEndpoint:
    """The /metrics HTTP server of this process; `port` is the bound port once started."""

    addr: str
    requested_port: int
    port: int | None = None
    _server: object = field(default=None, repr=False)

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> int:
        if self._server is not None:
            return self.port  # type: ignore[return-value]
        try:
            server, _thread = metrics.serve(self.requested_port, self.addr)
        except OSError as exc:
            raise MetricsPortUnavailable(
                f"cannot serve /metrics on {self.addr}:{self.requested_port} ({exc.strerror or exc}); "
                "set HUB_METRICS_PORT to a free port (0 picks one) or HUB_METRICS_ADDR to another address"
            ) from None
        self._server = server
        self.port = server.server_port
        log.info("metrics: serving %s", self.url)
        return self.port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def lag_by_topic(end_offsets: Mapping, next_offsets: Mapping) -> dict[str, int]:
    """Messages behind the end per topic: sum over partitions of end offset - next offset to process.

    Keys are topic partitions (anything with `.topic`). A partition without an end offset is
    skipped (unknown, not zero); one without a next offset counts from 0.
    """
    lag: dict[str, int] = {}
    for tp, end in end_offsets.items():
        if end is None:
            continue
        behind = max(0, int(end) - int(next_offsets.get(tp) or 0))
        lag[tp.topic] = lag.get(tp.topic, 0) + behind
    return lag


@dataclass
class LagObserved:
    """The last consumer lag set on the gauge (tests, demo)."""

    by_topic: dict[str, int] = field(default_factory=dict)
    updates: int = 0


async def measure_consumer_lag(hub: HubApp, observed: LagObserved | None = None) -> dict[str, int]:
    """Set hub_consumer_lag_messages{topic} for every topic this worker consumes (with faust's
    consumer or a batch consumer).

    The end offsets are asked from the broker (not the last fetch's highwater, which stalls when
    the consumer does); the next offset per partition is the committed offset (faust's consumer
    learns it from the broker on assignment and updates it on each commit), else the earliest
    available offset (nothing committed yet, `auto_offset_reset=earliest`). faust's own topics
    (table changelogs, the assignor's leader topic) are left out: they are never committed.
    """
    app = hub.app
    consumer = app.consumer
    internal = _internal_topics(app)
    tps = [tp for tp in consumer.assignment() if tp.topic not in internal]
    end = await consumer.highwaters(*tps) if tps else {}
    committed = _committed_offsets(app, tps)
    missing = [tp for tp in tps if committed.get(tp) is None]
    if missing:
        committed.update(await consumer.earliest_offsets(*missing))
    lag = lag_by_topic(end, committed)
    for batch_consumer in hub.batch_consumers:  # topics read without faust (population changes, newcomers), same measure
        for topic, behind in (await batch_consumer.lag()).items():
            lag[topic] = lag.get(topic, 0) + behind
    for topic, value in lag.items():
        metrics.consumer_lag.labels(topic).set(value)
    for gone in set(observed.by_topic if observed else ()) - set(lag):  # moved to another worker by a rebalance
        try:
            metrics.consumer_lag.remove(gone)
        except KeyError:
            pass
    if observed is not None:
        observed.by_topic = dict(lag)
        observed.updates += 1
    return lag


def _internal_topics(app) -> set[str]:
    """Topics faust reads for itself: table changelogs and the partition-assignor's leader topic."""
    names = set(getattr(app.consumer, "randomly_assigned_topics", None) or ())  # the leader topic
    for table in app.tables.values():
        try:
            names.add(table.changelog_topic.get_topic_name())
        except Exception:  # noqa: BLE001 - a table without a changelog has nothing to exclude
            continue
    return names


def _committed_offsets(app, tps: Iterable) -> dict:
    # the monitor's public map has this process's commits; the consumer's map also has the
    # offsets read from the broker at assignment (faust keeps it as `_committed_offset`)
    from_monitor = dict(app.monitor.tp_committed_offsets or {})
    from_consumer = getattr(app.consumer, "_committed_offset", {}) or {}
    out = {}
    for tp in tps:
        known = [o for o in (from_monitor.get(tp), from_consumer.get(tp)) if o is not None]
        out[tp] = max(known) if known else None
    return out


@dataclass
class OpsObserved:
    endpoint: MetricsEndpoint
    lag: LagObserved


def register(hub: HubApp, lag_interval: float = 5.0) -> OpsObserved:
    """Serve /metrics while the app runs, and refresh the consumer-lag gauge every `lag_interval` s."""
    endpoint = MetricsEndpoint(hub.settings.metrics_addr, hub.settings.metrics_port)
    lag = LagObserved()

    @hub.app.service
    class MetricsService(Service):
        async def on_start(self) -> None:
            endpoint.start()

        async def on_stop(self) -> None:
            endpoint.stop()

    @hub.app.timer(interval=lag_interval, name="ops-consumer-lag")
    async def consumer_lag() -> None:
        try:
            await measure_consumer_lag(hub, lag)
        except Exception as exc:  # noqa: BLE001 - a failed measurement must not stop the worker
            log.warning("consumer lag not measured this time: %s", type(exc).__name__)

    return OpsObserved(endpoint=endpoint, lag=lag)
