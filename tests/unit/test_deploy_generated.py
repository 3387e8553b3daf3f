"""The committed generated manifests equal the generator's output (run scripts/generate-k8s)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hub.cli import main
from hub.deploy import k8s

ROOT = Path(__file__).resolve().parents[2]
HINT = "deploy/k8s/base/generated/ is stale: run scripts/generate-k8s and commit the result"


GENERATED = k8s.generated_files()


def test_committed_generated_files_equal_the_generator_output():
    for path, text in GENERATED.items():
        assert (ROOT / path).read_text(encoding="utf-8") == text, f"{path}: {HINT}"


def test_the_cli_prints_the_same_resources():
    runner = CliRunner()
    topics = runner.invoke(main, ["topics", "--format", "strimzi", "--partitions", str(k8s.PARTITIONS), "--replicas", str(k8s.REPLICAS)])
    users = runner.invoke(main, ["acls", "--format", "strimzi", "--app-id", k8s.APP_ID])
    assert topics.exit_code == 0 and users.exit_code == 0
    assert topics.output == (ROOT / k8s.TOPICS_FILE).read_text(encoding="utf-8"), HINT
    assert users.output == (ROOT / k8s.USERS_FILE).read_text(encoding="utf-8"), HINT


def test_generation_writes_where_the_kustomization_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(k8s, "generated_files", lambda: GENERATED)  # made once above
    assert k8s.main([str(tmp_path)]) == 0
    for path, text in GENERATED.items():
        assert (tmp_path / path).read_text(encoding="utf-8") == text
