"""deploy/compose/docker-compose.yml and the Dockerfile, checked statically (no Docker engine here):
by the official Docker Compose CLI's `config` (Debian's docker-compose package, pinned in
tools/compose/docker-compose.pin and unpacked under build/ by `make compose-cli`; skipped with that
reason where it is not) and by the checks below of what the hub needs of them, among them that
Prometheus and Grafana get the alert rules (deploy/prometheus/alerts.yml) and the dashboard
(deploy/grafana/hub.json).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hub.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose" / "docker-compose.yml"
COMPOSE_DIR = COMPOSE_FILE.parent
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
MONITORING_FILES = {ROOT / "deploy" / "prometheus" / "alerts.yml", ROOT / "deploy" / "grafana" / "hub.json"}
ENV_NAMES = set(re.findall(r'"(HUB_[A-Z0-9_]+)"', (ROOT / "hub" / "config.py").read_text()))
HUB_SERVICES = [name for name, s in SERVICES.items() if "build" in s]
SECRETLESS = {"registry"}  # hub services that need no secret: the schema registry serves the repository's schemas


def _mounts():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                yield name, (COMPOSE_DIR / source).resolve(), target


COMPOSE_CLI = ROOT / "build" / "docker-compose" / "usr" / "libexec" / "docker" / "cli-plugins" / "docker-compose"
COMPOSE_PIN = next(line.split() for line in (ROOT / "tools" / "compose" / "docker-compose.pin").read_text().splitlines() if not line.startswith("#"))
needs_compose_cli = pytest.mark.skipif(not COMPOSE_CLI.exists(), reason="the official Docker Compose CLI is not unpacked: `make compose-cli` "
                                       "(tools/compose/fetch: Debian's docker-compose package, version pinned)")


def _compose_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    """`docker-compose config --quiet` of `text` as deploy/compose/docker-compose.yml of a copy, beside an
    empty hub-secrets.env (the operator makes it; it is not in the repository), with no variable set."""
    compose_dir = tmp_path / "deploy" / "compose"
    compose_dir.mkdir(parents=True, exist_ok=True)
    (compose_dir / "docker-compose.yml").write_text(text, encoding="utf-8")
    (compose_dir / "hub-secrets.env").write_text("", encoding="utf-8")
    return subprocess.run([str(COMPOSE_CLI), "-f", str(compose_dir / "docker-compose.yml"), "config", "--quiet"], cwd=tmp_path,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)


@needs_compose_cli
def test_the_official_compose_cli_accepts_the_compose_file(tmp_path):
    version = subprocess.run([str(COMPOSE_CLI), "version", "--short"], capture_output=True, text=True, timeout=60).stdout.strip()
    assert version == COMPOSE_PIN[1], "build/docker-compose is not the pinned version: `make compose-cli`"
    result = _compose_config(tmp_path, COMPOSE_FILE.read_text(encoding="utf-8"))
    assert result.returncode == 0, result.stderr
    # and it does check: a misspelt key is refused, naming it
    broken = COMPOSE_FILE.read_text(encoding="utf-8").replace("    healthcheck:\n      test:", "    healthcheck:\n      tests:", 1)
    assert broken != COMPOSE_FILE.read_text(encoding="utf-8")
    result = _compose_config(tmp_path, broken)
    assert result.returncode != 0 and "tests" in result.stderr, result.stderr


def test_services_of_the_issue_are_there():
    assert {"kafka", "postgres", "prometheus", "grafana", "worker", "db-upgrade", "topics"} <= set(SERVICES)
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2


def test_images_are_pinned_to_versions():
    for name, service in SERVICES.items():
        if "build" in service:
            continue
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and re.match(r"^v?\d+\.\d+(\.\d+)?", tag), f"{name}: {image} is not pinned to a version"
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")


def test_kafka_runs_in_kraft_mode_without_auto_created_topics():
    env = SERVICES["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    bootstrap = SERVICES["worker"]["environment"]["HUB_KAFKA_URL"].split("://")[1]
    assert f"PLAINTEXT://{bootstrap}" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")


def test_hub_services_build_from_the_repository_dockerfile():
    for name in HUB_SERVICES:
        build = SERVICES[name]["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).is_file(), name
        assert (context / "pyproject.toml").is_file()


def test_hub_services_run_real_commands_with_known_settings():
    runner = CliRunner()
    for name in HUB_SERVICES:
        service = SERVICES[name]
        result = runner.invoke(main, [*service["command"], "--help"])
        assert result.exit_code == 0, f"{name}: `hub {' '.join(service['command'])}` is not a hub command: {result.output}"
        assert set(service["environment"]) <= ENV_NAMES, f"{name}: unknown settings {set(service['environment']) - ENV_NAMES}"
    worker = SERVICES["worker"]["depends_on"]
    assert worker["db-upgrade"]["condition"] == worker["topics"]["condition"] == "service_completed_successfully"
    assert SERVICES["db-upgrade"]["command"] == ["db", "upgrade"]
    assert SERVICES["topics"]["command"][:2] == ["topics", "--create"]


def test_every_mounted_file_exists():
    for name, source, _ in _mounts():
        assert source.exists(), f"{name} mounts {source.relative_to(ROOT)}, which does not exist"


@pytest.mark.parametrize("path", sorted(MONITORING_FILES), ids=lambda p: p.name)
def test_alert_rules_and_dashboard_are_mounted_and_exist(path):
    assert path in {source for _, source, _ in _mounts()}, f"{path.relative_to(ROOT)} is not mounted"
    assert path.exists() and path.stat().st_size > 0, f"{path.relative_to(ROOT)} is missing or empty"


def test_prometheus_loads_the_rules_and_scrapes_the_workers():
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    targets = {target for name, _, target in _mounts() if name == "prometheus"}
    assert set(config["rule_files"]) <= targets
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "integration-hub"]  # the job the alert rules select
    (sd,) = job["dns_sd_configs"]
    assert "worker" in sd["names"] and sd["port"] == int(SERVICES["worker"]["environment"]["HUB_METRICS_PORT"])


def test_grafana_provisions_the_datasource_and_the_dashboard_folder():
    mounts = {source: target for name, source, target in _mounts() if name == "grafana"}
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts[provisioning] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "hub.yml").read_text())["providers"]
    assert Path(mounts[ROOT / "deploy" / "grafana" / "hub.json"]).parent == Path(provider["options"]["path"])
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http://prometheus:")


# --- Dockerfile, lint-level -------------------------------------------------------------------

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_base_image_is_pinned_by_tag_and_digest():
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE, re.M))
    froms = [value.split()[0] for op, value in _instructions() if op == "FROM"]
    assert froms
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.match(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*@sha256:[0-9a-f]{64}$", image), f"FROM {image} is not pinned by tag and digest"


def test_runs_as_a_non_root_user():
    users = [value.strip() for op, value in _instructions() if op == "USER"]
    assert users, "no USER instruction: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_healthcheck_and_entrypoint_run_hub_commands():
    ops = dict((op, value) for op, value in _instructions())
    assert "HEALTHCHECK" in ops
    check = shlex.split(ops["HEALTHCHECK"].split("CMD", 1)[1].replace('"', "").replace("[", "").replace("]", "").replace(",", ""))
    assert check[0] == "hub"
    assert CliRunner().invoke(main, [*check[1:], "--help"]).exit_code == 0
    assert ops["ENTRYPOINT"].strip() == '["hub"]' and ops["CMD"].strip() == '["worker"]'
    assert "9108" in ops["EXPOSE"]


def test_worker_healthcheck_asks_health_and_fails_on_503():
    """The compose worker's health check runs against a real /health: exit 0 on 200, not 0 on 503
    (a stopped consumer) or nothing listening; /metrics would answer 200 either way."""
    import subprocess
    import sys

    from hub import metrics

    check = SERVICES["worker"]["healthcheck"]
    assert check["test"][0] == "CMD" and "/health" in " ".join(check["test"]) and "/metrics" not in " ".join(check["test"])
    port = str(SERVICES["worker"]["environment"]["HUB_METRICS_PORT"])
    assert f"127.0.0.1:{port}/health" in check["test"][-1]
    assert _seconds(check["start_period"]) >= 180  # both start-up waits (60 s each), migrations, topics, group joins
    stopped: list[str] = []
    server, _thread = metrics.serve(0, "127.0.0.1", lambda: list(stopped))
    try:
        command = [sys.executable, *check["test"][2:-1], check["test"][-1].replace(f":{port}/", f":{server.server_port}/")]
        assert command[1] == "-c"
        assert subprocess.run(command, capture_output=True, timeout=30).returncode == 0
        stopped.append("routing-newcomers")
        assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0
    finally:
        server.shutdown()
        server.server_close()
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0  # nothing listening


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([sm])", duration))


def test_dockerignore_sends_only_the_package():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    for needed in ("!pyproject.toml", "!hub/", "!README.md"):
        assert needed in lines
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M)
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists(), f"COPY {source}: missing"


def test_publisher_identity_is_on_and_the_secrets_come_from_a_file_outside_the_repository():
    """Every hub service checks publishers (HUB_PUBLISHERS, a mounted file naming its keys'
    variables) and takes HUB_PERSON_KEY_SECRET, HUB_DATA_KEYS and the publishers' keys from
    hub-secrets.env, which is not in the repository: no default secret in the compose file."""
    import subprocess

    from hub.adapters.publisher_keys import parse

    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert not re.search(r"\$\{HUB_[A-Z0-9_]*(SECRET|KEY)[A-Z0-9_]*:-", text), "a default secret in the compose file"
    for name in HUB_SERVICES:
        service = SERVICES[name]
        env = service["environment"]
        if name in SECRETLESS:  # reads no topic and keys no person: no secret reaches it
            assert "env_file" not in service and not any(("SECRET" in k or "KEY" in k) for k in env), name
            continue
        mounts = {target: source for n, source, target in _mounts() if n == name}
        data = yaml.safe_load(mounts[env["HUB_PUBLISHERS"]].read_text(encoding="utf-8"))
        key_vars = {v for entry in data["publishers"] for v in ([entry["key_env"]] if isinstance(entry["key_env"], str) else entry["key_env"])}
        assert parse(data, {v: "k" * 32 for v in key_vars}).get(env["HUB_APP_ID"]) is not None, f"{name}: the hub's own entry"
        secrets = key_vars | {"HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS"}
        assert not secrets & set(env), f"{name}: {secrets & set(env)} set in the compose file"
        env_files = service["env_file"] if isinstance(service["env_file"], list) else [service["env_file"]]
        assert env_files == ["hub-secrets.env"], name
    ignored = subprocess.run(["git", "check-ignore", "-q", str(COMPOSE_DIR / "hub-secrets.env")], cwd=ROOT)
    assert ignored.returncode == 0, "hub-secrets.env must be ignored by git"


def test_the_schema_registry_runs_and_its_healthcheck_asks_health():
    """The compose registry serves `hub registry` on every interface, needs no secret, and its
    health check passes against a real registry and fails with nothing listening."""
    import subprocess
    import sys

    from hub.adapters.registry_server import serving

    registry = SERVICES["registry"]
    assert registry["command"] == ["registry", "--host", "0.0.0.0", "--port", "8081"]
    assert "env_file" not in registry and "8081:8081" in registry["ports"]
    check = registry["healthcheck"]
    assert check["test"][0] == "CMD" and "127.0.0.1:8081/health" in check["test"][-1]
    with serving() as url:
        command = [sys.executable, *check["test"][2:-1], check["test"][-1].replace("127.0.0.1:8081", url.split("//")[1])]
        assert subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0


def test_webhook_delivery_runs_as_a_service_with_its_health_check_and_is_scraped():
    service = SERVICES["webhooks"]
    assert service["command"] == ["webhooks", "serve"]
    assert service["deploy"]["replicas"] == 1  # two would share each subscription's queue
    assert "/health" in " ".join(service["healthcheck"]["test"]) and service["environment"]["HUB_METRICS_PORT"] == "9108"
    assert str(service["environment"].get("HUB_WEBHOOKS_ALLOW_LOOPBACK", "off")) == "off"
    assert service["depends_on"]["db-upgrade"]["condition"] == "service_completed_successfully"
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    hub_job = next(job for job in config["scrape_configs"] if job["job_name"] == "hub-webhooks")  # its own job (HubWebhooksDown)
    assert "webhooks" in {name for sd in hub_job["dns_sd_configs"] for name in sd["names"]}
