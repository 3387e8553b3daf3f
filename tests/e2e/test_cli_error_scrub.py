"""The `hub` command never echoes an identity code in an error: given to the wrong option, as a
stray argument, a command name, an option name or a file name, click's message shows a placeholder."""

import datetime as dt

import pytest

from hub.domain import hetu
from tests.e2e.test_subscribers_cli import run  # no HUB_* of the caller but the production secrets

CODE = hetu.make(dt.date(1991, 4, 12), 900)


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
