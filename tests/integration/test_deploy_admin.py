"""`hub healthcheck` and topic creation from the generator, against the real broker and PostgreSQL."""

from __future__ import annotations

import socket
import uuid

import pytest
from click.testing import CliRunner

from hub.adapters.kafka.admin import create_topic_specs
from hub.cli import main
from hub.deploy.topics import EVENT_LOG, KafkaTopic

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthcheck_passes_when_broker_and_database_answer(kafka_url, database_url):
    result = CliRunner().invoke(main, ["healthcheck", "--timeout", "5"], env={"HUB_KAFKA_URL": kafka_url, "HUB_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "kafka: ok" in result.output and "database: ok" in result.output
    password = __import__("sqlalchemy").engine.make_url(database_url).password
    if password:
        assert password not in result.output


def test_healthcheck_fails_with_exit_1_when_the_broker_is_down(database_url):
    env = {"HUB_KAFKA_URL": f"kafka://127.0.0.1:{_closed_port()}", "HUB_DATABASE_URL": database_url}
    result = CliRunner().invoke(main, ["healthcheck", "--timeout", "1"], env=env)
    assert result.exit_code == 1
    assert "kafka: FAILED" in result.output and "database: ok" in result.output and "Traceback" not in result.output


def test_healthcheck_without_a_broker_address_is_a_usage_error():
    result = CliRunner().invoke(main, ["healthcheck"], env={"HUB_KAFKA_URL": ""})
    assert result.exit_code == 2 and "HUB_KAFKA_URL" in result.output


def test_create_topic_specs_creates_the_missing_ones_once(kafka_url):
    run = uuid.uuid4().hex[:8]
    specs = [
        KafkaTopic(f"test-deploy-{run}.events", 3, 1, EVENT_LOG, {"cleanup.policy": "delete", "retention.ms": "86400000"}),
        KafkaTopic(f"test-deploy-{run}-compacted", 3, 1, EVENT_LOG, {"cleanup.policy": "compact"}),
    ]
    assert sorted(create_topic_specs(kafka_url, specs)) == sorted(s.name for s in specs)
    assert create_topic_specs(kafka_url, specs) == []  # idempotent: the init step may run again

    from kafka.admin import KafkaAdminClient

    from hub.adapters.kafka.security import bootstrap_servers

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(kafka_url))
    try:
        described = {t.get("topic") or t.get("name"): t for t in admin.describe_topics([s.name for s in specs])}
    finally:
        admin.close()
    assert all(len(described[s.name]["partitions"]) == 3 for s in specs)
