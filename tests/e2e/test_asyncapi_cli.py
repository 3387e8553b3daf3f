"""docs/asyncapi.yaml passes the official AsyncAPI validator (`asyncapi validate`, @asyncapi/cli pinned in
tools/asyncapi), which reads YAML 1.2, and the validator fails the document the generator used to write.

`make test` installs the CLI under build/asyncapi-cli before it runs pytest (`make asyncapi`), so CI never skips
these; run alone, they are skipped with the command that installs it."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from hub.schemas.asyncapi import render

ROOT = Path(__file__).resolve().parents[2]
CLI_DIR = ROOT / "build/asyncapi-cli"
CLI = CLI_DIR / "node_modules/.bin/asyncapi"
PINNED = json.loads((ROOT / "tools/asyncapi/package.json").read_text())["dependencies"]["@asyncapi/cli"]

pytestmark = pytest.mark.skipif(not (CLI.exists() and (CLI_DIR / ".installed-stamp").exists()),
                                reason="the AsyncAPI CLI is not installed under build/asyncapi-cli: run `make asyncapi` (make test does)")


def _validate(path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ASYNCAPI_METRICS_CONFIG_PATH=str(CLI_DIR / "analytics.json"))
    return subprocess.run([str(CLI), "validate", "--fail-severity", "warn", str(path)], capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_the_installed_cli_is_the_pinned_version():
    out = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                         env=dict(os.environ, ASYNCAPI_METRICS_CONFIG_PATH=str(CLI_DIR / "analytics.json")))
    assert f"@asyncapi/cli/{PINNED} " in out.stdout, out.stdout + out.stderr


def test_the_committed_document_passes_the_official_validator():
    done = _validate(ROOT / "docs/asyncapi.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors, 0 warnings" in done.stdout or "is valid" in done.stdout


def test_the_validator_fails_an_unquoted_code_example(tmp_path):
    """What the generator wrote before: `- 091`, an integer under YAML 1.2 where the schema wants a string."""
    text = render()
    assert "- '091'" in text
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(text.replace("- '091'", "- 091"), encoding="utf-8")
    done = _validate(broken)
    assert done.returncode != 0
    assert "must be string" in done.stdout + done.stderr and "parameters.code.examples[0]" in done.stdout + done.stderr
