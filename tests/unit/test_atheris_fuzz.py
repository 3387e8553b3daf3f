"""Coverage-guided fuzzing with atheris of the three byte-level input boundaries (tests/soak/atheris_targets.py).

atheris is a test dependency (pyproject `dev`, pinned) where it has wheels (CPython <= 3.11 on x86_64
Linux); elsewhere this test is skipped.
`make test` runs 10 000 inputs per target; `make soak` 200 000.
"""

import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("runs", [pytest.param(10_000, id="short"), pytest.param(200_000, id="soak", marks=pytest.mark.soak)])
@pytest.mark.parametrize("target", ["codec", "dvv", "route"])
def test_atheris_finds_no_input_that_breaks_the_boundary(target, runs, tmp_path):
    # libFuzzer's out-of-memory check compares the process's peak RSS with -rss_limit_mb (default
    # 2 GB). On Linux a child's peak starts at its parent's peak: after the crash soak in the same
    # pytest process that was 5.6 GB, and `make soak` failed with a false out-of-memory on an
    # input that needs 38 MB. The limit is therefore 2 GB above what the child inherits.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    out = subprocess.run([sys.executable, "-m", "tests.soak.atheris_targets", target, f"-runs={runs}", "-max_len=4096", "-seed=681",
                          f"-rss_limit_mb={inherited_mb + 2048}", f"-artifact_prefix={tmp_path}/"],
                         capture_output=True, text=True, timeout=1800, cwd=ROOT, stdin=subprocess.DEVNULL)
    crashes = sorted(p.name for p in tmp_path.iterdir())
    assert out.returncode == 0 and not crashes, f"atheris ({target}) found an input that breaks it: {crashes}\n{out.stderr[-3000:]}"
