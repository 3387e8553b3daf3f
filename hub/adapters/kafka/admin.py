"""Topic administration with kafka-python: create the hub's topics with the configured partitions.

Topics are created before the workers start (and per-recipient topics before their first record),
so that nothing depends on the broker's auto-creation defaults.
"""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from hub.adapters.kafka.security import bootstrap_servers

log = logging.getLogger(__name__)


def ensure_topics(
    url: str, names: list[str] | tuple[str, ...], partitions: int, replication: int = 1,
    seen: set[str] | None = None, **security
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. `seen`: see
    `create_topic_specs`.

    `security`: kafka-python TLS/SASL options (hub.adapters.kafka.security.kafka_client_options).
    """
    from hub.deploy.topics import EVENT_LOG, KafkaTopic

    specs = [KafkaTopic(n, partitions, replication, EVENT_LOG) for n in names]
    return create_topic_specs(url, specs, seen=seen, **security)


def create_topic_specs(url: str, specs, batch: int = 100, seen: set[str] | None = None, **security) -> list[str]:
    """Create the missing topics of `specs` (hub.deploy.topics.KafkaTopic) with their partitions,
    replicas and configs; existing topics are left alone. Returns the names created; `seen`, when
    given, receives the name of every topic that was on the broker before."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(url), client_id="hub-admin", request_timeout_ms=30000, **security)
    try:
        existing = set(admin.list_topics())
        if seen is not None:
            seen.update(existing)
        missing = [s for s in specs if s.name not in existing]
        created, failed = [], []
        for start in range(0, len(missing), batch):
            chunk = missing[start:start + batch]
            request = {s.name: {"num_partitions": s.partitions, "replication_factor": s.replicas, "configs": dict(s.configs)} for s in chunk}
            result = admin.create_topics(request, raise_errors=False)
            for topic in result.get("topics", []):
                name, code = topic.get("name"), topic.get("error_code", 0)
                if code == 0:
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:
                    failed.append(f"{name}: {topic.get('error_message') or code}")
        if failed:
            raise RuntimeError(f"could not create {len(failed)} topic(s): {'; '.join(failed[:5])}")
        if created:
            log.info("created topics %s", ", ".join(created))
        return created
    finally:
        admin.close()
