"""The `hub` command as a user runs it."""

import os
import subprocess
import sys

import pytest

HUB = [sys.executable, "-m", "hub.cli"]


def run(*args, env=None, timeout=120):
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def test_help_lists_subcommands():
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("demo", "worker"):
        assert cmd in out.stdout


@pytest.mark.parametrize("cmd", ["demo", "worker"])
def test_every_subcommand_has_help(cmd):
    out = run(cmd, "--help")
    assert out.returncode == 0 and "Usage:" in out.stdout


def test_wrong_flag_is_a_usage_error_not_a_traceback():
    out = run("demo", "--no-such-flag")
    assert out.returncode == 2
    assert "No such option" in out.stderr and "Traceback" not in out.stderr


NO_SECRETS = {"HUB_PERSON_KEY_SECRET": "", "HUB_DATA_KEYS": ""}
DVV_PAGE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "dvv", "page1.json")


@pytest.mark.parametrize("args", [["worker"], ["ingest", "dvv", DVV_PAGE], ["ingest", "dvv", "--poll"], ["consent", "show"], ["audit"], ["webhooks", "list"]])
def test_production_commands_refuse_the_demo_person_key_secret(args, tmp_path):
    """Under the demo secret a person key reverses to the identity code in seconds: a production
    command stops before it touches anything, with one line naming the variable and how to make one."""
    out = run(*args, env={**NO_SECRETS, "HUB_DATA_DIR": str(tmp_path), "HUB_KAFKA_URL": "kafka://127.0.0.1:1", "HUB_DATABASE_URL": "",
                          "HUB_PERSON": "010190-900P"}, timeout=60)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "HUB_PERSON_KEY_SECRET is not set" in out.stderr and "secrets.token_urlsafe" in out.stderr
    assert "Traceback" not in out.stderr and "010190" not in out.stderr
    assert not (tmp_path / "hub.sqlite3").exists()  # nothing touched


def test_production_commands_refuse_the_demo_data_key(tmp_path):
    out = run("worker", env={"HUB_PERSON_KEY_SECRET": "a-secret-of-our-own", "HUB_DATA_KEYS": "", "HUB_DATA_DIR": str(tmp_path),
                             "HUB_KAFKA_URL": "kafka://127.0.0.1:1"}, timeout=60)
    assert out.returncode == 2 and "HUB_DATA_KEYS is not set" in out.stderr and "Fernet.generate_key" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_dry_run_of_ingest_writes_nothing_and_runs_on_the_demo_secret(tmp_path):
    out = run("ingest", "dvv", "--dry-run", "--quiet", DVV_PAGE, env={**NO_SECRETS, "HUB_DATA_DIR": str(tmp_path)}, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("\n") > 0 and "Traceback" not in out.stderr


def _tansu_children_of(pid: int):
    """Broker processes whose parent is `pid` (other sessions' brokers on the machine don't count)."""
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "tansu"], capture_output=True, text=True)
    return set(out.stdout.split())


@pytest.mark.integration
def test_demo_runs_on_embedded_defaults_and_leaves_no_process(tmp_path):
    env = {"HUB_DATA_DIR": str(tmp_path), "HUB_METRICS_PORT": "0"}
    # the demo runs on the demo secrets: neither HUB_PERSON_KEY_SECRET nor HUB_DATA_KEYS set
    env_clear = {k: "" for k in ("HUB_KAFKA_URL", "HUB_DATABASE_URL", "HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS")}
    proc = subprocess.Popen([*HUB, "demo", "--changes", "500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, **env_clear, **env})
    seen_broker = set()
    while proc.poll() is None:  # the demo's own broker is its child while it runs
        seen_broker |= _tansu_children_of(proc.pid)
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    stdout, stderr = proc.communicate(timeout=300)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "summary" in out.stdout
    import re

    newcomers = int(re.search(r"newcomers detected:\s+(\d+)", out.stdout).group(1))
    referrals = int(re.search(r"referrals:\s+(\d+)", out.stdout).group(1))
    assert newcomers > 10 and referrals >= newcomers
    assert "municipality:091" in out.stdout and "invalid_person_id" in out.stdout
    assert re.search(r"plan requests disclosed:\s+[1-9]", out.stdout) and "revocation notices 1" in out.stdout
    assert re.search(r"referrals withdrawn:\s+\d+", out.stdout) and re.search(r"due dates updated:\s+\d+", out.stdout)
    # the simulated employment authorities, Migri and wellbeing areas publish on the fact inputs, as in
    # production: the employment authorities' assessment referrals come from their jobseeker statuses
    facts = re.search(r"routing facts reported:\s+(\d+)\s+\((.*?);", out.stdout)
    assert facts and int(facts.group(1)) > 0, out.stdout
    assert all(schema in facts.group(2) for schema in ("JobseekerStatus", "ResidencePermit")), facts.group(2)
    assert re.search(r"employment_authority:\d+\s+[1-9]", out.stdout), out.stdout
    assert "metrics (while running):     http://127.0.0.1:" in out.stdout
    assert seen_broker, "the demo should have started its own broker"
    for pid in seen_broker:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", "broker left running"
