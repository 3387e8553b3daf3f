"""Reachability checks of the worker's dependencies (the container health check and readiness probe)."""

from __future__ import annotations

from dataclasses import dataclass

from hub.config import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_broker(settings: Settings, kafka_url: str, timeout: float) -> Check:
    """The bootstrap servers answer a metadata request with the configured TLS/SASL."""
    from kafka.admin import KafkaAdminClient

    from hub.adapters.kafka_admin import bootstrap_of
    from hub.adapters.kafka_security import KafkaSecurityError, kafka_client_options

    ms = max(1000, int(timeout * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_of(kafka_url), client_id="hub-healthcheck", request_timeout_ms=ms,
            bootstrap_timeout_ms=ms, **kafka_client_options(settings),
        )
    except KafkaSecurityError as exc:
        return Check("kafka", False, str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure to connect is "unreachable"
        return Check("kafka", False, f"{bootstrap_of(kafka_url)} unreachable: {type(exc).__name__}")
    try:
        brokers = admin.describe_cluster().get("brokers", [])
        return Check("kafka", True, f"{len(brokers)} broker(s)")
    except Exception as exc:  # noqa: BLE001
        return Check("kafka", False, f"{bootstrap_of(kafka_url)} did not answer: {type(exc).__name__}")
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
