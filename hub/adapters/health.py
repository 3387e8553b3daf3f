"""Reachability checks of the worker's dependencies (the container health check and readiness probe)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Callable

from hub.config import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_broker(settings: Settings, kafka_url: str, timeout: float) -> Check:
    """The bootstrap servers answer a metadata request with the configured TLS/SASL."""
    from kafka.admin import KafkaAdminClient

    from hub.adapters.kafka.security import KafkaSecurityError, bootstrap_servers, kafka_client_options

    ms = max(1000, int(timeout * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers(kafka_url), client_id="hub-healthcheck", request_timeout_ms=ms,
            bootstrap_timeout_ms=ms, **kafka_client_options(settings),
        )
    except KafkaSecurityError as exc:
        return Check("kafka", False, str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure to connect is "unreachable"
        return Check("kafka", False, f"{','.join(bootstrap_servers(kafka_url))} unreachable: {type(exc).__name__}")
    try:
        brokers = admin.describe_cluster().get("brokers", [])
        return Check("kafka", True, f"{len(brokers)} broker(s)")
    except Exception as exc:  # noqa: BLE001
        return Check("kafka", False, f"{','.join(bootstrap_servers(kafka_url))} did not answer: {type(exc).__name__}")
    finally:
        admin.close()


def check_database(database_url: str, timeout: float) -> Check:
    """The database accepts a connection and answers SELECT 1 (the URL's password never printed)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    shown = url.render_as_string(hide_password=True)
    connect_args = {"connect_timeout": max(1, int(timeout))} if url.get_backend_name() == "postgresql" else {}
    try:
        engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001
        return Check("database", False, f"{shown} unreachable: {type(exc).__name__}")
    return Check("database", True, shown)


class ServiceUnavailable(RuntimeError):
    """A service a command needs did not answer within the start-up timeout. The message says which
    (without credentials), for how long it was tried, and what to do."""


@contextlib.contextmanager
def _quiet_clients():
    """The Kafka clients log each refused connection (dozens of lines while waiting); the wait reports
    its own progress instead."""
    loggers = [logging.getLogger(name) for name in ("kafka", "aiokafka")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def wait_until(probe: Callable[[float], Check], what: str, where: str, timeout: float, fix: str,
               progress: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> Check:
    """Call `probe(seconds)` until it answers ok or `timeout` seconds have passed, reporting each
    failed attempt through `progress`; then raise ServiceUnavailable naming `what` at `where` and
    `fix`. A service that is down at start (a container still starting) gets this long to come up."""
    start = clock()
    attempt, pause = 0, 0.5
    while True:
        attempt += 1
        remaining = timeout - (clock() - start)
        check = probe(max(0.5, min(2.0, remaining / 2)))  # room for a second attempt even under a short timeout
        if check.ok:
            return check
        waited = clock() - start
        if waited + pause > timeout:
            detail = check.detail.removeprefix(f"{where} ")
            raise ServiceUnavailable(f"{what} at {where} did not answer within {timeout:g} s ({detail}); {fix}")
        if progress:
            progress(f"waiting for {what} at {where} (attempt {attempt}, {waited:.0f} s of {timeout:g})")
        sleep(pause)
        pause = min(pause * 2, 5.0)


def wait_for_broker(settings: Settings, kafka_url: str, progress: Callable[[str], None] | None = None) -> Check:
    """Wait up to HUB_STARTUP_TIMEOUT for the broker at `kafka_url` (with the TLS/SASL settings)."""
    from hub.adapters.kafka.security import bootstrap_servers

    with _quiet_clients():
        return wait_until(lambda t: check_broker(settings, kafka_url, t), "the broker", ",".join(bootstrap_servers(kafka_url)), settings.startup_timeout,
                          "start it, or check HUB_KAFKA_URL and its TLS/SASL settings (HUB_STARTUP_TIMEOUT sets how long to wait)",
                          progress)


def wait_for_database(settings: Settings, database_url: str, progress: Callable[[str], None] | None = None) -> Check:
    """Wait up to HUB_STARTUP_TIMEOUT for the database at `database_url` (its password never printed)."""
    from sqlalchemy.engine import make_url

    shown = make_url(database_url).render_as_string(hide_password=True)
    return wait_until(lambda t: check_database(database_url, t), "the database", shown, settings.startup_timeout,
                      "start it, or check HUB_DATABASE_URL (HUB_STARTUP_TIMEOUT sets how long to wait)", progress)
