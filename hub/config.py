"""Settings from the environment, declared once in `SETTINGS`: `Settings.from_env()` reads them and
`reference()` renders docs/configuration.md from the same table (`python -m hub.config`)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hub.webhooks import policy as webhook_policy

if TYPE_CHECKING:
    from hub.domain.publishers import Publishers


# The embedded demo's person-key secret: under it a person key reverses to the identity code by trying
# every code (a few million), so production commands refuse it (`Settings.require_production_secrets`).
DEMO_PERSON_KEY_SECRET = "embedded-demo-secret-change-me"


class DemoSecrets(ValueError):
    """A production command found a demo secret: the message says which variable to set and how."""


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# A reader turns a variable's non-empty value into the setting; an unset or empty variable is the default.
Reader = Callable[[str, str, dict], Any]  # (raw value, variable name, whole environment) -> value


def _text(raw: str, name: str, env: dict) -> str:
    return raw


def _upper(raw: str, name: str, env: dict) -> str:
    return raw.upper()


def _integer(raw: str, name: str, env: dict) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer; unset it or give a whole number") from None


def _number(raw: str, name: str, env: dict) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; unset it or give a number of seconds") from None


def _path(raw: str, name: str, env: dict) -> Path:
    return Path(raw)


def _comma_list(raw: str, name: str, env: dict) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _unless_off(raw: str, name: str, env: dict) -> bool:
    """A switch that is on unless set to off (off, 0, false, no)."""
    return raw.lower() not in ("off", "0", "false", "no")


def _only_if_on(raw: str, name: str, env: dict) -> bool:
    """A switch that is off unless set to on (on, 1, true, yes)."""
    return raw.lower() in ("on", "1", "true", "yes")


def _one_of(choices: tuple[str, ...]) -> Reader:
    def read(raw: str, name: str, env: dict) -> str:
        value = raw.strip().upper()
        if value not in choices:
            raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")
        return value

    return read


def _retry_schedule(raw: str, name: str, env: dict) -> tuple[float, ...]:
    try:
        return webhook_policy.parse_schedule(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r}: {exc}") from None


def _fraction(raw: str, name: str, env: dict) -> float:
    value = _number(raw, name, env)
    if not 0 <= value <= 1:
        raise ValueError(f"{name}={raw!r} is not between 0 and 1; give a fraction such as 0.2")
    return value


def _publishers(raw: str, name: str, env: dict) -> "Publishers":
    """The identity configuration: the file named by HUB_PUBLISHERS with the keys it names from env."""
    from hub.adapters.publisher_keys import load

    return load(raw, env)


@dataclass(frozen=True)
class Setting:
    """One environment variable: how it is read, its default, and what the reference says about it."""

    env: str
    field: str | None  # the attribute of `Settings`; None: read by one command's option (`needed_by` names it)
    read: Reader
    default: Any
    group: str  # the heading it appears under in the reference
    help: str
    default_doc: str | None = None  # the default as the reference shows it, when the value alone says too little
    needed_by: str = ""  # who reads it, and what production needs
    secret: bool = False  # never printed (not in `repr(settings)`)

    def value(self, env: dict) -> Any:
        raw = env.get(self.env)
        return self.default if raw is None or raw == "" else self.read(raw, self.env, env)

    def shown_default(self) -> str:
        if self.default_doc is not None:
            return self.default_doc
        if self.default is None or self.default == ():
            return "unset"
        if isinstance(self.default, bool):
            return "`on`" if self.default else "`off`"
        return f"`{self.default}`"


BROKER, SECRETS, CONSUMER, METRICS, DVV, CONSENT, WEBHOOKS, IDENTITY = (
    "Broker and database", "Secrets", "Consumer and producer tuning", "Metrics",
    "DVV change data (`hub ingest dvv --poll`)", "Consent registry and retention", "Webhooks",
    "Publisher identity",
)
GROUPS = (BROKER, SECRETS, IDENTITY, CONSUMER, METRICS, DVV, CONSENT, WEBHOOKS)

_PRODUCTION = ("`hub worker`, `hub ingest dvv` (also `--poll`; not `--dry-run`), `hub consent ...`, `hub audit`, "
               "`hub webhooks ...` refuse to start without a value of their own (exit 2, one line naming the variable)")

SETTINGS: tuple[Setting, ...] = (
    Setting("HUB_KAFKA_URL", "kafka_url", _text, None, BROKER, default_doc="unset: start the embedded broker",
            help="Kafka bootstrap, e.g. `kafka://kafka-1:9092`; several brokers separated by `;` (`kafka://k1:9092;kafka://k2:9092`).",
            needed_by="every command that talks to Kafka; `hub replay`, `hub resend` and `hub webhooks serve` need it "
                      "(the embedded broker starts empty)"),
    Setting("HUB_KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol", _one_of(SECURITY_PROTOCOLS), "PLAINTEXT", BROKER,
            help="`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` (`hub.adapters.kafka.security` turns the Kafka "
                 "TLS/SASL settings into the clients' options).",
            needed_by="the worker, `hub ingest`, `hub topics --create`, `hub healthcheck`; `SASL_SSL` on the Strimzi cluster"),
    Setting("HUB_KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism", _one_of(SASL_MECHANISMS), "SCRAM-SHA-512", BROKER,
            help="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with `SASL_*`)."),
    Setting("HUB_KAFKA_SASL_USERNAME", "kafka_sasl_username", _text, None, BROKER,
            help="The hub's Kafka user (required with `SASL_*`; on Strimzi the KafkaUser, = `HUB_APP_ID`)."),
    Setting("HUB_KAFKA_SASL_PASSWORD", "kafka_sasl_password", _text, None, BROKER, secret=True,
            help="Its password (never printed)."),
    Setting("HUB_KAFKA_SSL_CAFILE", "kafka_ssl_cafile", _text, None, BROKER, default_doc="unset: the system CAs",
            help="PEM bundle of the CA that signed the brokers' certificates (`SSL`, `SASL_SSL`)."),
    Setting("HUB_KAFKA_SSL_CERTFILE", "kafka_ssl_certfile", _text, None, BROKER,
            help="Client certificate (PEM) for mutual TLS (with `HUB_KAFKA_SSL_KEYFILE`: both or neither)."),
    Setting("HUB_KAFKA_SSL_KEYFILE", "kafka_ssl_keyfile", _text, None, BROKER,
            help="Its private key (PEM)."),
    Setting("HUB_DATABASE_URL", "database_url", _text, None, BROKER,
            default_doc="`sqlite:///<HUB_DATA_DIR>/hub.sqlite3`",
            help="SQLAlchemy URL, e.g. `postgresql+psycopg://hub@db/hub`.",
            needed_by="PostgreSQL in production: several workers share it (advisory locks serialise migrations and "
                      "each person's consent transactions)"),
    Setting("HUB_DATA_DIR", "data_dir", _path, Path(".hub-data"), BROKER,
            help="Where the embedded defaults keep their files (the SQLite database)."),
    Setting("HUB_APP_ID", "app_id", _text, "integration-hub", BROKER,
            help="The faust app id and the prefix of the consumer groups: each stream's batch consumer has the "
                 "group `<app id>.<name>` (`newcomer-detection`, `fact-intake`, `routing-newcomers`, `routing-referral-status`, "
                 "`consent-assessments`, `consent-consents`). The hub's own entry in `HUB_PUBLISHERS` and its Kafka "
                 "user have this id.",
            needed_by="every worker of one deployment has the same"),
    Setting("HUB_TOPIC_PARTITIONS", "topic_partitions", _integer, 1, BROKER,
            help="Partitions of the topics the hub creates (12 in `deploy/k8s`). Choose it above the most workers "
                 "you expect: partitions can be added later but not removed, and adding them moves persons to "
                 "other partitions."),
    Setting("HUB_STARTUP_TIMEOUT", "startup_timeout", _number, 60.0, BROKER,
            help="Seconds a command waits for a broker or database that is down when it starts, with a progress "
                 "line on stderr per attempt; then one line naming the service that did not answer (its URL without "
                 "the password) and exit 1. A bad setting or file is exit 2 and one line, before anything starts.",
            needed_by="`hub worker`, `hub ingest dvv`, `hub consent ...`, `hub audit`, `hub report`, `hub replay`, "
                      "`hub resend`, `hub webhooks ...`, `hub publish`, `hub db ...`"),
    Setting("HUB_LOG_LEVEL", "log_level", _upper, "INFO", BROKER, help="Log level."),
    Setting("HUB_PERSON_KEY_SECRET", "person_key_secret", _text, DEMO_PERSON_KEY_SECRET, SECRETS, secret=True,
            default_doc="a demo value (`hub demo` only)",
            help="Key of the pseudonymous person key (HMAC-SHA256 of the identity code). Under the demo value a key "
                 "reverses to the identity code in seconds. Make one with "
                 "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`. `hub ingest dvv --dry-run` writes "
                 "nothing and runs on the demo value (its printed keys are then demo keys); `hub publish`, "
                 "`hub replay`, `hub resend`, `hub retention` and `hub report` compute no person key and need "
                 "neither secret.",
            needed_by=_PRODUCTION),
    Setting("HUB_DATA_KEYS", "data_keys", _comma_list, (), SECRETS, secret=True,
            default_doc="the demo key (`hub demo` only)",
            help="Fernet keys, comma-separated, sealing the personal data the database keeps "
                 "(`hub/adapters/sealing.py`): the consent history's identity codes, held assessments, outgoing "
                 "records in the outbox, webhook secrets and queued bodies, stored dead letters. The first key seals, "
                 "every key opens: rotate by putting a new key first and keeping the old one until its rows are "
                 "gone. Make one with "
                 "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`. "
                 "`hub db upgrade` (migration 0013) converts an older database with the worker's two values and "
                 "refuses under the demo values.",
            needed_by=_PRODUCTION),
    Setting("HUB_PUBLISHERS", "publishers", _publishers, None, IDENTITY, secret=True,
            default_doc="unset: no publisher check, nothing signed",
            help="YAML file of the publishers allowed on the input topics, the environment variables holding their "
                 "HMAC keys and what each may publish as (docs/integrating.md, \"Who may publish\"); the keys "
                 "themselves only in the environment. A file that cannot be read, names an unset variable or a "
                 "short key stops the process at start.",
            needed_by="set in the shipped compose and Kubernetes deployments (`deploy/compose/publishers.yaml`, "
                      "ConfigMap `hub-publishers`); `hub publish` signs with it"),
    Setting("HUB_KAFKA_SESSION_TIMEOUT", "session_timeout", _number, 6.0, CONSUMER,
            help="Consumer-group session timeout of the batch consumers, seconds. A worker joining a group waits "
                 "out the session timeout, so aiokafka's 10 s (faust's 60 s) would delay a new worker's first "
                 "event; 6 s is the lowest Apache Kafka accepts by default (`group.min.session.timeout.ms`), so the "
                 "same value works on a real cluster. Raise it there if workers run long batches. (Also handed to "
                 "faust's app, whose consumer starts only for a faust agent: the hub declares none.)"),
    Setting("HUB_KAFKA_REBALANCE_TIMEOUT", "rebalance_timeout", _number, 6.0, CONSUMER,
            help="Rebalance timeout of the batch consumers, seconds (aiokafka's default: the session timeout)."),
    Setting("HUB_KAFKA_HEARTBEAT_INTERVAL", "heartbeat_interval", _number, 1.0, CONSUMER,
            help="Heartbeat interval of the batch consumers, seconds (aiokafka's default: 3)."),
    Setting("HUB_KAFKA_PRODUCER_TIMEOUT", "producer_timeout", _number, 60.0, CONSUMER,
            help="Seconds before a send the broker has not acknowledged fails (the hub's producers' request "
                 "timeout): a batch consumer then reads its batch again (an outage, nothing dead-lettered) and the "
                 "outbox relay retries the row on its next flush."),
    Setting("HUB_KAFKA_MAX_FETCH_BYTES", "max_fetch_bytes", _integer, 64 * 1024, CONSUMER,
            help="Bytes each batch consumer fetches per partition at a time (a larger record still comes whole)."),
    Setting("HUB_KAFKA_FETCH_MAX_WAIT_MS", "fetch_max_wait_ms", _integer, 100, CONSUMER,
            help="How long the broker may hold a batch consumer's fetch when nothing is new, once its topics "
                 "have been quiet for a second (while records flow: `HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS`)."),
    Setting("HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS", "pipeline_fetch_max_wait_ms", _integer, 5, CONSUMER,
            help="The fetch wait of every batch consumer while records flow: after a fetch that brought records "
                 "it uses this wait until a second passes without one, then `HUB_KAFKA_FETCH_MAX_WAIT_MS` again "
                 "(`hub/adapters/kafka/consumer.py`). The "
                 "embedded broker holds a fetch for about half its wait even when a record arrives, so each busy "
                 "hop pays up to half this wait; Apache Kafka answers a waiting fetch as soon as a record arrives."),
    Setting("HUB_KAFKA_PRODUCER_LINGER_MS", "producer_linger_ms", _integer, 0, CONSUMER,
            help="How long the hub's producers (one per batch consumer, one for the timers and the outbox relay) "
                 "wait to gather records into one produce request. Detection and routing send a whole batch's "
                 "records at once, so those share a request without waiting; the relay waits for each row's "
                 "acknowledgement, so a linger only adds to its latency."),
    Setting("HUB_GC_THRESHOLD", "gc_threshold", _integer, 10_000, CONSUMER,
            help="When the worker starts it freezes the objects it has built (`gc.freeze()`: no collection walks "
                 "them again) and sets the garbage collector's first-generation threshold to this (Python's is "
                 "700), so that full collections over the faust app and SQLAlchemy's tables stop adding to the "
                 "latency tail (`hub/streams/gc_tuning.py`). `0` leaves the collector as Python sets it."),
    Setting("HUB_SWITCH_INTERVAL_MS", "switch_interval_ms", _number, 1.0, CONSUMER,
            help="The longest a thread waits for the interpreter's lock while another runs Python code "
                 "(`sys.setswitchinterval`; Python's is 5 ms), set when the worker starts. On PostgreSQL the "
                 "streams' database calls run on threads of their own, and each round trip to the server waits "
                 "for the lock again while the event loop works (`hub/streams/switch_interval.py`). `0` leaves "
                 "Python's."),
    Setting("HUB_CLOCK_SKEW", "clock_skew", _number, 300.0, CONSUMER,
            help="Seconds an input record's `occurred_at` may be ahead of the worker's clock; later ones are "
                 "dead-lettered as `future_date` (every input topic and `hub ingest dvv`)."),
    Setting("HUB_NEWCOMER_WINDOW_DAYS", "newcomer_window_days", _integer, 3 * 365, CONSUMER,
            help="Arrivals older than this many days are not newcomers (the act's assessment and first plan are "
                 "tied to the first three years)."),
    Setting("HUB_ROUTING_RULES", "routing_rules", _text, None, CONSUMER,
            default_doc="unset: the shipped `hub/routing/data/rules.yaml`",
            help="A deployment's own routing rules file; a file that does not load is exit 2 before anything "
                 "starts."),
    Setting("HUB_OUTBOX_RELAY", "outbox_relay", _unless_off, True, CONSUMER,
            help="`off`: this worker commits plan requests and notices to the outbox but does not publish them "
                 "(another worker's relay does; the tests use it to kill a worker between commit and publish)."),
    Setting("HUB_METRICS_PORT", "metrics_port", _integer, 9108, METRICS,
            help="Port of `/metrics`; `0` picks a free port (logged at start). A port in use stops the worker with "
                 "a message naming this setting."),
    Setting("HUB_METRICS_ADDR", "metrics_addr", _text, "127.0.0.1", METRICS,
            help="Address `/metrics` binds to; `0.0.0.0` (or the pod IP) lets a Prometheus on another host scrape.",
            needed_by="`0.0.0.0` in the shipped compose file and Kubernetes manifests (the liveness probe and "
                      "Prometheus connect to the pod's IP)"),
    Setting("HUB_DVV_URL", "dvv_url", _text, None, DVV,
            help="Base URL ending in `/api/v1`, e.g. your security server's "
                 "`…/r1/FI/GOV/0245437-2/VTJmutpa/VTJmutpa/api/v1`."),
    Setting("HUB_DVV_XROAD_CLIENT", "dvv_xroad_client", _text, None, DVV,
            help="`X-Road-Client` header: `instance/memberClass/memberCode/subsystem`, e.g. "
                 "`FI/MUN/0201256-6/integration-hub`."),
    Setting("HUB_DVV_USERNAME", "dvv_username", _text, None, DVV,
            help="DVV's muutosrajapinta user, sent as HTTP Basic."),
    Setting("HUB_DVV_PASSWORD", "dvv_password", _text, None, DVV, secret=True,
            help="Its password (never printed)."),
    Setting("HUB_DVV_MUNICIPALITIES", "dvv_municipalities", _comma_list, (), DVV,
            help="Comma-separated municipality codes sent as `kuntakoodit` in the request. **Unverified**: no "
                 "public client shows the field for a municipality restriction; check DVV's OpenAPI first (by "
                 "default DVV applies the restriction bound to your permit)."),
    Setting("HUB_DVV_TIMEOUT", "dvv_timeout", _number, 30.0, DVV, help="Seconds per request."),
    Setting("HUB_DVV_RETRIES", "dvv_retries", _integer, 5, DVV,
            help="Attempts per request on 429, 5xx and connection errors, with exponential backoff (0.5 s "
                 "doubling, at most 30 s, jittered; `Retry-After` honoured)."),
    Setting("HUB_DVV_POLL_INTERVAL", "dvv_poll_interval", _number, 60.0, DVV,
            help="With `hub ingest dvv --poll --follow`: seconds to wait after DVV said the feed is up to date (and "
                 "after DVV was unavailable) before reading again. Each read stores the cursor and sets "
                 "`hub_dvv_last_page_timestamp_seconds`, which the alert `HubDvvFeedStale` watches."),
    Setting("HUB_DVV_METRICS_PORT", "dvv_metrics_port", _integer, 9109, DVV,
            help="Port of the `/metrics` and `/health` of `hub ingest dvv --poll`, on `HUB_METRICS_ADDR` (a port of "
                 "its own, so a poller and a worker fit on one host); `0` picks a free port (logged at start). A port "
                 "in use stops the run (exit 1) with a message naming this setting."),
    Setting("HUB_CONSENT_LEGAL_BASES", "consent_legal_bases", _path, None, CONSENT,
            default_doc="the shipped `hub/consent/legal_bases.yaml` (empty: no legal basis)",
            help="YAML list of legal bases that allow a disclosure without consent, each: `name` (recorded in the "
                 "audit), `section` (statute and section), `purpose`, `discloser_kinds` (the assessor's kinds), "
                 "`recipient_kinds` (the plan maker's kinds), `data_categories` (never `service_needs`: consent only). "
                 "An entry without `discloser_kinds` (the old form) stops the hub with the fix (docs/consent.md)."),
    Setting("HUB_REPLAY_HORIZON_DAYS", None, _integer, None, CONSENT,
            default_doc="the event logs' retention (`EVENT_LOG_RETENTION_DAYS` in `hub/deploy/topics.py`)",
            help="Days a topic can still deliver an event again: `hub retention` keeps idempotency marks and ended "
                 "consents' tombstones this long, so a replay cannot bring a revoked consent back. Set it to the "
                 "longest `retention.ms` of the topics the hub consumes (docs/consent.md).",
            needed_by="`hub retention` (its option `--replay-horizon`)"),
    Setting("HUB_WEBHOOKS_ALLOW_LOOPBACK", "webhooks_allow_loopback", _only_if_on, False, WEBHOOKS,
            help="`on` lets webhook subscriptions and deliveries reach loopback addresses (127.0.0.0/8, ::1, "
                 "`localhost`), plain http included: for local receivers in tests and development only. Off: only "
                 "https to public addresses (`hub/webhooks/policy.py`).",
            needed_by="never set in the shipped deployments"),
    Setting("HUB_WEBHOOKS_RETRY_SCHEDULE", "webhooks_retry_schedule", _retry_schedule, webhook_policy.RETRY_SCHEDULE, WEBHOOKS,
            default_doc=f"`{webhook_policy.RETRY_SCHEDULE_TEXT}`",
            help="Waits between the attempts at one webhook delivery (the first is immediate), comma-separated, "
                 "units `ms`, `s`, `m`, `h`, `d`: Standard Webhooks' recommended schedule by default, about "
                 f"{round(sum(webhook_policy.RETRY_SCHEDULE) / 3600)} hours. "
                 "After the last wait's attempt fails the delivery is parked (`hub webhooks redeliver`).",
            needed_by="`hub webhooks serve` (and `deliver`; `--max-attempts` cuts the schedule short)"),
    Setting("HUB_WEBHOOKS_RETRY_JITTER", "webhooks_retry_jitter", _fraction, 0.2, WEBHOOKS,
            help="Each wait of the retry schedule is drawn uniformly within this fraction either side of it "
                 "(0.2: 5 s becomes 4-6 s), so receivers coming back are not hit by every queue at once.",
            needed_by="`hub webhooks serve`"),
    Setting("HUB_WEBHOOKS_TIMEOUT", "webhooks_timeout", _number, 10.0, WEBHOOKS,
            help="Seconds to wait for a receiver's answer (connect and response); no answer is a failed attempt.",
            needed_by="`hub webhooks serve` (`deliver --timeout` overrides it)"),
    Setting("HUB_WEBHOOKS_CONCURRENCY", "webhooks_concurrency", _integer, 64, WEBHOOKS,
            help="Webhook POSTs in flight at once, over all subscriptions (each subscription has at most one, to keep "
                 "its order): as many slow receivers as this can wait at once without delaying the others.",
            needed_by="`hub webhooks serve`"),
)

_BY_FIELD = {s.field: s for s in SETTINGS if s.field}


def _default(name: str) -> Any:
    return _BY_FIELD[name].default


@dataclass(frozen=True)
class Settings:
    """Every setting of the hub, one attribute per entry of `SETTINGS` (where the defaults and the meaning
    are written). `Settings.from_env()` is the only reader of os.environ."""

    kafka_url: str | None = _default("kafka_url")  # None -> start the embedded broker
    kafka_security_protocol: str = _default("kafka_security_protocol")
    kafka_sasl_mechanism: str = _default("kafka_sasl_mechanism")
    kafka_sasl_username: str | None = _default("kafka_sasl_username")
    kafka_sasl_password: str | None = field(default=_default("kafka_sasl_password"), repr=False)
    kafka_ssl_cafile: str | None = _default("kafka_ssl_cafile")
    kafka_ssl_certfile: str | None = _default("kafka_ssl_certfile")
    kafka_ssl_keyfile: str | None = _default("kafka_ssl_keyfile")
    database_url: str | None = _default("database_url")  # None -> SQLite under data_dir
    data_dir: Path = _default("data_dir")
    app_id: str = _default("app_id")
    topic_partitions: int = _default("topic_partitions")
    startup_timeout: float = _default("startup_timeout")
    log_level: str = _default("log_level")
    person_key_secret: str = field(default=_default("person_key_secret"), repr=False)
    data_keys: tuple[str, ...] = field(default=_default("data_keys"), repr=False)  # empty -> the demo key
    publishers: "Publishers | None" = field(default=_default("publishers"), repr=False)  # None -> no check
    session_timeout: float = _default("session_timeout")
    rebalance_timeout: float = _default("rebalance_timeout")
    heartbeat_interval: float = _default("heartbeat_interval")
    producer_timeout: float = _default("producer_timeout")
    max_fetch_bytes: int = _default("max_fetch_bytes")
    fetch_max_wait_ms: int = _default("fetch_max_wait_ms")
    pipeline_fetch_max_wait_ms: int = _default("pipeline_fetch_max_wait_ms")
    producer_linger_ms: int = _default("producer_linger_ms")
    gc_threshold: int = _default("gc_threshold")
    switch_interval_ms: float = _default("switch_interval_ms")
    clock_skew: float = _default("clock_skew")
    newcomer_window_days: int = _default("newcomer_window_days")
    routing_rules: str | None = _default("routing_rules")  # None -> the shipped rules
    outbox_relay: bool = _default("outbox_relay")
    metrics_port: int = _default("metrics_port")
    metrics_addr: str = _default("metrics_addr")
    dvv_url: str | None = _default("dvv_url")
    dvv_xroad_client: str | None = _default("dvv_xroad_client")
    dvv_username: str | None = _default("dvv_username")
    dvv_password: str | None = field(default=_default("dvv_password"), repr=False)
    dvv_municipalities: tuple[str, ...] = _default("dvv_municipalities")
    dvv_timeout: float = _default("dvv_timeout")
    dvv_retries: int = _default("dvv_retries")
    dvv_poll_interval: float = _default("dvv_poll_interval")
    dvv_metrics_port: int = _default("dvv_metrics_port")
    consent_legal_bases: Path | None = _default("consent_legal_bases")  # None -> the shipped (empty) file
    webhooks_allow_loopback: bool = _default("webhooks_allow_loopback")
    webhooks_retry_schedule: tuple[float, ...] = _default("webhooks_retry_schedule")
    webhooks_retry_jitter: float = _default("webhooks_retry_jitter")
    webhooks_timeout: float = _default("webhooks_timeout")
    webhooks_concurrency: int = _default("webhooks_concurrency")

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        return cls(**{s.field: s.value(env) for s in SETTINGS if s.field})

    @property
    def clock_skew_delta(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.clock_skew)

    def require_production_secrets(self) -> None:
        """Raise DemoSecrets unless HUB_PERSON_KEY_SECRET and HUB_DATA_KEYS are set to values of their
        own: every command that writes person keys or personal data outside the embedded demo calls
        this before it touches anything (the commands `needed_by` of the two settings names)."""
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


REFERENCE_COMMAND = "python -m hub.config > docs/configuration.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def reference() -> str:
    """docs/configuration.md: every setting of `SETTINGS`, grouped, as Markdown."""
    lines = [
        "# Configuration reference",
        "",
        f"<!-- Generated from `SETTINGS` in hub/config.py by `{REFERENCE_COMMAND}`; do not edit by hand"
        " (tests/unit/test_config_reference.py compares the two). -->",
        "",
        "The hub reads its settings from `HUB_*` environment variables only (`hub.config.Settings.from_env`). An unset",
        "or empty variable takes the default. A value that does not parse (a word where a number belongs, a",
        "protocol not in the list) stops the command with exit 2 and one line naming the variable, before anything",
        "starts. Secrets are never printed. How to run the hub with these settings: [operating.md](operating.md).",
        "",
    ]
    for group in GROUPS:
        lines += [f"## {group}", "", "| variable | default | meaning | who needs it |", "|---|---|---|---|"]
        for s in SETTINGS:
            if s.group == group:
                lines.append(f"| `{s.env}` | {_cell(s.shown_default())} | {_cell(s.help)} | {_cell(s.needed_by)} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference(), end="")
