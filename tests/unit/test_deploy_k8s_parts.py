"""Kubernetes: the Grafana dashboard ConfigMap (generated from deploy/grafana/hub.json, the file
compose's Grafana provisions), the migrations' init container before the workers, and the
operating guide's Deploying section naming every part compose and Kubernetes run.

The manifests are read the way tests/unit/test_deploy_manifests.py reads them (its own kustomize
walk, which kubernetes-validate checks); where `kubectl` is installed, its built-in kustomize
builds the example overlay too and must give the same resources.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hub.cli import main
from hub.config import Settings
from tests.unit.test_deploy_compose import SERVICES, _mounts
from tests.unit.test_deploy_manifests import BASE_DOCS, ENV_NAMES, K8S, OVERLAY_DOCS, ROOT, _validate, _worker

DASHBOARD = ROOT / "deploy" / "grafana" / "hub.json"
SIDECAR_LABEL = ("grafana_dashboard", "1")  # kube-prometheus-stack's grafana.sidecar.dashboards.label / labelValue
# kubectl apply (client-side) keeps the whole object in an annotation; annotations are limited to 256 KiB
ANNOTATION_LIMIT = 256 * 1024


def _dashboard_config_maps(docs) -> list[dict]:
    return [d for _, d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get(SIDECAR_LABEL[0]) == SIDECAR_LABEL[1]]


# --- the dashboard -----------------------------------------------------------------------------


def test_the_dashboard_config_map_is_generated_from_the_file_compose_provisions():
    (config_map,) = _dashboard_config_maps(BASE_DOCS)
    assert config_map["data"] == {"hub.json": DASHBOARD.read_text(encoding="utf-8")}
    assert DASHBOARD in {source for name, source, _ in _mounts() if name == "grafana"}  # compose's Grafana: the same file
    dashboard = json.loads(config_map["data"]["hub.json"])
    assert dashboard["uid"] and dashboard["panels"]
    # any Grafana's Prometheus: the panels ask the dashboard's data source variable, no fixed uid
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    assert len(json.dumps(config_map).encode()) < ANNOTATION_LIMIT
    assert _dashboard_config_maps(OVERLAY_DOCS) == [config_map]


def test_the_dashboard_config_map_is_validated_with_the_rest():
    (config_map,) = _dashboard_config_maps(BASE_DOCS)
    _validate(K8S / "base" / "kustomization.yaml", config_map)


def test_a_changed_dashboard_file_changes_the_config_map(tmp_path):
    """The generator reads the file itself: no copy to keep in step."""
    from tests.unit.test_deploy_manifests import _kustomize

    grafana = tmp_path / "grafana"
    shutil.copytree(ROOT / "deploy" / "grafana", grafana)
    (grafana / "hub.json").write_text('{"title": "changed"}', encoding="utf-8")
    docs, _ = _kustomize(grafana)
    (config_map,) = _dashboard_config_maps(docs)
    assert config_map["data"] == {"hub.json": '{"title": "changed"}'}


KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module")
def built_overlay() -> list[dict]:
    if not KUBECTL:
        pytest.skip("kubectl (its built-in kustomize) is not installed")
    out = subprocess.run([KUBECTL, "kustomize", str(K8S / "overlays" / "example")], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.load_all(out.stdout, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d]


def test_kustomize_builds_the_same_resources_and_the_dashboard_from_the_file(built_overlay):
    assert sorted((d["kind"], d["metadata"]["name"]) for d in built_overlay) == \
        sorted((d["kind"], d["metadata"]["name"]) for _, d in OVERLAY_DOCS)
    (config_map,) = [d for d in built_overlay if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "hub-grafana-dashboard"]
    assert config_map["data"] == {"hub.json": DASHBOARD.read_text(encoding="utf-8")}
    assert config_map["metadata"]["labels"][SIDECAR_LABEL[0]] == SIDECAR_LABEL[1]
    (worker,) = [d for d in built_overlay if d["kind"] == "Deployment" and d["metadata"]["name"] == "hub-worker"]
    spec = worker["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    assert init["args"] == ["db", "upgrade"] and init["image"] == spec["containers"][0]["image"]  # the overlay's image for both


# --- the migrations ----------------------------------------------------------------------------


def test_the_migrations_run_in_an_init_container_before_the_worker():
    """`hub db upgrade` in the worker's pod before the worker: the same image, the same database and
    secrets (migration 0013 seals with them), non-root on a read-only root file system; it needs no
    broker and no Kafka credential."""
    spec = _worker()["spec"]["template"]["spec"]
    (worker,) = spec["containers"]
    (init,) = spec["initContainers"]
    assert init["args"] == ["db", "upgrade"]
    assert CliRunner().invoke(main, [*init["args"], "--help"]).exit_code == 0
    assert init["image"] == worker["image"] and init["imagePullPolicy"] == worker["imagePullPolicy"]
    env = {e["name"]: e for e in init["env"]}
    worker_env = {e["name"]: e for e in worker["env"]}
    assert set(env) <= ENV_NAMES, f"unknown settings: {set(env) - ENV_NAMES}"
    for name in ("HUB_DATABASE_URL", "HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS", "HUB_DATA_DIR"):
        assert env[name] == worker_env[name], f"{name}: the init container must migrate the worker's database"
    assert not any(name.startswith("HUB_KAFKA") for name in env)
    Settings.from_env({k: v["value"] for k, v in env.items() if "value" in v})
    assert init["securityContext"] == worker["securityContext"]
    assert init["resources"]["requests"] and init["resources"]["limits"]["memory"]
    volumes = {v["name"] for v in spec["volumes"]}
    assert {m["name"] for m in init["volumeMounts"]} <= volumes
    assert {m["mountPath"] for m in init["volumeMounts"]} >= {"/tmp", env["HUB_DATA_DIR"]["value"]}


# hub commands that run the migrations themselves at start (under the same advisory lock)
SELF_MIGRATING = {("worker",), ("ingest", "dvv")}


def test_every_deployment_that_uses_the_database_has_its_schema_migrated_before_it_starts():
    for _, doc in BASE_DOCS:
        if doc["kind"] != "Deployment":
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec["containers"]:
            if not any(e["name"] == "HUB_DATABASE_URL" for e in container.get("env", [])):
                continue
            args = tuple(container["args"])
            migrated = any(tuple(i["args"]) == ("db", "upgrade") for i in spec.get("initContainers", []))
            assert migrated or any(args[:len(c)] == c for c in SELF_MIGRATING), \
                f"{doc['metadata']['name']}: `hub {' '.join(args)}` does not run the migrations; give its pod the init " \
                "container db-upgrade (`hub db upgrade`) as deploy/k8s/base/worker.yaml does"


def test_compose_runs_the_migrations_once_before_every_long_running_service_that_uses_the_database():
    for name, service in SERVICES.items():
        if "HUB_DATABASE_URL" in (service.get("environment") or {}) and service.get("restart") != "no":
            assert service["depends_on"]["db-upgrade"]["condition"] == "service_completed_successfully", name


# --- the operating guide -----------------------------------------------------------------------


def _deploying_section() -> str:
    text = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    start = text.index("\n## Deploying")
    return text[start:text.index("\n## ", start + 1)]


def test_the_deploying_section_names_every_part_compose_and_kubernetes_run():
    section = _deploying_section()
    named = set(re.findall(r"`([^`]+)`", section))
    for service in SERVICES:
        assert service in named, f"docs/operating.md, Deploying: the compose service `{service}` is not described"
    for _, doc in BASE_DOCS:
        if doc["kind"] in ("Deployment", "PodMonitor", "PrometheusRule") or doc in _dashboard_config_maps(BASE_DOCS):
            assert doc["metadata"]["name"] in named, \
                f"docs/operating.md, Deploying: the {doc['kind']} `{doc['metadata']['name']}` is not described"
    for spec in (d["spec"]["template"]["spec"] for _, d in BASE_DOCS if d["kind"] == "Deployment"):
        for container in spec.get("initContainers", []):
            assert f"hub {' '.join(container['args'])}" in named, container["name"]
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        path = (K8S / "base" / resource).resolve().relative_to(ROOT)
        assert any(str(path) in n for n in named), f"docs/operating.md, Deploying: {path} is not named"
    for command in ("docker compose -f deploy/compose/docker-compose.yml up -d --build", "kubectl apply -k deploy/k8s/overlays/example"):
        assert command in section


def _rows(section: str) -> dict[str, str]:
    """Table rows of the section by their first cell's first code span."""
    return {m.group(1): line for line in section.splitlines() if (m := re.match(r"^\| `([^`]+)`", line))}


