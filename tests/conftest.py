"""Real components for tests: a Kafka-protocol broker and a PostgreSQL database.

Order of preference, for each: explicit environment (HUB_TEST_KAFKA_URL, HUB_TEST_DATABASE_URL);
testcontainers when a Docker engine answers; else local processes: the embedded Tansu broker and
the PostgreSQL server at 127.0.0.1:5432 (a throwaway database per test session, dropped after).
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def docker_available() -> bool:
    return _docker_answers()


@pytest.fixture(scope="session")
def kafka_url(docker_available):
    """A faust-style URL (kafka://host:port) of a real Kafka-protocol broker."""
    explicit = os.environ.get("HUB_TEST_KAFKA_URL")
    if explicit:
        yield explicit if "://" in explicit else f"kafka://{explicit}"
        return
    if docker_available:  # pragma: no cover - no Docker engine on our machines
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield f"kafka://{kafka.get_bootstrap_server()}"
        return
    from hub.adapters.kafka.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.url


@pytest.fixture
def fresh_kafka_url(kafka_url):
    """A broker of this test's own (fresh topics, nothing left by other tests).

    With HUB_TEST_KAFKA_URL set, the shared broker is returned: tests must then tolerate
    records from other tests (they filter by their own ids).
    """
    if os.environ.get("HUB_TEST_KAFKA_URL"):
        yield kafka_url
        return
    from hub.adapters.kafka.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.url


@pytest.fixture(scope="session")
def pg_admin_url(docker_available):
    """URL of a PostgreSQL server where the tests may create databases."""
    explicit = os.environ.get("HUB_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if docker_available:  # pragma: no cover
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver="psycopg") as pg:
            yield pg.get_connection_url()
        return
    yield "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def database_url(pg_admin_url):
    """A throwaway PostgreSQL database for this test session (dropped afterwards)."""
    if os.environ.get("HUB_TEST_DATABASE_URL"):
        yield pg_admin_url
        return
    with throwaway_database(pg_admin_url, "hub_test") as url:
        yield url


@pytest.fixture
def own_database_url(pg_admin_url):
    """A PostgreSQL database of this test's own (exact counts, nothing left by other tests), migrated
    by the test itself; dropped afterwards."""
    if os.environ.get("HUB_TEST_DATABASE_URL"):
        pytest.skip("needs a database of its own (exact counts); HUB_TEST_DATABASE_URL is shared")
    with throwaway_database(pg_admin_url, "hub_own") as url:
        yield url


@contextlib.contextmanager
def throwaway_database(pg_admin_url: str, prefix: str):
    """A new PostgreSQL database named `<prefix>_<random>`, dropped (WITH FORCE) afterwards."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with contextlib.suppress(Exception), admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# HUB_DATA_KEYS of the tests: the in-process sealer of the whole run (the shared test databases hold rows
# sealed by many tests), and what tests pass to the commands and workers they start
TEST_DATA_KEY = "m5ThnpZpL5w4QvQmFZ4Rjv6c2ylB2D2c0p6TqgK1d8E="


@pytest.fixture(scope="session", autouse=True)
def _test_sealer():
    from hub.adapters import sealing

    sealing.configure([TEST_DATA_KEY])
    yield
    sealing.configure(())


@pytest.fixture(autouse=True)
def _sealer_restored(_test_sealer):
    """The process's sealer (hub.adapters.sealing) as it was before each test: a command run in
    process (CliRunner) or a test that configures its own keys leaves no other key behind."""
    from hub.adapters import sealing

    before = sealing.current()
    yield
    sealing._current = before


def pytest_collection_modifyitems(config, items):
    """Soak runs are long by design: they get four hours instead of the suite's per-test timeout."""
    for item in items:
        if item.get_closest_marker("soak") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(4 * 3600))
