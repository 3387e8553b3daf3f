"""Operations of a running worker: /metrics and /health over HTTP, and the consumer-lag gauge.

`register(hub)` attaches both to the faust app, so they start and stop with it, whether the app
runs under `hub worker` (faust.Worker) or in-process (`hub.streams.runner.running`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

from mode import Service

from hub import metrics
from hub.streams.app import HubApp

log = logging.getLogger(__name__)


class MetricsPortUnavailable(RuntimeError):
    """The /metrics port cannot be bound (in use, or not allowed)."""


@dataclass
class MetricsEndpoint:
    """The /metrics HTTP server of this process; `port` is the bound port once started. With
    `stopped` (the names of what is not running), it answers `/health` too: 200, or 503 naming them."""

    addr: str
    requested_port: int
    stopped: Callable[[], Iterable[str]] | None = field(default=None, repr=False)
    port_setting: str = "HUB_METRICS_PORT"  # named in the error when the port cannot be bound
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
            server, _thread = metrics.serve(self.requested_port, self.addr, self.stopped)
        except OSError as exc:
            raise MetricsPortUnavailable(
                f"cannot serve /metrics on {self.addr}:{self.requested_port} ({exc.strerror or exc}); "
                f"set {self.port_setting} to a free port (0 picks one) or HUB_METRICS_ADDR to another address"
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


@dataclass
class LagObserved:
    """The last consumer lag set on the gauge (tests, demo)."""

    by_topic: dict[str, int] = field(default_factory=dict)
    updates: int = 0


async def measure_consumer_lag(hub: HubApp, observed: LagObserved | None = None) -> dict[str, int]:
    """Set hub_consumer_lag_messages{topic} for every topic this worker consumes (its batch
    consumers, `BatchConsumer.lag`: the end offsets asked from the broker minus the group's
    committed offsets, the earliest offsets where nothing is committed)."""
    lag: dict[str, int] = {}
    for batch_consumer in hub.batch_consumers:
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


@dataclass
class OpsObserved:
    endpoint: MetricsEndpoint
    lag: LagObserved


def register(hub: HubApp, lag_interval: float = 5.0) -> OpsObserved:
    """Serve /metrics and /health while the app runs (/health: 200 when every batch consumer is
    processing, 503 naming those that are not), and refresh the consumer-lag gauge every `lag_interval` s."""

    def stopped() -> list[str]:
        return [consumer.name for consumer in list(hub.batch_consumers) if not consumer.alive]

    endpoint = MetricsEndpoint(hub.settings.metrics_addr, hub.settings.metrics_port, stopped)
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
