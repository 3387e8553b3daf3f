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
