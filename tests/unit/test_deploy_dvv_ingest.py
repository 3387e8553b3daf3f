"""The DVV poller in the shipped deployments: `hub ingest dvv --poll --follow` as the compose service
dvv-ingest and the Kubernetes Deployment hub-dvv-ingest, health-checked on its /health, scraped by
Prometheus as job hub-dvv-ingest (the job HubDvvIngestDown selects), publishing as the hub."""

from __future__ import annotations

import yaml

from hub.deploy import k8s
from tests.unit.test_deploy_compose import COMPOSE_DIR, SERVICES
from tests.unit.test_deploy_manifests import BASE_DOCS, ENV_NAMES, SECRET_NAMES, _worker


def test_the_dvv_poller_runs_the_follow_feed_health_checked_and_scraped_as_its_own_job():
    """The long-running DVV feed (`hub ingest dvv --poll --follow`): one replica, its /health as the
    health check, its /metrics on every interface, scraped by Prometheus as job hub-dvv-ingest."""
    service = SERVICES["dvv-ingest"]
    assert service["command"] == ["ingest", "dvv", "--poll", "--follow"]
    assert service["deploy"]["replicas"] == 1 and service["restart"] == "unless-stopped"
    env = service["environment"]
    assert env["HUB_METRICS_ADDR"] == "0.0.0.0" and env["HUB_PUBLISHERS"] == SERVICES["worker"]["environment"]["HUB_PUBLISHERS"]
    port = str(env["HUB_DVV_METRICS_PORT"])
    assert service["expose"] == [port]
    check = service["healthcheck"]["test"]
    assert check[0] == "CMD" and f"127.0.0.1:{port}/health" in check[-1]
    assert service["depends_on"]["db-upgrade"]["condition"] == "service_completed_successfully"
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "hub-dvv-ingest"]  # the job HubDvvIngestDown selects
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["dvv-ingest"] and sd["port"] == int(port)


def _dvv_ingest() -> dict:
    return next(d for _, d in BASE_DOCS if d["kind"] == "Deployment" and d["metadata"]["name"] == "hub-dvv-ingest")


def test_the_dvv_poller_runs_the_follow_feed_non_root_with_probes_resources_and_secrets():
    deployment = _dvv_ingest()
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"  # one poller at a time
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["ingest", "dvv", "--poll", "--follow"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False and container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= ENV_NAMES, f"unknown settings: {set(env) - ENV_NAMES}"
    for name, e in env.items():
        if SECRET_NAMES.search(name) or name in ("HUB_DVV_URL", "HUB_DVV_USERNAME", "HUB_DVV_XROAD_CLIENT"):
            assert "value" not in e and "secretKeyRef" in e["valueFrom"], f"{name} must come from a Secret"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(env["HUB_DVV_METRICS_PORT"]["value"]) == ports["metrics"] and env["HUB_METRICS_ADDR"]["value"] == "0.0.0.0"
    for kind in ("startupProbe", "livenessProbe"):
        assert container[kind]["httpGet"] == {"path": "/health", "port": "metrics"}
    # it publishes as the hub, signed with the hub's key, like the workers
    worker_env = {e["name"]: e for e in _worker()["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("HUB_KAFKA_URL", "HUB_KAFKA_SASL_USERNAME", "HUB_KAFKA_SASL_PASSWORD", "HUB_APP_ID", "HUB_PUBLISHERS", "HUB_DATABASE_URL",
                 "HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS", "HUB_TOPIC_PARTITIONS"):
        assert env[name] == worker_env[name], name
    assert container["envFrom"] == _worker()["spec"]["template"]["spec"]["containers"][0]["envFrom"]


def test_the_hubs_kafka_user_may_write_what_the_dvv_poller_writes():
    from hub.deploy.acls import allowed, hub_acls
    from hub.schemas import topics

    acls = hub_acls(k8s.APP_ID)
    for topic in (topics.POPULATION_CHANGES, topics.DEAD_LETTERS):
        assert allowed(acls, "topic", topic, "Write") and allowed(acls, "topic", topic, "Describe")


def test_a_podmonitor_scrapes_the_dvv_poller_as_its_own_job():
    monitors = {d["metadata"]["name"]: d for _, d in BASE_DOCS if d["kind"] == "PodMonitor"}
    monitor = monitors["hub-dvv-ingest"]
    labels = _dvv_ingest()["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert not monitors["hub-worker"]["spec"]["selector"]["matchLabels"].items() <= labels.items()  # not a worker (HubWorkerDown)
    ports = {p["name"] for p in _dvv_ingest()["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    assert labels[monitor["spec"]["jobLabel"]] == "hub-dvv-ingest"  # the job HubDvvIngestDown selects
