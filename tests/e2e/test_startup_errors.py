"""A command meets a bad settings file or a service that is down: one clear line and its documented
exit status (2 a bad file or setting, 1 a broker or database that did not answer within
HUB_STARTUP_TIMEOUT), progress while it waits, never a traceback or a password."""

import os
import socket
import subprocess
import sys

import pytest

HUB = [sys.executable, "-m", "hub.cli"]
DVV_PAGE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "dvv", "page1.json")
PASSWORD = "pw-never-shown"


def run(*args, env=None, timeout=60):
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error(out) -> str:
    """The one line that is not progress ("hub: waiting for ..."), checked to be the only one."""
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("hub: waiting for ")]
    assert len(lines) == 1, out.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("content, says", [(None, "cannot read rules file"), ("rules: [unclosed\n", "is not valid YAML")])
def test_worker_with_a_bad_routing_rules_file_says_so_in_one_line(tmp_path, content, says):
    rules = tmp_path / "rules.yaml"
    if content is not None:
        rules.write_text(content)
    out = run("worker", env={"HUB_ROUTING_RULES": str(rules), "HUB_DATA_DIR": str(tmp_path), "HUB_KAFKA_URL": f"127.0.0.1:{closed_port()}"})
    assert out.returncode == 2
    line = one_error(out)
    assert "HUB_ROUTING_RULES" in line and says in line and str(rules) in line


def test_worker_with_a_legal_basis_in_the_old_form_says_the_fix_in_one_line(tmp_path):
    bases = tmp_path / "bases.yaml"
    bases.write_text('legal_bases:\n  - {name: "681/2023 § 80", purpose: integration_plan, recipient_kinds: [employment_authority], '
                     'data_categories: [education]}\n')
    out = run("worker", env={"HUB_CONSENT_LEGAL_BASES": str(bases), "HUB_DATA_DIR": str(tmp_path), "HUB_KAFKA_URL": f"127.0.0.1:{closed_port()}"})
    assert out.returncode == 2
    line = one_error(out)
    assert "HUB_CONSENT_LEGAL_BASES" in line and str(bases) in line and "old form" in line and "discloser_kinds" in line


def _down(tmp_path, **extra):
    port = closed_port()
    return {"HUB_STARTUP_TIMEOUT": "2", "HUB_DATA_DIR": str(tmp_path), "HUB_METRICS_PORT": "0", "HUB_KAFKA_URL": f"kafka://127.0.0.1:{port}",
            "HUB_DATABASE_URL": f"postgresql+psycopg://hub:{PASSWORD}@127.0.0.1:{port}/hub", **extra}, port


@pytest.mark.parametrize("args", [["worker"], ["ingest", "dvv", DVV_PAGE], ["replay", "--topic", "hub.newcomers.v1", "--from-offset", "0"]])
def test_a_broker_that_is_down_is_waited_for_then_refused_in_one_line(tmp_path, args):
    env, port = _down(tmp_path)
    out = run(*args, env=env)
    assert out.returncode == 1, out.stderr[-3000:]
    line = one_error(out)
    assert f"the broker at 127.0.0.1:{port} did not answer within 2 s" in line and "HUB_KAFKA_URL" in line
    assert "hub: waiting for the broker" in out.stderr  # progress while it waited


@pytest.mark.parametrize("args", [["worker"], ["consent", "show"], ["report", "--municipality", "091",
                                  "--from", "2025-01-01", "--to", "2025-12-31"], ["webhooks", "list"]])
def test_a_database_that_is_down_is_waited_for_then_refused_without_its_password(tmp_path, args):
    env, port = _down(tmp_path, HUB_PERSON="010190-900P")  # `hub consent show` reads the identity code from the environment
    if args[0] == "worker":
        env["HUB_KAFKA_URL"] = ""  # the embedded broker: the database is the one that is down
    out = run(*args, env=env)
    assert out.returncode == 1, out.stderr[-3000:]
    line = one_error(out)
    assert f"the database at postgresql+psycopg://hub:***@127.0.0.1:{port}/hub did not answer within 2 s" in line
    assert "HUB_DATABASE_URL" in line and PASSWORD not in out.stderr + out.stdout and "010190" not in out.stderr
    assert "hub: waiting for the database" in out.stderr


def test_a_bad_startup_timeout_is_a_usage_error(tmp_path):
    out = run("worker", env={"HUB_STARTUP_TIMEOUT": "soon", "HUB_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2 and "HUB_STARTUP_TIMEOUT='soon' is not a number" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("name", ["x.txt", "report"])
def test_report_refuses_a_plot_format_it_cannot_write_before_reading_the_ledger(tmp_path, name):
    pytest.importorskip("matplotlib")
    env, _ = _down(tmp_path, HUB_STARTUP_TIMEOUT="30")  # reading the ledger would wait 30 s for the database
    out = run("report", "--municipality", "091", "--from", "2025-01-01", "--to", "2025-12-31", "--plot", str(tmp_path / name), env=env, timeout=20)
    assert out.returncode == 2
    line = one_error(out)
    assert f"--plot {tmp_path / name}" in line and ".png" in line and "hub: waiting" not in out.stderr
    assert not (tmp_path / name).exists()
