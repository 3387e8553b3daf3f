"""`hub ingest dvv --poll --follow`, the long-running DVV feed, serves /metrics and /health: the
pages and changes read, the time of the last page (what HubDvvFeedStale watches), DVV's failures,
the dead letters (HubDeadLetters) and unknown data groups, against a fake DVV on 127.0.0.1
(tests/dvv_replay.py)."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HUB = [sys.executable, "-m", "hub.cli"]


class Poller:
    """A running `hub ingest dvv --poll --follow`: its stderr collected, its metrics URL read from it."""

    def __init__(self, env: dict, *args: str):
        self.proc = subprocess.Popen([*HUB, "ingest", "dvv", "--poll", "--follow", *args], env={**os.environ, **env}, cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stderr.readline, "")), daemon=True)
        self.reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def metrics_url(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"metrics on (http://\S+/metrics)", self.stderr)
            if found:
                return found.group(1)
            assert self.proc.poll() is None, self.stderr
            time.sleep(0.1)
        raise AssertionError(f"no metrics URL on stderr: {self.stderr}")

    def scrape(self, until, timeout: float = 90) -> dict[str, float]:
        """The samples of /metrics once `until(samples)` holds."""
        url, deadline = self.metrics_url(), time.monotonic() + timeout
        while True:
            with urllib.request.urlopen(url, timeout=5) as resp:
                samples = parse(resp.read().decode())
            if until(samples):
                return samples
            assert self.proc.poll() is None, self.stderr
            assert time.monotonic() < deadline, (samples, self.stderr)
            time.sleep(0.2)

    def health(self) -> tuple[int, str]:
        url = self.metrics_url().removesuffix("/metrics") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def healthy(self, timeout: float = 90) -> tuple[int, str]:
        """/health once it answers 200 (503 `not running: dvv-feed` while the poller starts)."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.health()
            if status == 200 or time.monotonic() > deadline:
                return status, body
            assert status == 503 and body == "not running: dvv-feed\n", (status, body)
            assert self.proc.poll() is None, self.stderr
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def parse(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.mark.integration
def test_follow_serves_the_dvv_counters_and_keeps_running_while_dvv_is_down(kafka_url, tmp_path):
    from tests.dvv_replay import ReplayServer, sample_day

    first, pages = sample_day()  # the third page has 3 bad changes and a data group the hub does not map
    env = {"HUB_KAFKA_URL": kafka_url, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_DVV_POLL_INTERVAL": "0.3",
           "HUB_DVV_RETRIES": "1", "HUB_DVV_METRICS_PORT": "0"}
    with ReplayServer(pages, first) as server:
        env["HUB_DVV_URL"] = server.url
        poller = Poller(env)
        try:
            # no cursor yet: the poller runs and waits for the first read, which a one-off run makes
            assert poller.healthy() == (200, "ok\n")
            samples = poller.scrape(lambda s: True)
            assert not any(k.startswith("hub_dvv_last_page_timestamp_seconds") for k in samples) and samples.get("hub_dvv_pages_total", 0) == 0
            assert "waiting for the first run" in poller.stderr
            started = time.time()
            first = subprocess.run([*HUB, "ingest", "dvv", "--poll", "--since", "2026-05-11", "--max-pages", "1"], env={**os.environ, **env},
                                   cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            assert first.returncode == 0 and "cursor at 7100000731" in first.stderr, first.stderr
            # then pages 2 and 3 from the stored cursor, and the up-to-date answer again and again: every read is a page
            samples = poller.scrape(lambda s: s.get("hub_dvv_pages_total", 0) >= 4)
            assert poller.health() == (200, "ok\n")
        except BaseException:
            poller.kill()
            raise
        assert poller.stop() == 3, poller.stderr  # some records went to dead letters
        assert samples["hub_dvv_changes_total"] == 15 + 14  # pages 2 and 3
        for reason in ("future_date", "invalid_person_id", "unknown_municipality"):
            assert samples[f'hub_dead_letters_total{{reason="{reason}"}}'] == 1, reason
        assert samples['hub_dvv_unknown_data_groups_total{group="JOKU_UUSI_TIETORYHMA"}'] == 1
        assert samples['hub_events_consumed_total{outcome="dead_letter",topic="dvv.muutokset"}'] == 3
        assert started <= samples['hub_dvv_last_page_timestamp_seconds{feed="muutokset"}'] <= time.time()
        assert samples.get("hub_dvv_poll_failures_total", 0) == 0
        assert samples['hub_events_consumed_total{outcome="ok",topic="dvv.muutokset"}'] == 15 + 14 - 3
        assert "cursor at 7100002205" in poller.stderr and "3 dead letters" in poller.stderr and "Traceback" not in poller.stderr
        last_page = samples['hub_dvv_last_page_timestamp_seconds{feed="muutokset"}']

        # DVV down: the poller stays up (it reads again every interval), counts the failures, and its
        # last-page time starts at the stored cursor's, so a restart does not look fresh
        server.fail[7100002205] = [503] * 10_000
        poller = Poller(env)
        try:
            samples = poller.scrape(lambda s: s.get("hub_dvv_poll_failures_total", 0) >= 2)
            assert samples.get("hub_dvv_pages_total", 0) == 0
            assert samples['hub_dvv_last_page_timestamp_seconds{feed="muutokset"}'] == pytest.approx(last_page, abs=1.0)
            assert poller.health() == (200, "ok\n")
        except BaseException:
            poller.kill()
            raise
        assert poller.stop() == 0, poller.stderr
        assert "HTTP 503" in poller.stderr and "Traceback" not in poller.stderr


def test_a_taken_metrics_port_names_the_setting(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        env = {**os.environ, "HUB_DATA_DIR": str(tmp_path), "HUB_DVV_METRICS_PORT": str(taken.getsockname()[1]), "HUB_KAFKA_URL": "kafka://127.0.0.1:1",
               "HUB_DVV_URL": "http://127.0.0.1:1/api/v1"}
        r = subprocess.run([*HUB, "ingest", "dvv", "--poll", "--follow"], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT)
    finally:
        taken.close()
    assert r.returncode == 1
    assert "HUB_DVV_METRICS_PORT" in r.stderr and "Address already in use" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [["--follow", str(ROOT / "tests" / "fixtures" / "dvv" / "page1.json")], ["--poll", "--follow", "--max-pages", "2"], ["--poll", "--follow", "--dry-run"]])
def test_follow_usage_errors(args):
    r = subprocess.run([*HUB, "ingest", "dvv", *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert r.returncode == 2 and "--follow" in r.stderr and "Traceback" not in r.stderr
