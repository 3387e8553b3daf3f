"""Every Kubernetes manifest under deploy/k8s validates against its schema.

Built-in kinds: the Kubernetes JSON schemas shipped by the `kubernetes-validate` package (strict:
unknown fields fail). Strimzi kinds: the openAPIV3Schema of the Strimzi 1.2.0 CRDs
(tests/unit/data/strimzi-crds/, extracted from strimzi-kafka-operator's
packaging/install/cluster-operator/04x-Crd-*.yaml), made strict the same way. PodMonitor and
PrometheusRule: the openAPIV3Schema of the Prometheus Operator v0.93.0 CRDs
(tests/unit/data/prometheus-operator-crds/, extracted from prometheus-operator's
example/prometheus-operator-crd/monitoring.coreos.com_*.yaml), strict the same way; the
PrometheusRule also passes tests/unit/test_deploy_monitoring.py's check of its rules.
Kustomize is not installable here: the test follows kustomization.yaml resources and patches itself.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from hub.config import Settings
from hub.deploy import k8s

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DATA = Path(__file__).resolve().parent / "data"
# the kinds validated against a saved CRD schema: kind -> the directory of its <kind>.json
CRD_SCHEMAS = {
    **{kind: DATA / "strimzi-crds" for kind in ("Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser")},
    **{kind: DATA / "prometheus-operator-crds" for kind in ("PodMonitor", "PrometheusRule")},
}
ENV_NAMES = set(re.findall(r'"(HUB_[A-Z0-9_]+)"', (ROOT / "hub" / "config.py").read_text()))


LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the generated files are big


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.load_all(path.read_text(encoding="utf-8"), Loader=LOADER) if d]


# the kustomization fields _kustomize follows; another one fails the test instead of being ignored
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources", "configMapGenerator", "labels", "namespace", "images", "patches"}


def _kustomize(directory: Path) -> tuple[list[tuple[Path, dict]], dict]:
    """The documents a kustomization includes (recursively), and the kustomization itself."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= KUSTOMIZE_FIELDS, f"{directory}/kustomization.yaml: {set(kustomization) - KUSTOMIZE_FIELDS} not followed here"
    docs: list[tuple[Path, dict]] = []
    for resource in kustomization.get("resources", []):
        target = (directory / resource).resolve()
        assert target.exists(), f"{directory}/kustomization.yaml: resource {resource} does not exist"
        if target.is_dir():
            docs += _kustomize(target)[0]
        else:
            docs += [(target, d) for d in _documents(target)]
    for generator in kustomization.get("configMapGenerator", []):
        docs.append(_generated_config_map(directory, generator))
    return docs, kustomization


def _generated_config_map(directory: Path, generator: dict) -> tuple[Path, dict]:
    """A configMapGenerator's ConfigMap as kustomize makes it (files only; no name hash)."""
    assert set(generator) <= {"name", "files", "options"}, generator
    options = generator.get("options", {})
    assert set(options) <= {"disableNameSuffixHash", "labels", "annotations"}, options
    assert options.get("disableNameSuffixHash") is True, f"{generator['name']}: a hashed name is not followed here"
    data = {}
    for file in generator["files"]:
        path = (directory / file).resolve()
        # kustomize's load restriction: a generator reads files in or below its kustomization only
        assert path.is_relative_to(directory.resolve()) and path.is_file(), f"{directory}: kustomize cannot read {file}"
        data[path.name] = path.read_text(encoding="utf-8")
    metadata = {"name": generator["name"], "labels": options.get("labels", {}), "annotations": options.get("annotations", {})}
    return directory / "kustomization.yaml", {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {k: v for k, v in metadata.items() if v}, "data": data}


