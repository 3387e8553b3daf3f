"""The demo at log level DEBUG: no identity code in any output line (by pattern and by the exact values fed in)."""

import os
import re
import subprocess
import sys

import pytest

from hub.adapters.dvv.sample import sample_files
from hub.adapters.dvv.synthetic import generate_pages
from tests.personal_data import identity_code_in

pytestmark = pytest.mark.integration


def _codes_in(text: str) -> set[str]:
    return set(re.findall(r'"(?:henkilotunnus|muutettuHenkilotunnus|aktiivinenHenkilotunnus)"\s*:\s*"([^"]+)"', text))


def test_demo_at_debug_level_prints_no_identity_code(tmp_path):
    fed = set()
    for path in sample_files():
        fed |= _codes_in(path.read_text(encoding="utf-8"))
    for page in generate_pages(300):
        fed |= _codes_in(page)
    assert len(fed) > 300
    env = {**os.environ, "HUB_LOG_LEVEL": "DEBUG", "HUB_METRICS_PORT": "0", "HUB_DATA_DIR": str(tmp_path), "HUB_KAFKA_URL": "", "HUB_DATABASE_URL": ""}
    out = subprocess.run([sys.executable, "-m", "hub.cli", "demo", "--changes", "300"], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "DEBUG" in text or "INFO" in text  # the logs really were on
    assert not identity_code_in(text), identity_code_in(text)
    leaked = [code for code in fed if code in text]
    assert leaked == []
