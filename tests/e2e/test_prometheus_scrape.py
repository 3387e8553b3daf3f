"""A real Prometheus (Debian's `prometheus`, the server beside promtool) scrapes the long-running DVV
feed (`hub ingest dvv --poll --follow`) under the job name the shipped configurations give it, with
the shipped alert rules (deploy/prometheus/alerts.yml) loaded: the DVV feed's dead letters fire
HubDeadLetters, its unknown data group fires HubDvvUnknownDataGroups, every rule evaluates without
an error on the real series, and a stopped poller makes HubDvvIngestDown pending. What it proves: the
metrics reach Prometheus and the rules select them (a job name or a metric name that drifts fails
here, not in production)."""

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


def shipped_dvv_job() -> str:
    """The DVV poller's job name in the shipped configurations (the same in both)."""
    names = set()
    for config in (ROOT / "deploy" / "prometheus" / "prometheus.yml", ROOT / "deploy" / "compose" / "prometheus.yml"):
        jobs = [job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]]
        names |= {job for job in jobs if "dvv" in job}
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
    job = shipped_dvv_job()
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

            # every rule of the shipped file is loaded and evaluates on the real series without an error
            def evaluated():
                rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
                return rules if all(r["health"] == "ok" for r in rules) else None
            rules = prometheus.wait("every rule evaluated", evaluated)
            shipped = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
            assert {r["name"] for r in rules} == shipped
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
