"""Every long-running part that serves /metrics is scraped, under the job the alert rules select, in
each shipped deployment: the Kubernetes PodMonitors select every Deployment with a `metrics` port,
compose's Prometheus scrapes every compose service that serves metrics, and the example
configuration (deploy/prometheus/prometheus.yml) names each of them. A part left out would serve
metrics nobody reads (its alerts never fire); tests/e2e/test_prometheus_scrape.py shows a real
Prometheus firing the rules on the DVV feed's series under that job."""

from __future__ import annotations

import re

import yaml

from tests.unit.test_deploy_compose import COMPOSE_DIR, SERVICES
from tests.unit.test_deploy_manifests import BASE_DOCS, ROOT

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def _alert_jobs() -> set[str]:
    return set(re.findall(r'job="([^"]+)"', ALERTS.read_text()))


def _scrape_configs(path) -> list[dict]:
    return yaml.safe_load(path.read_text())["scrape_configs"]


def test_every_kubernetes_deployment_with_metrics_is_selected_by_one_pod_monitor_under_an_alerted_job():
    monitors = [d for _, d in BASE_DOCS if d["kind"] == "PodMonitor"]
    deployments = [d for _, d in BASE_DOCS if d["kind"] == "Deployment"]
    with_metrics = [d for d in deployments
                    if any(p.get("name") == "metrics" for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", []))]
    assert {d["metadata"]["name"] for d in with_metrics} >= {"hub-worker", "hub-dvv-ingest", "hub-webhooks"}
    jobs = set()
    for deployment in with_metrics:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selecting = [m for m in monitors if m["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        name = deployment["metadata"]["name"]
        assert len(selecting) == 1, f"{name}: selected by {len(selecting)} PodMonitors (its /metrics unscraped or scraped twice)"
        spec = selecting[0]["spec"]
        assert [e["port"] for e in spec["podMetricsEndpoints"]] == ["metrics"] and spec["podMetricsEndpoints"][0]["path"] == "/metrics", name
        job = labels[spec["jobLabel"]]  # the Prometheus Operator takes the job from this label of the pod
        assert job in _alert_jobs(), f"{name}: scraped as job {job}, which no alert rule selects"
        jobs.add(job)
    assert len(jobs) == len(with_metrics), "Kubernetes: Deployments share a scrape job, so one's outage reads as another's"
    assert jobs == _alert_jobs()


def test_compose_prometheus_scrapes_every_service_that_serves_metrics_under_an_alerted_job():
    scraped = {}
    for config in _scrape_configs(COMPOSE_DIR / "prometheus.yml"):
        for sd in config.get("dns_sd_configs", []):
            for name in sd["names"]:
                scraped[name] = (config["job_name"], sd["port"])
    serving = {}
    for name, service in SERVICES.items():
        env = service.get("environment") or {}
        # the DVV poller serves its own port; the other hub services HUB_METRICS_PORT
        setting = "HUB_DVV_METRICS_PORT" if "HUB_DVV_METRICS_PORT" in env else "HUB_METRICS_PORT"
        if "build" in service and setting in env and _long_running(service):
            serving[name] = int(env[setting])
    assert set(serving) >= {"worker", "dvv-ingest", "webhooks"}
    jobs = set()
    for name, ports in serving.items():
        assert name in scraped, f"compose: {name} serves /metrics but deploy/compose/prometheus.yml does not scrape it"
        job, port = scraped[name]
        assert port == ports and job in _alert_jobs(), (name, job, port, ports)
        jobs.add(job)
    assert len(jobs) == len(serving), f"compose: services share a scrape job, so one's outage reads as another's: {scraped}"
    assert jobs == _alert_jobs()


def _long_running(service: dict) -> bool:
    return service.get("restart") in ("unless-stopped", "always")


def test_the_example_configuration_names_every_part_that_serves_metrics():
    targets = {job["job_name"]: [t for s in job.get("static_configs", []) for t in s["targets"]]
               for job in _scrape_configs(ROOT / "deploy" / "prometheus" / "prometheus.yml")}
    assert set(targets) >= _alert_jobs()
    assert all("worker" in t for t in targets["integration-hub"]) and targets["integration-hub"]
    assert all("webhooks" in t for t in targets["hub-webhooks"]) and targets["hub-webhooks"]
    assert any(t.endswith(":9109") for t in targets["hub-dvv-ingest"])