def test_each_compose_row_names_the_services_ports():
    rows = _rows(_deploying_section())
    for name, service in SERVICES.items():
        ports = [str(p).split(":")[-1] for p in service.get("ports", []) + service.get("expose", [])]
        for port in ports:
            assert re.search(rf"\b{port}\b", rows[name]), f"docs/operating.md, Deploying: the row of `{name}` does not name port {port}"


def _secrets(spec: dict) -> set[str]:
    names = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for container in spec["containers"] + spec.get("initContainers", []):
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
    return names


def test_each_kubernetes_row_names_the_deployments_secrets_ports_and_command():
    rows = _rows(_deploying_section())
    for path, doc in BASE_DOCS:
        if doc["kind"] != "Deployment":
            continue
        row = rows[str(path.relative_to(ROOT))]
        spec = doc["spec"]["template"]["spec"]
        missing = {s for s in _secrets(spec) if f"`{s}`" not in row}
        assert not missing, f"docs/operating.md, Deploying: the row of {path.name} does not name the Secrets {sorted(missing)}"
        for container in spec["containers"]:
            words = " ".join(itertools.takewhile(lambda a: not a.startswith("-"), container["args"]))
            assert f"`hub {words}" in row, f"{path.name}: the row does not name `hub {words}`"
            for port in container.get("ports", []):
                assert re.search(rf"\b{port['containerPort']}\b", row), f"{path.name}: the row does not name port {port['containerPort']}"


def test_the_readme_points_to_the_deploying_section():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/operating.md#deploying" in readme
    assert Path(ROOT / "deploy" / "README.md").read_text(encoding="utf-8").count("docs/operating.md") >= 1
