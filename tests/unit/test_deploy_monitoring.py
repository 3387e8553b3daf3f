"""deploy/: the Prometheus alert rules (promtool test rules) and the Grafana dashboard refer only to
metrics that hub/metrics.py defines."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hub import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "hub.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`; scripts/ensure-promtool --install)")

# series names PromQL may use that are not the hub's own: Prometheus' scrape health
FOREIGN_SERIES = {"up"}


def defined_series() -> set[str]:
    """Every series name the hub's metrics expose (a counter `x` exposes `x_total`, a histogram `x_bucket` ...)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}
    names = set()
    for family in metrics.REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def series_in(expr: str) -> set[str]:
    """hub_* names anywhere, and every other name used as a selector (followed by `{` or `[`)."""
    hub = set(re.findall(r"\bhub_[a-z0-9_]+", expr))
    selectors = {m for m in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", expr) if not m.startswith("hub_")}
    return hub | selectors


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs(dash: dict) -> list[str]:
    exprs = []
    for panel in dash["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            exprs += [t["expr"] for t in sub.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var.get("type") == "query":
            exprs.append(var["definition"])
    return exprs


def test_alert_rules_cover_the_required_situations_with_known_metrics():
    rules = {r["alert"]: r for r in alert_rules()}
    for required in ("HubWorkerDown", "HubConsumerLagGrowing", "HubDeadLetters", "HubReferralsOverdue", "HubConsentHeldItemsPilingUp"):
        assert required in rules
    known = defined_series() | FOREIGN_SERIES
    for rule in rules.values():
        assert series_in(rule["expr"]) <= known, (rule["alert"], series_in(rule["expr"]) - known)
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert "hub_consumer_lag_messages" in rules["HubConsumerLagGrowing"]["expr"]
    assert "hub_consent_held_items" in rules["HubConsentHeldItemsPilingUp"]["expr"]


@needs_promtool
def test_promtool_unit_tests_of_the_alert_rules_pass():
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_example_configuration_and_rules():
    result = subprocess.run([PROMTOOL, "check", "config", "prometheus.yml"], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_promtool_test():
    tested = {t["alertname"] for case in yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"] for t in case.get("alert_rule_test", [])}
    assert {r["alert"] for r in alert_rules()} <= tested


def test_dashboard_is_valid_json_and_uses_only_the_hubs_metrics():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "municipality", "authority"} <= variables
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exprs = dashboard_exprs(dash)
    assert exprs
    known = defined_series() | FOREIGN_SERIES
    for expr in exprs:
        assert series_in(expr) <= known, (expr, series_in(expr) - known)
    for panel in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
    joined = "\n".join(exprs)
    # the four views the issue asks for
    assert '$municipality' in joined  # funnel per municipality
    assert re.search(r"histogram_quantile\(0\.9, sum by \(le\) \(rate\(hub_referral_to_assessment_seconds_bucket", joined)  # step durations
    assert "hub_referrals_overdue" in joined and "hub_referrals_open" in joined  # backlog
    for health in ("up{", "hub_consumer_lag_messages", "hub_dead_letters_total", "hub_processing_latency_seconds_bucket"):
        assert health in joined


def test_series_extraction_catches_unknown_names():
    assert series_in('sum(rate(hub_nope_total[5m])) + foo{a="b"}') == {"hub_nope_total", "foo"}
    assert "hub_nope_total" not in defined_series()


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path):
    """Each panel query, with Grafana's variables filled in, parses as PromQL (checked as a recording rule)."""
    dash = json.loads(DASHBOARD.read_text())
    fill = {"$__rate_interval": "5m", "$__range": "1h", "$municipality": "091", "$authority": "municipality:091"}
    rules = []
    for i, expr in enumerate(e for e in dashboard_exprs(dash) if not e.startswith("label_values(")):
        for var, value in fill.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the PrometheusRule of deploy/k8s/base: the same rules, for the Prometheus Operator ------------
# kubernetes-validate knows no CRD of the Prometheus Operator, and its CRD is not shipped here: the
# structure is checked against the fields of monitoring.coreos.com/v1 PrometheusRule (RuleGroup, Rule;
# as in the CRD of Prometheus Operator 0.82: required name and expr, durations matching its pattern).
RULE_GROUP_FIELDS = {"name", "interval", "rules", "partial_response_strategy", "limit", "query_offset", "labels"}
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def check_prometheus_rule(doc: dict) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"} and set(doc["spec"]) == {"groups"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    names = [g["name"] for g in doc["spec"]["groups"]]
    assert len(names) == len(set(names)), "group names are unique"
    for group in doc["spec"]["groups"]:
        assert set(group) <= RULE_GROUP_FIELDS and group["name"] and group["rules"], group.get("name")
        for rule in group["rules"]:
            assert set(rule) <= RULE_FIELDS, (rule.get("alert"), set(rule) - RULE_FIELDS)
            assert ("alert" in rule) != ("record" in rule) and isinstance(rule["expr"], str) and rule["expr"].strip()
            assert DURATION.match(rule.get("for", "0")), rule["alert"]
            for key in ("labels", "annotations"):
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in rule.get(key, {}).items()), rule["alert"]


def test_the_prometheus_rule_is_the_generated_one_from_the_rules_file():
    from hub.deploy import monitoring

    root = DEPLOY.parent
    for path, text in monitoring.generated_files(root).items():
        assert (root / path).read_text(encoding="utf-8") == text, f"{path} is stale: run scripts/generate-k8s (python -m hub.deploy.monitoring) and commit it"


def test_the_prometheus_rule_holds_every_alert_of_the_rules_file_unchanged_and_is_well_formed():
    from hub.deploy import monitoring

    (doc,) = [d for d in yaml.safe_load_all((DEPLOY.parent / monitoring.PROMETHEUS_RULE_FILE).read_text()) if d]
    check_prometheus_rule(doc)
    assert doc["spec"]["groups"] == yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "base" / "kustomization.yaml").read_text())
    assert monitoring.PROMETHEUS_RULE_FILE.name in kustomization["resources"]