def _strict(schema):
    """Unknown fields fail, like `kubectl apply --validate=strict` (the API server prunes them)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=None)
def _crd_validator(kind: str):
    crd = json.loads((CRD_SCHEMAS[kind] / f"{kind}.json").read_text())
    return jsonschema.Draft7Validator(_strict(copy.deepcopy(crd["openAPIV3Schema"]))), f"{crd['group']}/{crd['version']}"


BASE_DOCS, BASE_KUSTOMIZATION = _kustomize(K8S / "base")
OVERLAY_DOCS, OVERLAY = _kustomize(K8S / "overlays" / "example")


def _validate(path: Path, doc: dict) -> None:
    kind = doc["kind"]
    where = f"{path.relative_to(ROOT)} {kind}/{doc['metadata']['name']}"
    if kind in CRD_SCHEMAS:
        validator, api = _crd_validator(kind)
        assert doc["apiVersion"] == api, where
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        assert not errors, f"{where}: " + "; ".join(f"{e.message} at {list(e.absolute_path)}" for e in errors)
        if kind == "PodMonitor":  # the schema allows both empty: an empty selector selects every pod
            assert doc["spec"]["selector"]["matchLabels"] and doc["spec"]["podMetricsEndpoints"], where
        elif kind == "PrometheusRule":
            from tests.unit.test_deploy_monitoring import check_prometheus_rule

            check_prometheus_rule(doc)
    else:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_every_manifest_of_base_and_overlay_validates_against_its_schema():
    kinds = set()
    for path, doc in OVERLAY_DOCS:  # the overlay includes the base
        _validate(path, doc)
        kinds.add(doc["kind"])
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Deployment", "PodMonitor", "PrometheusRule", "Namespace"} <= kinds
    assert len(OVERLAY_DOCS) == len(BASE_DOCS) + 1  # + the namespace


def test_the_strict_schemas_catch_a_typo():
    path, topic = next((p, d) for p, d in BASE_DOCS if d["kind"] == "KafkaTopic")
    bad = copy.deepcopy(topic)
    bad["spec"]["partition"] = bad["spec"].pop("partitions")
    with pytest.raises(AssertionError, match="partition"):
        _validate(path, bad)
    deployment = copy.deepcopy(next(d for _, d in BASE_DOCS if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(path, deployment)


def test_the_prometheus_operator_schemas_catch_a_typo():
    """Unknown fields in a PodMonitor (each file that has one) or a PrometheusRule fail, at every depth."""
    monitors = [(p, d) for p, d in BASE_DOCS if d["kind"] == "PodMonitor"]
    assert {p.name for p, _ in monitors} >= {"podmonitor.yaml", "webhooks.yaml"}
    for path, monitor in monitors:
        bad = copy.deepcopy(monitor)
        bad["spec"]["podMetricEndpoints"] = bad["spec"].pop("podMetricsEndpoints")
        with pytest.raises(AssertionError, match="'podMetricEndpoints' was unexpected"):
            _validate(path, bad)
        bad = copy.deepcopy(monitor)
        bad["spec"]["podMetricsEndpoints"][0]["scrapeIntervall"] = "30s"
        with pytest.raises(AssertionError, match=r"'scrapeIntervall' was unexpected\) at \['spec', 'podMetricsEndpoints', 0\]"):
            _validate(path, bad)
        bad = copy.deepcopy(monitor)
        bad["spec"]["podMetricsEndpoints"][0]["port"] = 9108  # the port's name; a number is portNumber
        with pytest.raises(AssertionError, match="9108 is not of type 'string'"):
            _validate(path, bad)
    path, rule = next((p, d) for p, d in BASE_DOCS if d["kind"] == "PrometheusRule")
    bad = copy.deepcopy(rule)
    bad["spec"]["groups"][0]["rules"][0]["annotation"] = bad["spec"]["groups"][0]["rules"][0].pop("annotations")
    with pytest.raises(AssertionError, match=r"'annotation' was unexpected\) at \['spec', 'groups', 0, 'rules', 0\]"):
        _validate(path, bad)
    bad = copy.deepcopy(rule)
    bad["spec"]["group"] = bad["spec"].pop("groups")
    with pytest.raises(AssertionError, match="'group' was unexpected"):
        _validate(path, bad)


def _worker() -> dict:
    return next(d for _, d in BASE_DOCS if d["kind"] == "Deployment" and d["metadata"]["name"] == "hub-worker")


def test_worker_deployment_runs_non_root_with_probes_resources_and_secret_references():
    spec = _worker()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= ENV_NAMES, f"unknown settings: {set(env) - ENV_NAMES}"
    for secret in ("HUB_DATABASE_URL", "HUB_KAFKA_SASL_PASSWORD", "HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS"):
        assert "secretKeyRef" in env[secret]["valueFrom"], secret
    assert int(env["HUB_METRICS_PORT"]["value"]) == ports["metrics"]
    # the worker's settings are the ones the generated topics and users were made with
    assert env["HUB_APP_ID"]["value"] == k8s.APP_ID == env["HUB_KAFKA_SASL_USERNAME"]["value"]
    assert int(env["HUB_TOPIC_PARTITIONS"]["value"]) == k8s.PARTITIONS
    settings = Settings.from_env({k: v["value"] for k, v in env.items() if "value" in v and k != "HUB_PUBLISHERS"})
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"


def test_worker_probes_ask_health_not_metrics():
    """Started and alive = /health answers 200 (every batch consumer processing): /metrics answers
    200 while a consumer is dead. The startup probe allows for the waits of a fresh cluster; no
    readiness probe (no Service sends the worker traffic)."""
    (container,) = _worker()["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    for kind in ("startupProbe", "livenessProbe"):
        get = container[kind]["httpGet"]
        assert get["path"] == "/health", f"{kind} asks {get['path']}"
        assert get["port"] == "metrics" and int(env["HUB_METRICS_PORT"]) == ports["metrics"]
    startup = container["startupProbe"]
    # both start-up waits (HUB_STARTUP_TIMEOUT each, default unless the manifest sets it) and then some
    waits = 2 * float(env.get("HUB_STARTUP_TIMEOUT") or Settings.from_env({}).startup_timeout)
    assert startup["failureThreshold"] * startup["periodSeconds"] >= waits + 120
    assert "initialDelaySeconds" not in container["livenessProbe"]  # the startup probe holds it back
    assert "readinessProbe" not in container


SECRET_NAMES = re.compile(r"SECRET|KEY|PASSWORD|DATABASE_URL")


def test_publisher_identity_is_on_and_every_secret_comes_from_a_secret():
    """HUB_PUBLISHERS names the publishers file of a mounted ConfigMap (no key in it); the keys it
    names, HUB_PERSON_KEY_SECRET, HUB_DATA_KEYS and every other credential come from Secrets."""
    from hub.adapters.publisher_keys import parse

    spec = _worker()["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e for e in container["env"]}
    path = Path(env["HUB_PUBLISHERS"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if path.parent == Path(m["mountPath"])]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    (config_map,) = [d for _, d in BASE_DOCS if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]]
    data = yaml.safe_load(config_map["data"][path.name])
    key_vars = {v for entry in data["publishers"] for v in ([entry["key_env"]] if isinstance(entry["key_env"], str) else entry["key_env"])}
    publishers = parse(data, {v: "k" * 32 for v in key_vars})
    assert publishers.get(k8s.APP_ID) is not None, "the hub signs what it publishes: its own entry"
    assert not key_vars & set(env), "the publishers' keys come from the Secret, not from a value in the manifest"
    assert [ref["secretRef"]["name"] for ref in container["envFrom"]] == ["hub-publisher-keys"]
    for name, e in env.items():
        if SECRET_NAMES.search(name):
            assert "value" not in e and "secretKeyRef" in e["valueFrom"], f"{name} must come from a Secret"


def test_the_worker_connects_the_way_the_cluster_listens():
    kafka = next(d for _, d in BASE_DOCS if d["kind"] == "Kafka")
    users = {d["metadata"]["name"] for _, d in BASE_DOCS if d["kind"] == "KafkaUser"}
    env = {e["name"]: e for e in _worker()["spec"]["template"]["spec"]["containers"][0]["env"]}
    (listener,) = [lst for lst in kafka["spec"]["kafka"]["listeners"] if env["HUB_KAFKA_URL"]["value"].endswith(f":{lst['port']}")]
    assert listener["tls"] is True and listener["authentication"]["type"] == "scram-sha-512"
    assert env["HUB_KAFKA_URL"]["value"] == f"kafka://{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    assert env["HUB_KAFKA_SASL_USERNAME"]["value"] in users
    assert env["HUB_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == env["HUB_KAFKA_SASL_USERNAME"]["value"]
    volumes = {v["name"]: v for v in _worker()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-ca"]["secret"]["secretName"] == f"{kafka['metadata']['name']}-cluster-ca-cert"
    clusters = {d["metadata"]["labels"]["strimzi.io/cluster"] for _, d in BASE_DOCS if d["kind"] in ("KafkaTopic", "KafkaUser", "KafkaNodePool")}
    assert clusters == {kafka["metadata"]["name"]}
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"


def test_podmonitor_selects_the_worker_pods_and_port():
    monitor = next(d for _, d in BASE_DOCS if d["kind"] == "PodMonitor")
    labels = _worker()["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for p in _worker()["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    assert labels[monitor["spec"]["jobLabel"]] == "integration-hub"  # the job the alert rules select


def test_overlay_patches_and_images_target_what_the_base_has():
    base = {(d["kind"], d["metadata"]["name"]) for _, d in BASE_DOCS}
    overlay_dir = K8S / "overlays" / "example"
    for patch in OVERLAY["patches"]:
        assert (patch["target"]["kind"], patch["target"]["name"]) in base
        (doc,) = _documents(overlay_dir / patch["path"])
        assert (doc["kind"], doc["metadata"]["name"]) == (patch["target"]["kind"], patch["target"]["name"])
    image_names = {c["image"].split(":")[0] for _, d in BASE_DOCS if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]}
    assert {i["name"] for i in OVERLAY["images"]} <= image_names
    namespace = next(d for _, d in OVERLAY_DOCS if d["kind"] == "Namespace")
    assert namespace["metadata"]["name"] == OVERLAY["namespace"]


def test_registry_deployment_and_service_run_hub_registry_non_root_with_probes_and_resources():
    from click.testing import CliRunner

    from hub.cli import main

    registry = next(d for _, d in BASE_DOCS if d["kind"] == "Deployment" and d["metadata"]["name"] == "hub-registry")
    service = next(d for _, d in BASE_DOCS if d["kind"] == "Service" and d["metadata"]["name"] == "hub-registry")
    spec = registry["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"][0] == "registry" and CliRunner().invoke(main, [*container["args"], "--help"]).exit_code == 0
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert not container["securityContext"]["allowPrivilegeEscalation"] and spec["automountServiceAccountToken"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    port = container["args"][container["args"].index("--port") + 1]
    assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"  # the kubelet's probes and the Service reach the pod IP
    assert {p["containerPort"] for p in container["ports"]} == {int(port)}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    assert not any("secret" in json.dumps(e).lower() for e in container.get("env", []))  # needs no Secret
    assert service["spec"]["selector"] == registry["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"] and service["spec"]["ports"][0]["port"] == 8081
    assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == "hub-registry" for _, d in OVERLAY_DOCS)


def _webhooks() -> dict:
    return next(d for _, d in BASE_DOCS if d["kind"] == "Deployment" and d["metadata"]["name"] == "hub-webhooks")


def test_webhook_delivery_runs_as_its_own_deployment_with_its_kafka_user_probes_and_metrics():
    """`hub webhooks serve`, one pod (Recreate: never two sharing a subscription's queue), non-root,
    with resources, probes on /health, scraped by a PodMonitor, connecting as the Kafka user whose
    ACLs the generator makes for it."""
    from hub.deploy.acls import webhooks_user

    deployment = _webhooks()
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"] == ["webhooks", "serve"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False and container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= ENV_NAMES, f"unknown settings: {set(env) - ENV_NAMES}"
    for secret in ("HUB_DATABASE_URL", "HUB_KAFKA_SASL_PASSWORD", "HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS"):
        assert "secretKeyRef" in env[secret]["valueFrom"], secret
    for kind in ("startupProbe", "livenessProbe"):
        assert container[kind]["httpGet"] == {"path": "/health", "port": "metrics"}, kind
    assert int(env["HUB_METRICS_PORT"]["value"]) == ports["metrics"]
    settings = Settings.from_env({k: v["value"] for k, v in env.items() if "value" in v})
    assert settings.metrics_addr == "0.0.0.0" and settings.webhooks_allow_loopback is False
    assert settings.kafka_security_protocol == "SASL_SSL"
    # its Kafka user is the generated one, whose password secret Strimzi names after it
    user = webhooks_user(k8s.APP_ID)
    assert env["HUB_KAFKA_SASL_USERNAME"]["value"] == user == env["HUB_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    assert any(d["kind"] == "KafkaUser" and d["metadata"]["name"] == user for _, d in BASE_DOCS)
    # its consumer groups (`<HUB_APP_ID>.webhooks.<id>`) are under the one group prefix its KafkaUser may use
    from hub.webhooks.policy import consumer_group_prefix

    (kafka_user,) = (d for _, d in BASE_DOCS if d["kind"] == "KafkaUser" and d["metadata"]["name"] == user)
    groups = [a["resource"] for a in kafka_user["spec"]["authorization"]["acls"] if a["resource"]["type"] == "group"]
    assert settings.app_id == k8s.APP_ID and groups == [{"type": "group", "name": consumer_group_prefix(settings.app_id), "patternType": "prefix"}]
    assert settings.webhooks_retry_schedule == Settings().webhooks_retry_schedule  # the default, written in one place
    # scraped: a PodMonitor selects its pods and port, under the job the alert rules select
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    monitors = [d for _, d in BASE_DOCS if d["kind"] == "PodMonitor" and d["spec"]["selector"]["matchLabels"].items() <= labels.items()]
    assert monitors and all({e["port"] for e in m["spec"]["podMetricsEndpoints"]} <= set(ports) for m in monitors)
    assert labels[monitors[0]["spec"]["jobLabel"]] == "hub-webhooks"  # its own job (HubWebhooksDown)
