"""`hub publish` as a publisher runs it: on a deployment without publisher identity (no
HUB_PUBLISHERS) a status is sent with --unsigned; without it the command says so in one line."""

import os
import subprocess
import sys

from hub.schemas.codec import default_codec
from hub.schemas.envelope import envelope
from tests.kafka_helpers import read_topic, run

HUB = [sys.executable, "-m", "hub.cli"]
TOPIC = "hub.referral-status.v1"


def hub(env, *args):
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HUB_PUBLISHERS": "", **env})


def status_file(tmp_path):
    status = envelope("municipality:091")
    status.update(referral_id="r-unsigned-1", authority="municipality:091", status="accepted", reason=None)
    path = tmp_path / "status.json"
    path.write_text(default_codec().to_json("ReferralStatus", status))
    return path, status["event_id"]


def test_without_publishers_the_command_says_how_to_send_a_status(tmp_path):
    path, _ = status_file(tmp_path)
    out = hub({"HUB_KAFKA_URL": "kafka://127.0.0.1:1"}, "publish", "--topic", TOPIC, "--as", "municipality:091", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert "HUB_PUBLISHERS is not set" in line and "--unsigned" in line


def test_unsigned_is_refused_where_the_hub_checks_publisher_identity(tmp_path):
    path, _ = status_file(tmp_path)
    (tmp_path / "publishers.yaml").write_text("publishers:\n  - id: municipality:091\n    key_env: KEY_091\n")
    out = hub({"HUB_PUBLISHERS": str(tmp_path / "publishers.yaml"), "KEY_091": "k" * 32, "HUB_KAFKA_URL": "kafka://127.0.0.1:1"},
              "publish", "--topic", TOPIC, "--unsigned", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert "--unsigned" in line and "HUB_PUBLISHERS is set" in line


def test_an_unsigned_status_is_sent_on_a_deployment_without_publisher_identity(tmp_path, kafka_url):
    path, event_id = status_file(tmp_path)
    out = hub({"HUB_KAFKA_URL": kafka_url, "HUB_STARTUP_TIMEOUT": "10"}, "publish", "--topic", TOPIC, "--unsigned", str(path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == event_id
    [sent] = [m for m in run(read_topic(kafka_url, TOPIC, timeout=10)) if dict(m.headers).get("ce_id") == event_id.encode()]
    assert sent.key == b"r-unsigned-1" and "hub-signature" not in dict(sent.headers)
