"""The `hub` command never echoes an identity code in an error: given to the wrong option, as a
stray argument, a command name, an option name or a file name, click's message shows a placeholder."""

import datetime as dt
import os
import subprocess
import sys

import pytest

from hub.domain import hetu

HUB = [sys.executable, "-m", "hub.cli"]
CODE = hetu.make(dt.date(1991, 4, 12), 900)


def run(*args, env):
    # none of the caller's HUB_* settings but the production secrets (tests/e2e/conftest.py)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") or k in ("HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS")}
    environ.update(env)
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=60, env=environ)


@pytest.mark.parametrize("args", [
    ("resend", "--recipient", CODE, "--from-seq", "1"),  # a code where an authority id belongs
    ("resend", "--recipient", "municipality:091", "--from-seq", CODE),  # where a number belongs
    ("webhooks", "add", "--recipient", CODE, "--url", "https://receiver.example.fi/hook"),
    ("webhooks", "disable", CODE),
    ("ingest", "dvv", CODE),  # a file that does not exist
    (CODE,),  # as a command
    ("consent", f"--{CODE}"),  # as an option
    ("report", "--municipality", "091", "--from", CODE, "--to", "2026-01-01"),
])
def test_usage_errors_never_echo_an_identity_code(args, tmp_path):
    out = run(*args, env={"HUB_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2, out.stderr
    assert CODE not in out.stderr + out.stdout
    assert "<henkilötunnus>" in out.stderr and "Traceback" not in out.stderr
