"""A real Prometheus (Debian's `prometheus`, the server beside promtool) scrapes the long-running
parts that serve metrics besides the workers, each under the job name the shipped configurations
give it, with the shipped alert rules (deploy/prometheus/alerts.yml) loaded:
- the DVV feed (`hub ingest dvv --poll --follow`): its dead letters fire HubDeadLetters, its unknown
  data group HubDvvUnknownDataGroups, and a stopped poller makes HubDvvIngestDown pending;
- webhook delivery (`hub webhooks serve`): a receiver that refuses connections gets its deliveries
  parked and fires HubWebhooksParked (for it alone), and a stopped service makes HubWebhooksDown pending;
and every rule evaluates without an error on the real series. What it proves: the metrics reach
Prometheus and the rules select them (a job name or a metric name that drifts fails here, not in
production). The workers' own series are scraped by tests/e2e/test_worker_metrics_cli.py."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_ingest_dvv_metrics import Poller

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
HUB = [sys.executable, "-m", "hub.cli"]
PROMETHEUS = shutil.which("prometheus")

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package `prometheus`; scripts/ensure-promtool --install)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_job(part: str) -> str:
    """The job name the shipped configurations (the same in both) give the part named `part`."""
    names = set()
    for config in (ROOT / "deploy" / "prometheus" / "prometheus.yml", ROOT / "deploy" / "compose" / "prometheus.yml"):
        jobs = [job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]]
        names |= {job for job in jobs if part in job}
    assert len(names) == 1, names
    return names.pop()


class Prometheus:
    """`prometheus` on 127.0.0.1 with the shipped rules, scraping `targets` every second."""

    def __init__(self, tmp_path: Path, job: str, targets: list[str]):
        self.port = free_port()
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(ALERTS)],
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(tmp_path / "prometheus.log", "w")
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"], stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def wait(self, what: str, condition, timeout: float = 90):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, Path(self.log.name).read_text()
            try:
                last = condition()
                if last:
                    return last
            except OSError:  # not listening yet
                pass
            time.sleep(0.5)
        raise AssertionError(f"Prometheus: {what} within {timeout} s; last {last!r}")

    def alerts(self, name: str) -> list[dict]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def all_rules_evaluated(self) -> list[dict]:
        """Every rule of the shipped file, once each has evaluated on the real series without an error."""
        def evaluated():
            rules = [r for g in self.api("rules")["groups"] for r in g["rules"]]
            return rules if all(r["health"] == "ok" for r in rules) else None
        rules = self.wait("every rule evaluated", evaluated)
        shipped = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
        assert {r["name"] for r in rules} == shipped
        return rules

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def test_the_dvv_feed_reaches_a_real_prometheus_and_fires_the_shipped_alerts(kafka_url, tmp_path):
    from tests.dvv_replay import ReplayServer, sample_day

    first, pages = sample_day()  # the third page has 3 bad changes and a data group the hub does not map
    env = {"HUB_KAFKA_URL": kafka_url, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_DVV_POLL_INTERVAL": "0.3",
           "HUB_DVV_RETRIES": "1", "HUB_DVV_METRICS_PORT": "0"}
    job = shipped_job("dvv")
    with ReplayServer(pages, first) as server:
        env["HUB_DVV_URL"] = server.url
        first_run = subprocess.run([*HUB, "ingest", "dvv", "--poll", "--since", "2026-05-11", "--max-pages", "1"], env={**os.environ, **env},
                                   cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert first_run.returncode == 0, first_run.stderr
        poller = Poller(env)
        prometheus = None
        try:
            target = urllib.parse.urlsplit(poller.metrics_url()).netloc
            poller.scrape(lambda s: s.get("hub_dvv_pages_total", 0) >= 2)
            (tmp_path / "prometheus").mkdir()
            prometheus = Prometheus(tmp_path / "prometheus", job, [target])

            prometheus.wait("the poller's target up", lambda: [t for t in prometheus.api("targets")["activeTargets"]
                                                               if t["labels"]["job"] == job and t["health"] == "up"])
            dead = prometheus.wait("HubDeadLetters firing", lambda: [a for a in prometheus.alerts("HubDeadLetters") if a["state"] == "firing"])
            assert {a["labels"]["reason"] for a in dead} == {"future_date", "invalid_person_id", "unknown_municipality"}
            unknown = prometheus.wait("HubDvvUnknownDataGroups firing", lambda: prometheus.alerts("HubDvvUnknownDataGroups"))
            assert [a["labels"]["group"] for a in unknown] == ["JOKU_UUSI_TIETORYHMA"]

            prometheus.all_rules_evaluated()
            # a feed that gives pages is not stale, and a poller that answers is not down
            assert not prometheus.alerts("HubDvvFeedStale") and not prometheus.alerts("HubDvvIngestDown")
        except BaseException:
            poller.kill()
            if prometheus:
                prometheus.stop()
            raise
        try:
            assert poller.stop() == 3, poller.stderr  # some records went to dead letters
            down = prometheus.wait("HubDvvIngestDown pending once the poller stops", lambda: prometheus.alerts("HubDvvIngestDown"))
            assert down[0]["labels"]["instance"] == target and down[0]["state"] == "pending"  # `for: 5m`
        finally:
            prometheus.stop()


def test_webhook_delivery_reaches_a_real_prometheus_and_fires_the_shipped_alerts(fresh_kafka_url, own_database_url, tmp_path):
    """`hub webhooks serve` with one live receiver and one that refuses connections (a short retry
    schedule parks its deliveries): HubWebhooksParked fires for that recipient only, every rule
    evaluates, and a stopped service makes HubWebhooksDown pending."""
    import asyncio
    import signal
    import uuid

    from hub.adapters.kafka.admin import ensure_topics
    from hub.adapters.kafka.producer import EventProducer
    from hub.adapters.webhooks import recipient_topics
    from hub.schemas.topics import referral_topic
    from tests.e2e.conftest import TEST_DATA_KEY, TEST_PERSON_KEY_SECRET
    from tests.integration.test_webhook_service import Receiver, referral

    live, dead = "wellbeing_area:03", "wellbeing_area:01"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_KAFKA_URL=fresh_kafka_url, HUB_DATABASE_URL=own_database_url, HUB_PERSON_KEY_SECRET=TEST_PERSON_KEY_SECRET,
               HUB_DATA_KEYS=TEST_DATA_KEY, HUB_WEBHOOKS_ALLOW_LOOPBACK="on", HUB_DATA_DIR=str(tmp_path), HUB_METRICS_PORT=str(port),
               HUB_WEBHOOKS_RETRY_SCHEDULE="100ms,100ms", HUB_WEBHOOKS_TIMEOUT="2", HUB_APP_ID=f"hub-{uuid.uuid4().hex[:6]}")
    assert subprocess.run([*HUB, "db", "upgrade"], env=env, capture_output=True, timeout=120).returncode == 0
    ensure_topics(fresh_kafka_url, [t for r in (live, dead) for t in recipient_topics(r)], 1)
    receiver = Receiver()
    refused = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    for recipient, url in ((live, receiver.url), (dead, refused)):
        added = subprocess.run([*HUB, "webhooks", "add", "--recipient", recipient, "--url", url], env=env, capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
    service = subprocess.Popen([*HUB, "webhooks", "serve"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    (tmp_path / "prometheus").mkdir()
    job = shipped_job("webhooks")
    prometheus = Prometheus(tmp_path / "prometheus", job, [f"127.0.0.1:{port}"])
    try:
        prometheus.wait("the delivery service's target up", lambda: [t for t in prometheus.api("targets")["activeTargets"]
                                                                     if t["labels"]["job"] == job and t["health"] == "up"])

        async def send():
            async with EventProducer(fresh_kafka_url) as producer:
                for recipient in (live, dead):
                    for seq in (1, 2):
                        rec = referral(recipient, seq)
                        await producer.send_event(referral_topic(recipient), "Referral", rec, key=rec["person_key"])

        asyncio.run(send())
        parked = prometheus.wait("HubWebhooksParked firing", lambda: [a for a in prometheus.alerts("HubWebhooksParked") if a["state"] == "firing"])
        assert [a["labels"]["recipient"] for a in parked] == [dead]
        assert [seq for _, _, seq in receiver.arrived] == [1, 2]
        delivered = prometheus.api("query", query="sum by (recipient) (hub_webhook_deliveries_total{outcome=\"delivered\"})")["result"]
        assert [(r["metric"]["recipient"], r["value"][1]) for r in delivered] == [(live, "2")]
        prometheus.all_rules_evaluated()
        assert not prometheus.alerts("HubWebhooksDown") and not prometheus.alerts("HubWebhookUndecodable")
    except BaseException:
        service.kill()
        prometheus.stop()
        receiver.close()
        raise
    try:
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0, service.stderr.read()
        down = prometheus.wait("HubWebhooksDown pending once the service stops", lambda: prometheus.alerts("HubWebhooksDown"))
        assert down[0]["labels"]["instance"] == f"127.0.0.1:{port}" and down[0]["state"] == "pending"  # `for: 5m`
    finally:
        if service.poll() is None:
            service.kill()
        prometheus.stop()
        receiver.close()
