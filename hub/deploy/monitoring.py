"""The alert rules for the Prometheus Operator: deploy/k8s/base/prometheus-rules.yaml is a
`PrometheusRule` (monitoring.coreos.com/v1) made from deploy/prometheus/alerts.yml, the one source
of the rules (a plain Prometheus loads that file; the compose setup mounts it).

`python -m hub.deploy.monitoring [REPO_ROOT]` (also run by scripts/generate-k8s) writes it;
tests/unit/test_deploy_monitoring.py fails while the committed file differs from the generator's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

RULES_FILE = Path("deploy/prometheus/alerts.yml")
PROMETHEUS_RULE_FILE = Path("deploy/k8s/base/prometheus-rules.yaml")
NAME = "integration-hub"
# kube-prometheus' Prometheus selects rules labelled role=alert-rules; a Prometheus with another
# ruleSelector (e.g. kube-prometheus-stack's `release: <name>`) gets its label from an overlay
LABELS = {"app.kubernetes.io/part-of": "integration-hub", "role": "alert-rules"}

HEADER = (
    "# Generated from deploy/prometheus/alerts.yml by `python -m hub.deploy.monitoring` (scripts/generate-k8s):\n"
    "# edit the rules there, never here. The Prometheus Operator loads them when its Prometheus'\n"
    "# ruleSelector matches the labels below (docs/operating.md, alerts).\n"
)


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # multi-line PromQL stays readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def prometheus_rule(rules_text: str) -> str:
    """The PrometheusRule manifest holding the rule groups of a Prometheus rules file, unchanged."""
    rules = yaml.safe_load(rules_text)
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": NAME, "labels": dict(LABELS)},
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.dump(resource, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100_000)


def generated_files(root: Path) -> dict[Path, str]:
    return {PROMETHEUS_RULE_FILE: prometheus_rule((root / RULES_FILE).read_text(encoding="utf-8"))}


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(".")
    for path, text in generated_files(root).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
