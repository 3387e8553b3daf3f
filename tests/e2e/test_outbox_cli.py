"""`hub outbox parked|retry` as an operator runs them (SQLite under HUB_DATA_DIR)."""

import datetime as dt
import json

from hub.adapters import database, outbox
from hub.config import Settings
from tests.e2e.test_subscribers_cli import run

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def test_parked_rows_are_listed_without_content_and_only_unsendable_ones_are_retried(tmp_path):
    env = {"HUB_DATA_DIR": str(tmp_path)}
    assert run("db", "upgrade", env=env).returncode == 0
    assert run("outbox", "parked", env=env).stdout.strip() == "no parked outbox rows"
    engine = database.create_engine(Settings(data_dir=tmp_path).resolved_database_url())
    sessions = database.session_factory(engine)
    with sessions.begin() as s:
        big = outbox.enqueue(s, "hub.plan-requests.municipality.091.v1", "PlanRequest", "e-big", b"secret content " * 10, b"k", [], T0).id
        gone = outbox.enqueue(s, "hub.plan-requests.municipality.091.v1", "PlanRequest", "e-gone", b"x", b"k", [], T0).id
        outbox.park(s, big, outbox.RECORD_TOO_LARGE, "MessageSizeTooLargeError: The message is 1200000 bytes", T0)
        outbox.park(s, gone, "consent_revoked", "not sent", T0)
    engine.dispose()

    listed = run("outbox", "parked", "--json", env=env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["reason"], r["retryable"]) for r in rows] == [(big, "record_too_large", True), (gone, "consent_revoked", False)]
    assert rows[0]["size"] == 150 and "secret content" not in listed.stdout
    assert f"hub outbox retry {big}" in run("outbox", "parked", env=env).stdout

    refused = run("outbox", "retry", str(gone), env=env)
    assert refused.returncode == 2 and "withdrawn (consent_revoked)" in refused.stderr and "Traceback" not in refused.stderr
    unknown = run("outbox", "retry", "999", env=env)
    assert unknown.returncode == 2 and "no parked outbox row 999" in unknown.stderr
    retried = run("outbox", "retry", str(big), env=env)
    assert retried.returncode == 0 and f"outbox row {big} queued again" in retried.stdout
    assert [json.loads(line)["id"] for line in run("outbox", "parked", "--json", env=env).stdout.splitlines()] == [gone]
