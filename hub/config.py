"""Settings from the environment, read in one place (the composition root reads them)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.domain.publishers import Publishers


def _env_int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer; unset it or give a whole number") from None


def _env_float(env: dict, name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; unset it or give a number of seconds") from None


# The embedded demo's person-key secret: under it a person key reverses to the identity code by trying
# every code (a few million), so production commands refuse it (`Settings.require_production_secrets`).
DEMO_PERSON_KEY_SECRET = "embedded-demo-secret-change-me"


class DemoSecrets(ValueError):
    """A production command found a demo secret: the message says which variable to set and how."""


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _env_choice(env: dict, name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or default).strip().upper()
    if raw not in choices:
        raise ValueError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return raw


def _publishers(env: dict):
    """The identity configuration: the file named by HUB_PUBLISHERS with the keys it names from env."""
    path = env.get("HUB_PUBLISHERS")
    if not path:
        return None
    from hub.adapters.publisher_keys import load

    return load(path, env)


@dataclass(frozen=True)
class Settings:
    """Every setting of the hub. `Settings.from_env()` is the only reader of os.environ.

    Consumer-group timings: faust's defaults (session timeout 60 s, rebalance 60 s, heartbeat 3 s)
    make a worker wait out the session timeout when it joins, which on the embedded broker delayed
    the first event by 32 s. The defaults below (6 s / 6 s / 1 s) brought it to about 4.5 s and are
    within the limits a real Apache Kafka cluster accepts (group.min.session.timeout.ms is 6 s).
    """

    kafka_url: str | None = None  # HUB_KAFKA_URL; None -> start the embedded broker
    database_url: str | None = None  # HUB_DATABASE_URL; None -> SQLite under data_dir
    data_dir: Path = field(default_factory=lambda: Path(".hub-data"))
    app_id: str = "integration-hub"
    topic_partitions: int = 1
    session_timeout: float = 6.0
    startup_timeout: float = 60.0  # HUB_STARTUP_TIMEOUT: seconds a command waits for a broker or database that is down at start
    producer_timeout: float = 60.0  # HUB_KAFKA_PRODUCER_TIMEOUT: seconds before an unacknowledged record fails
    max_poll_records: int = 500  # HUB_KAFKA_MAX_POLL_RECORDS: records per poll, shared by every topic the worker reads
    fetch_max_wait_ms: int = 100  # HUB_KAFKA_FETCH_MAX_WAIT_MS: how long the broker may hold a fetch with nothing new (faust: 1500)
    # HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS: the fetch wait of the pipeline's batch consumers (newcomer detection, routing; the latency
    # path) while records flow; after a quiet second they wait fetch_max_wait_ms (hub.adapters.batch_consumer, `_pace`)
    pipeline_fetch_max_wait_ms: int = 5
    max_fetch_bytes: int = 64 * 1024  # HUB_KAFKA_MAX_FETCH_BYTES: bytes fetched per partition at a time (a larger record still comes whole)
    producer_linger_ms: int = 0  # HUB_KAFKA_PRODUCER_LINGER_MS: how long the worker's producer waits to gather records into one request (faust: 0)
    gc_threshold: int = 10_000  # HUB_GC_THRESHOLD: the worker's gen0 collection threshold after it freezes its start-up objects (hub.streams.gc_tuning); 0: Python's own
    rebalance_timeout: float = 6.0
    heartbeat_interval: float = 1.0
    metrics_port: int = 9108  # HUB_METRICS_PORT; 0 picks a free port
    metrics_addr: str = "127.0.0.1"  # HUB_METRICS_ADDR; 0.0.0.0 to let a Prometheus on another host scrape
    person_key_secret: str = DEMO_PERSON_KEY_SECRET  # HUB_PERSON_KEY_SECRET: the HMAC secret of person keys
    # HUB_DATA_KEYS: Fernet keys (comma-separated, the first encrypts) for personal data kept at rest
    # (hub.adapters.sealing); empty -> the demo key
    data_keys: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = "INFO"
    clock_skew: float = 300.0  # HUB_CLOCK_SKEW: seconds an input's occurred_at may be ahead of our clock before it is future_date
    newcomer_window_days: int = 3 * 365  # HUB_NEWCOMER_WINDOW_DAYS: arrivals older than this are not newcomers
    routing_rules: str | None = None  # HUB_ROUTING_RULES: a deployment's own rules file (default: the shipped one)
    # DVV VTJ-muutosrajapinta (hub ingest dvv --poll)
    dvv_url: str | None = None  # HUB_DVV_URL, base URL ending in /api/v1
    dvv_xroad_client: str | None = None  # HUB_DVV_XROAD_CLIENT, e.g. FI/MUN/0201256-6/integration-hub
    dvv_username: str | None = None  # HUB_DVV_USERNAME (HTTP Basic)
    dvv_password: str | None = field(default=None, repr=False)  # HUB_DVV_PASSWORD; never printed
    dvv_municipalities: tuple[str, ...] = ()  # HUB_DVV_MUNICIPALITIES, comma-separated codes
    dvv_timeout: float = 30.0  # HUB_DVV_TIMEOUT, seconds per request
    dvv_retries: int = 5  # HUB_DVV_RETRIES, attempts per request on 429/5xx/connection errors
    consent_legal_bases: Path | None = None  # HUB_CONSENT_LEGAL_BASES; None -> the shipped (empty) file
    outbox_relay: bool = True  # HUB_OUTBOX_RELAY=off: this worker commits to the outbox but does not publish it
    # Kafka TLS/SASL (hub.adapters.kafka_security turns these into faust / kafka-python settings)
    kafka_security_protocol: str = "PLAINTEXT"  # HUB_KAFKA_SECURITY_PROTOCOL: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"  # HUB_KAFKA_SASL_MECHANISM: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str | None = None  # HUB_KAFKA_SASL_USERNAME
    kafka_sasl_password: str | None = field(default=None, repr=False)  # HUB_KAFKA_SASL_PASSWORD; never printed
    kafka_ssl_cafile: str | None = None  # HUB_KAFKA_SSL_CAFILE: CA bundle (PEM) that signed the brokers' certificates
    kafka_ssl_certfile: str | None = None  # HUB_KAFKA_SSL_CERTFILE: client certificate (PEM) for mutual TLS
    kafka_ssl_keyfile: str | None = None  # HUB_KAFKA_SSL_KEYFILE: its private key (PEM)
    # HUB_WEBHOOKS_ALLOW_LOOPBACK=on: webhooks may go to loopback addresses (local receivers in tests and
    # development only; never set in the shipped deployments). Off: only public addresses (hub.webhooks.policy)
    webhooks_allow_loopback: bool = False
    # HUB_PUBLISHERS: who may publish what on the input topics (signed records); None -> no check
    publishers: "Publishers | None" = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("HUB_DATA_DIR") or ".hub-data")
        return cls(
            kafka_url=env.get("HUB_KAFKA_URL") or None,
            database_url=env.get("HUB_DATABASE_URL") or None,
            data_dir=data_dir,
            app_id=env.get("HUB_APP_ID") or "integration-hub",
            topic_partitions=_env_int(env, "HUB_TOPIC_PARTITIONS", 1),
            session_timeout=_env_float(env, "HUB_KAFKA_SESSION_TIMEOUT", 6.0),
            startup_timeout=_env_float(env, "HUB_STARTUP_TIMEOUT", 60.0),
            producer_timeout=_env_float(env, "HUB_KAFKA_PRODUCER_TIMEOUT", 60.0),
            max_poll_records=_env_int(env, "HUB_KAFKA_MAX_POLL_RECORDS", 500),
            max_fetch_bytes=_env_int(env, "HUB_KAFKA_MAX_FETCH_BYTES", 64 * 1024),
            fetch_max_wait_ms=_env_int(env, "HUB_KAFKA_FETCH_MAX_WAIT_MS", 100),
            pipeline_fetch_max_wait_ms=_env_int(env, "HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS", 5),
            producer_linger_ms=_env_int(env, "HUB_KAFKA_PRODUCER_LINGER_MS", 0),
            gc_threshold=_env_int(env, "HUB_GC_THRESHOLD", 10_000),
            rebalance_timeout=_env_float(env, "HUB_KAFKA_REBALANCE_TIMEOUT", 6.0),
            heartbeat_interval=_env_float(env, "HUB_KAFKA_HEARTBEAT_INTERVAL", 1.0),
            metrics_port=_env_int(env, "HUB_METRICS_PORT", 9108),
            metrics_addr=env.get("HUB_METRICS_ADDR") or "127.0.0.1",
            person_key_secret=env.get("HUB_PERSON_KEY_SECRET") or DEMO_PERSON_KEY_SECRET,
            data_keys=tuple(k.strip() for k in (env.get("HUB_DATA_KEYS") or "").split(",") if k.strip()),
            log_level=(env.get("HUB_LOG_LEVEL") or "INFO").upper(),
            clock_skew=_env_float(env, "HUB_CLOCK_SKEW", 300.0),
            newcomer_window_days=_env_int(env, "HUB_NEWCOMER_WINDOW_DAYS", 3 * 365),
            routing_rules=env.get("HUB_ROUTING_RULES") or None,
            dvv_url=env.get("HUB_DVV_URL") or None,
            dvv_xroad_client=env.get("HUB_DVV_XROAD_CLIENT") or None,
            dvv_username=env.get("HUB_DVV_USERNAME") or None,
            dvv_password=env.get("HUB_DVV_PASSWORD") or None,
            dvv_municipalities=tuple(c.strip() for c in (env.get("HUB_DVV_MUNICIPALITIES") or "").split(",") if c.strip()),
            dvv_timeout=_env_float(env, "HUB_DVV_TIMEOUT", 30.0),
            dvv_retries=_env_int(env, "HUB_DVV_RETRIES", 5),
            consent_legal_bases=Path(env["HUB_CONSENT_LEGAL_BASES"]) if env.get("HUB_CONSENT_LEGAL_BASES") else None,
            outbox_relay=(env.get("HUB_OUTBOX_RELAY") or "on").lower() not in ("off", "0", "false", "no"),
            kafka_security_protocol=_env_choice(env, "HUB_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", SECURITY_PROTOCOLS),
            kafka_sasl_mechanism=_env_choice(env, "HUB_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", SASL_MECHANISMS),
            kafka_sasl_username=env.get("HUB_KAFKA_SASL_USERNAME") or None,
            kafka_sasl_password=env.get("HUB_KAFKA_SASL_PASSWORD") or None,
            kafka_ssl_cafile=env.get("HUB_KAFKA_SSL_CAFILE") or None,
            kafka_ssl_certfile=env.get("HUB_KAFKA_SSL_CERTFILE") or None,
            kafka_ssl_keyfile=env.get("HUB_KAFKA_SSL_KEYFILE") or None,
            publishers=_publishers(env),
            webhooks_allow_loopback=(env.get("HUB_WEBHOOKS_ALLOW_LOOPBACK") or "off").lower() in ("on", "1", "true", "yes"),
        )

    @property
    def clock_skew_delta(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.clock_skew)

    def require_production_secrets(self) -> None:
        """Raise DemoSecrets unless HUB_PERSON_KEY_SECRET and HUB_DATA_KEYS are set to values of their
        own: every command that writes person keys or personal data outside the embedded demo calls
        this before it touches anything (hub worker, hub ingest dvv without --dry-run, hub consent,
        hub audit, hub webhooks; the README's configuration section lists them and the exceptions)."""
        from hub.adapters.sealing import demo_key

        if self.person_key_secret == DEMO_PERSON_KEY_SECRET:
            raise DemoSecrets("HUB_PERSON_KEY_SECRET is not set (the demo secret would let anyone reverse person keys to identity codes); "
                              "set it to a random secret of your own, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        if not self.data_keys or self.data_keys == (demo_key(),):
            raise DemoSecrets("HUB_DATA_KEYS is not set (personal data at rest would be sealed under the demo key); set it to a Fernet key, "
                              "e.g. `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`")

    def signing_key(self) -> bytes | None:
        """The key the hub signs its own records with: its entry (id = app id) in the publishers file."""
        me = self.publishers.get(self.app_id) if self.publishers else None
        return me.keys[0] if me else None

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'hub.sqlite3').resolve()}"

    def with_kafka_url(self, url: str) -> "Settings":
        from dataclasses import replace

        return replace(self, kafka_url=url)
