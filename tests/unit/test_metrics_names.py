"""Metric names follow the Prometheus conventions and labels stay bounded."""

from hub import metrics

FORBIDDEN_LABELS = {"person", "person_id", "hetu", "person_key", "event_id"}


def test_names_and_labels():
    for metric in metrics.REGISTRY.collect():
        assert metric.name.startswith("hub_"), metric.name
        for sample in metric.samples:
            assert not (set(sample.labels) & FORBIDDEN_LABELS), sample
        if metric.type == "counter":
            assert any(s.name.endswith("_total") for s in metric.samples) or not metric.samples
        if metric.type == "histogram":
            assert metric.name.endswith("_seconds"), metric.name
