"""`hub registry`, `hub schemas check`, `hub replay`, `hub resend` as a user runs them."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.e2e.conftest import TEST_DATA_KEY, TEST_PERSON_KEY_SECRET

HUB = [sys.executable, "-m", "hub.cli"]
SECRETS = {"HUB_PERSON_KEY_SECRET": TEST_PERSON_KEY_SECRET, "HUB_DATA_KEYS": TEST_DATA_KEY}  # `hub webhooks` refuses the demo values


def run(*args, env=None, timeout=60):
    # none of the caller's HUB_* settings but the production secrets (tests/e2e/conftest.py)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") or k in ("HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS")}
    environ.update(env or {})
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=timeout, env=environ)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], json.loads(err.read())


def test_registry_serves_schemas_and_answers_unknown_ids_with_404():
    port = _free_port()
    proc = subprocess.Popen([*HUB, "registry", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                status, ctype, body = _get(f"{base}/subjects")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert status == 200 and ctype == "application/vnd.schemaregistry.v1+json"
        assert "fi.integrationhub.Referral" in body
        status, _, body = _get(f"{base}/schemas/ids/3")
        assert status == 200 and json.loads(body["schema"])["name"] == "Referral"
        assert _get(f"{base}/schemas/ids/4242")[::2] == (404, {"error_code": 40403, "message": "Schema 4242 not found"})
        other = json.dumps({"schema": json.dumps({"type": "record", "name": "Referral", "namespace": "fi.integrationhub", "fields": []})})
        req = urllib.request.Request(f"{base}/subjects/fi.integrationhub.Referral/versions", data=other.encode(), method="POST")
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("a schema the hub does not have must be refused")
        except urllib.error.HTTPError as err:
            assert err.code == 422 and json.loads(err.read())["error_code"] == 42205
    finally:
        proc.terminate()
        proc.wait(10)


def test_schemas_check_passes_on_the_shipped_schemas():
    out = run("schemas", "check")
    assert out.returncode == 0, out.stderr
    assert "PopulationChange: 3 version(s), FULL_TRANSITIVE: ok" in out.stdout
    assert "each with its own id: ok" in out.stdout


def test_replay_and_resend_usage_errors_exit_2_without_traceback():
    for args in (
        ("replay", "--topic", "hub.newcomers.v1"),
        ("replay", "--topic", "hub.newcomers.v1", "--from-offset", "0", "--from-time", "2026-11-16"),
        ("replay", "--topic", "hub.newcomers.v1", "--from-time", "yesterday"),
        ("replay", "--topic", "hub.newcomers.v1", "--from-offset", "0"),  # no HUB_KAFKA_URL
        ("resend", "--recipient", "nobody", "--from-seq", "1"),
        ("resend", "--recipient", "municipality:091", "--from-seq", "0"),
        ("resend", "--recipient", "municipality:091", "--from-seq", "5", "--to-seq", "2"),
    ):
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert "Traceback" not in out.stderr and "Error:" in out.stderr
    for command in ("registry", "schemas", "replay", "resend"):
        assert run(command, "--help").returncode == 0


def test_webhooks_add_list_disable_redeliver_on_sqlite(tmp_path):
    env = {"HUB_DATA_DIR": str(tmp_path), **SECRETS}
    assert run("db", "upgrade", env=env).returncode == 0
    refused = run("webhooks", "add", "--recipient", "wellbeing_area:04", "--url", "http://receiver.example.fi/hook", env=env)
    assert refused.returncode == 2 and "https" in refused.stderr and "Traceback" not in refused.stderr
    assert run("webhooks", "add", "--recipient", "nobody", "--url", "https://receiver.example.fi/hook", env=env).returncode == 2
    added = run("webhooks", "add", "--recipient", "wellbeing_area:04", "--url", "https://receiver.example.fi/hook", env=env)
    assert added.returncode == 0, added.stderr
    assert "subscription 1" in added.stdout and "whsec_" in added.stdout
    secret = added.stdout.split("whsec_", 1)[1].strip()
    listed = run("webhooks", "list", "--json", env=env)
    row = json.loads(listed.stdout.splitlines()[0])
    assert row["recipient"] == "wellbeing_area:04" and row["active"] is True and secret not in listed.stdout
    assert run("webhooks", "disable", "1", env=env).returncode == 0
    assert json.loads(run("webhooks", "list", "--json", env=env).stdout)["active"] is False
    assert run("webhooks", "disable", "7", env=env).returncode == 2
    assert run("webhooks", "redeliver", env=env).returncode == 2
    assert "0 parked deliveries queued again" in run("webhooks", "redeliver", "--subscription", "1", env=env).stdout


def test_replay_resend_and_webhook_delivery_use_the_kafka_security_settings(tmp_path):
    """The subscribers' commands talk to the broker with the same TLS/SASL settings as the worker:
    an incomplete SASL configuration is a usage error naming the variables, before any connection."""
    env = {"HUB_KAFKA_URL": "kafka://127.0.0.1:1", "HUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HUB_DATA_DIR": str(tmp_path), **SECRETS}
    for args in (
        ("replay", "--topic", "hub.newcomers.v1", "--from-offset", "0"),
        ("resend", "--recipient", "municipality:091", "--from-seq", "1"),
        ("webhooks", "deliver"),
    ):
        out = run(*args, env=env)
        assert out.returncode == 2, (args, out.stderr)
        assert "HUB_KAFKA_SASL_USERNAME" in out.stderr and "Traceback" not in out.stderr
