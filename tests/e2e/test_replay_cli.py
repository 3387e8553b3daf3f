"""`hub replay` on the real (embedded) broker as a user runs it: a start after the newest record
replays nothing and says so (the embedded broker answers a time past the end with offset 0)."""

import datetime as dt
import os
import subprocess
import sys
import uuid

from tests.kafka_helpers import produce, read_topic, run

HUB = [sys.executable, "-m", "hub.cli"]


def hub(kafka_url, *args):
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HUB_KAFKA_URL": kafka_url, "HUB_STARTUP_TIMEOUT": "10"})


def test_replay_from_a_time_after_the_newest_record_replays_nothing(kafka_url):
    topic = f"test.{uuid.uuid4().hex[:8]}.newcomers"
    run(produce(kafka_url, topic, [(b"k", b"one"), (b"k", b"two"), (b"k", b"three")]))
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = hub(kafka_url, "replay", "--topic", topic, "--from-time", later)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert out.stdout.strip() == f"nothing to replay: {topic} has no record from {later} on"
    assert len(run(read_topic(kafka_url, topic, min_count=3, timeout=10))) == 3  # nothing was appended


def test_replay_from_a_time_before_the_records_replays_them(kafka_url):
    topic = f"test.{uuid.uuid4().hex[:8]}.newcomers"
    run(produce(kafka_url, topic, [(b"k", b"one"), (b"k", b"two")]))
    out = hub(kafka_url, "replay", "--topic", topic, "--from-time", "2020-01-01")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith(f"replayed 2 record(s) of {topic}")
