"""Coverage-guided fuzzing with atheris of the three byte-level input boundaries (tests/soak/atheris_targets.py).

atheris is a test dependency (pyproject `dev`, pinned) where it has wheels (CPython <= 3.11 on x86_64
Linux); elsewhere this test is skipped.
`make test` runs 10 000 inputs per target; `make soak` 200 000.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("runs", [pytest.param(10_000, id="short"), pytest.param(200_000, id="soak", marks=pytest.mark.soak)])
@pytest.mark.parametrize("target", ["codec", "dvv", "route"])
def test_atheris_finds_no_input_that_breaks_the_boundary(target, runs, tmp_path):
    out = subprocess.run([sys.executable, "-m", "tests.soak.atheris_targets", target, f"-runs={runs}", "-max_len=4096", "-seed=681",
                          f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True, timeout=1800, cwd=ROOT, stdin=subprocess.DEVNULL)
    crashes = sorted(p.name for p in tmp_path.iterdir())
    assert out.returncode == 0 and not crashes, f"atheris ({target}) found an input that breaks it: {crashes}\n{out.stderr[-3000:]}"