def test_the_structure_check_catches_a_typo():
    from hub.deploy import monitoring

    doc = yaml.safe_load(monitoring.prometheus_rule((PROMETHEUS / "alerts.yml").read_text()))
    doc["spec"]["groups"][0]["rules"][0]["annotation"] = doc["spec"]["groups"][0]["rules"][0].pop("annotations")
    with pytest.raises(AssertionError):
        check_prometheus_rule(doc)
    doc = yaml.safe_load(monitoring.prometheus_rule((PROMETHEUS / "alerts.yml").read_text()))
    doc["spec"]["groups"][0]["rules"][0]["for"] = "2 minutes"
    with pytest.raises(AssertionError):
        check_prometheus_rule(doc)


def test_the_operators_alerts_cover_the_dvv_feed_and_webhooks():
    rules = {r["alert"]: r for r in alert_rules()}
    assert "hub_dvv_last_page_timestamp_seconds" in rules["HubDvvFeedStale"]["expr"] and "> 3600" in rules["HubDvvFeedStale"]["expr"]
    assert 'hub_webhook_deliveries_queued{state="parked"}' in rules["HubWebhooksParked"]["expr"]
    assert "hub_webhook_delivery_lag_seconds_bucket" in rules["HubWebhookDeliveryLag"]["expr"]
    assert "hub_webhook_oldest_pending_seconds" in rules["HubWebhookDeliveryStuck"]["expr"]
    assert 'up{job="hub-dvv-ingest"}' in rules["HubDvvIngestDown"]["expr"]
    # every process's dead letters, the DVV poller's too: no job selected
    assert "hub_dead_letters_total" in rules["HubDeadLetters"]["expr"] and "job" not in rules["HubDeadLetters"]["expr"]


def test_the_dashboard_charts_the_dvv_feed_and_webhook_delivery():
    joined = "\n".join(dashboard_exprs(json.loads(DASHBOARD.read_text())))
    for expr in ("time() - max(hub_dvv_last_page_timestamp_seconds)", "hub_dvv_pages_total", "hub_dvv_changes_total",
                 'hub_dead_letters_total{job="hub-dvv-ingest"}', "hub_dvv_unknown_data_groups_total", "hub_dvv_poll_failures_total",
                 'hub_webhook_deliveries_queued{state="parked"}', "hub_webhook_delivery_lag_seconds_bucket", "hub_webhook_oldest_pending_seconds"):
        assert expr in joined, expr
