"""docs/integrating.md names the client versions that work against the embedded broker: the
versions the tests run with (a pin that moves without the docs fails here), and that Debian's kcat
(librdkafka 2.0.2) does not."""

from __future__ import annotations

from pathlib import Path

import aiokafka
import confluent_kafka
import kafka

DOC = (Path(__file__).resolve().parents[2] / "docs" / "integrating.md").read_text(encoding="utf-8")


def _section() -> str:
    start = DOC.index("### Testing against the embedded broker")
    return DOC[start:DOC.index("\n## ", start)]


def test_the_clients_that_work_are_named_with_the_versions_the_tests_use():
    section = _section()
    package = confluent_kafka.version()
    package = package[0] if isinstance(package, tuple) else package
    assert f"| confluent-kafka (Python, bundles librdkafka) | {package} (librdkafka {confluent_kafka.libversion()[0]})" in section
    assert f"| aiokafka | {aiokafka.__version__} |" in section
    assert f"| kafka-python | {kafka.__version__} |" in section


def test_debians_kcat_is_named_as_not_working():
    section = _section()
    assert "kcat from Debian 12 (librdkafka 2.0.2) | does **not** work" in section
