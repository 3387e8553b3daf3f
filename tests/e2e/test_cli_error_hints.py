"""An error of `hub registry` or `hub gaps` names the setting or option that fixes it (exit 2, one
`Error:` line, never a traceback)."""

import os
import subprocess
import sys

import pytest

HUB = [sys.executable, "-m", "hub.cli"]


def run(*args, env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") or k in ("HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS")}
    environ.update(env or {})
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=60, env=environ)


def _error(out) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = [text for text in out.stderr.splitlines() if text.startswith("Error:")]
    return line


@pytest.mark.parametrize("host", ["nosuchhost.invalid", "192.0.2.1"])  # no such name; an address not of this machine (TEST-NET-1)
def test_registry_on_a_host_it_cannot_listen_on_names_the_host(host):
    line = _error(run("registry", "--host", host, "--port", "0"))
    assert f"cannot listen on {host}:0" in line and "--host" in line and "--port" not in line


def test_registry_on_a_taken_port_names_the_port():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        line = _error(run("registry", "--host", "127.0.0.1", "--port", str(taken.getsockname()[1])))
    assert "choose another --port" in line and "--host" not in line


def test_gaps_without_a_broker_names_hub_kafka_url_and_what_it_checks(tmp_path):
    line = _error(run("gaps", "--recipient", "wellbeing_area:04", env={"HUB_DATA_DIR": str(tmp_path)}))
    assert "set HUB_KAFKA_URL" in line and "recipient's topics" in line
    assert "replay" not in line and "resend" not in line
