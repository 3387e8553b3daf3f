"""The shipped deployments serve /metrics on every interface: the liveness probe (kubelet, on the
pod IP) and Prometheus (another container or pod) could not reach 127.0.0.1, the setting's default.
And none of them lets webhooks go to loopback addresses."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

from hub.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _k8s_worker_env() -> dict:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / "worker.yaml").read_text(encoding="utf-8")) if d]
    (worker,) = [d for d in docs if d.get("kind") == "Deployment"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    return {e["name"]: e.get("value") for e in container["env"]}


def _compose_worker_env() -> dict:
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "docker-compose.yml").read_text(encoding="utf-8"))
    return {k: str(v) for k, v in compose["services"]["worker"]["environment"].items()}


def test_shipped_workers_serve_metrics_beyond_loopback():
    default = Settings.from_env({})
    assert ipaddress.ip_address(default.metrics_addr).is_loopback  # the default stays local (a developer's machine)
    for env in (_k8s_worker_env(), _compose_worker_env()):
        # HUB_PUBLISHERS names a file mounted in the container (tests/unit/test_deploy_manifests.py checks it)
        settings = Settings.from_env({k: v for k, v in env.items() if v is not None and k != "HUB_PUBLISHERS"})
        assert settings.metrics_addr == "0.0.0.0", env.get("HUB_METRICS_ADDR")
        assert settings.webhooks_allow_loopback is False
