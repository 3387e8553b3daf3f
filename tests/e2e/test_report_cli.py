"""`hub report` as a user runs it, on a SQLite ledger filled through the real routing ledger code."""

import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hub.adapters import database
from hub.adapters.referral_ledger import ReferralLedger
from hub.routing.engine import route
from hub.routing.model import RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules

UTC = dt.timezone.utc
HUB = [sys.executable, "-m", "hub.cli"]


def hub(args, db_url, **kw):
    env = {**os.environ, "HUB_DATABASE_URL": db_url}
    return subprocess.run([*HUB, *args], env=env, capture_output=True, text=True, timeout=120, **kw)


def newcomer(person_key, registered: dt.datetime, **fields):
    base = {"event_id": str(uuid.uuid4()), "person_key": person_key, "occurred_at": registered.isoformat(), "municipality_code": "091"}
    return RoutingInput.from_record({**base, **fields})


def status(referral_id, authority, state, when, reason=None):
    return {"event_id": str(uuid.uuid4()), "occurred_at": when, "referral_id": referral_id, "authority": authority, "status": state, "reason": reason}


@pytest.fixture(scope="module")
def ledger_url(tmp_path_factory):
    """Helsinki: three newcomers in March 2025 (one reached, one assessed), one in April; Espoo: one in March."""
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'hub.sqlite3'}"
    database.upgrade(url)
    engine = database.create_engine(url)
    ledger = ReferralLedger(engine)
    rules, ref = default_rules(), default_reference()

    def routed(n, created):
        done = ledger.record(n, route(n, rules, ref), created)
        return {(r["to"], r["purpose"]): r["referral_id"] for r in done.created}

    mar = lambda d: dt.datetime(2025, 3, d, 9, tzinfo=UTC)  # noqa: E731
    a = routed(newcomer("pk-a", mar(3), mother_tongue="ar", nationalities=["SY"], labour_force_status="unemployed_job_seeker"), mar(4))
    ledger.apply_status(status(a[("municipality:091", "outreach")], "municipality:091", "contacted", mar(8)), mar(8))
    ia = a[("employment_authority:08", "initial_assessment")]
    ledger.apply_status(status(ia, "employment_authority:08", "assessment_started", mar(14)), mar(14))
    ledger.apply_status(status(ia, "employment_authority:08", "completed", mar(24)), mar(24))
    routed(newcomer("pk-b", mar(10), mother_tongue="ru", nationalities=["RU", "UA"]), mar(11))
    routed(newcomer("pk-c", mar(20), mother_tongue="so", nationalities=["SO"]), mar(21))
    routed(newcomer("pk-d", dt.datetime(2025, 4, 2, 9, tzinfo=UTC), mother_tongue="ar"), dt.datetime(2025, 4, 2, 10, tzinfo=UTC))
    routed(newcomer("pk-e", mar(5), municipality_code="049", mother_tongue="fa"), mar(5))
    engine.dispose()
    return url


def test_json_report_counts_the_cohort(ledger_url):
    r = hub(["report", "--municipality", "091", "--from", "2025-03-01", "--to", "2025-03-31", "--format", "json", "--today", "2025-06-01"], ledger_url)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["newcomers"] == 3
    assert out["by_mother_tongue"] == {"ar": 1, "ru": 1, "so": 1}
    assert out["by_mother_tongue_group"] == {"foreign language": 3}
    assert out["by_nationality"] == {"RU": 1, "SO": 1, "SY": 1, "UA": 1}
    assert out["reached"] == 1 and out["referred"] == 3
    assert out["referrals_by_authority"] == {"employment_authority:08": 1, "municipality:091": 3}
    assert (out["assessments_started"], out["assessments_done"], out["plans_requested"]) == (1, 1, 0)
    assert out["step_days"]["registration_to_referral"] == {"n": 3, "median": 1.0, "p90": 1.0}
    assert out["step_days"]["referral_to_reached"] == {"n": 1, "median": 4.0, "p90": 4.0}
    assert out["step_days"]["referral_to_assessment"] == {"n": 1, "median": 20.0, "p90": 20.0}
    assert out["step_days"]["assessment_to_plan_request"]["n"] == 0
    assert out["open_referrals"] == 3  # the completed assessment is closed
    assert "pk-" not in r.stdout  # aggregates only, never a person key


def test_table_and_csv(ledger_url):
    args = ["report", "--municipality", "091", "--from", "2025-03-01", "--to", "2025-04-30", "--today", "2025-06-01"]
    table = hub(args, ledger_url)
    assert table.returncode == 0, table.stderr
    assert re.search(r"^newcomers\s+4$", table.stdout, re.M)
    assert re.search(r"^initial assessments done\s+1\s+25\.0 %$", table.stdout, re.M)
    assert "initial assessments done" in table.stdout and "median" in table.stdout
    c = hub([*args, "--format", "csv"], ledger_url)
    assert c.returncode == 0, c.stderr
    rows = list(csv.DictReader(io.StringIO(c.stdout)))
    values = {(row["section"], row["item"]): row["value"] for row in rows}
    assert values[("newcomers", "total")] == "4"
    assert values[("mother_tongue", "ar")] == "2"
    assert values[("funnel", "assessments_done")] == "1"
    assert values[("days_assessment_to_plan_request", "median")] == ""
    assert {row["municipality"] for row in rows} == {"091"}


def test_another_municipality_and_an_empty_period(ledger_url):
    espoo = json.loads(hub(["report", "--municipality", "049", "--from", "2025-03-01", "--to", "2025-03-31", "--format", "json"], ledger_url).stdout)
    assert espoo["newcomers"] == 1 and espoo["by_mother_tongue"] == {"fa": 1}
    empty = hub(["report", "--municipality", "091", "--from", "2024-01-01", "--to", "2024-01-31", "--format", "json"], ledger_url)
    assert empty.returncode == 0 and json.loads(empty.stdout)["newcomers"] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--municipality", "091", "--from", "2025-13-01", "--to", "2025-03-31"], "is not a date"),
        (["--municipality", "091", "--from", "2025-03-31", "--to", "2025-03-01"], "is before --from"),
        (["--municipality", "999", "--from", "2025-03-01", "--to", "2025-03-31"], "not in the 2025 classification"),
        (["--municipality", "091", "--from", "2025-03-01", "--to", "2025-03-31", "--format", "xml"], "Invalid value for '--format'"),
        (["--from", "2025-03-01", "--to", "2025-03-31"], "Missing option '--municipality'"),
    ],
)
def test_bad_input_is_a_usage_error_without_traceback(ledger_url, args, message, monkeypatch):
    from click.testing import CliRunner

    from hub.cli import main

    monkeypatch.setenv("HUB_DATABASE_URL", ledger_url)
    r = CliRunner().invoke(main, ["report", *args])  # in-process: the same click command, without 5 s of start-up per case
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)  # a usage error, not a crash


def test_missing_tables_say_what_to_do(tmp_path):
    r = hub(["report", "--municipality", "091", "--from", "2025-03-01", "--to", "2025-03-31"], f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert r.returncode == 1 and "hub db upgrade" in r.stderr and "Traceback" not in r.stderr


def test_plot_writes_a_png(ledger_url, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "report.png"
    r = hub(["report", "--municipality", "091", "--from", "2025-03-01", "--to", "2025-03-31", "--plot", str(png)], ledger_url)
    assert r.returncode == 0, r.stderr
    data = Path(png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert f"plot written to {png}" in r.stderr


def test_help():
    r = subprocess.run([*HUB, "report", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--municipality" in r.stdout and "--plot" in r.stdout


@pytest.fixture(scope="module")
def chain_url(tmp_path_factory):
    """Tampere, May 2025: a newcomer whose mother tongue DVV gives as 99; a job seeker whose
    assessor published the assessment (disclosed: plan requested) but reported no status; one
    whose assessment is held for consent."""
    from types import SimpleNamespace

    from hub.adapters import outbox
    from hub.adapters import consent_store as store

    url = f"sqlite:///{tmp_path_factory.mktemp('chain') / 'hub.sqlite3'}"
    database.upgrade(url)
    engine = database.create_engine(url)
    ledger = ReferralLedger(engine)
    may = lambda d: dt.datetime(2025, 5, d, 9, tzinfo=UTC)  # noqa: E731
    for key, day, fields in (("pk-99", 2, {"mother_tongue": "99"}), ("pk-plan", 3, {"mother_tongue": "ar", "labour_force_status": "unemployed_job_seeker"}),
                             ("pk-held", 4, {"mother_tongue": "fa", "labour_force_status": "unemployed_job_seeker"})):
        n = newcomer(key, may(day), municipality_code="837", **fields)
        ledger.record(n, route(n, default_rules(), default_reference()), may(day))
    with ledger.Session.begin() as s:
        for key, day in (("pk-plan", 12), ("pk-held", 14)):
            a = SimpleNamespace(event_id=str(uuid.uuid4()), assessment_id=f"A-{key}", assessor="employment_authority:06", plan_authority="municipality:837")
            store.add_held(s, assessment=a, person_key=key, encoded=b"\0", reason="no_consent", now=may(day))
        row = outbox.enqueue(s, "hub.plan-requests.municipality-837.v1", "PlanRequest", str(uuid.uuid4()), b"\0", "pk-plan", [], may(16))
        store.add_disclosure(s, plan={"request_id": str(uuid.uuid4()), "to": "municipality:837", "assessor": "employment_authority:06", "assessment_id": "A-pk-plan",
                                      "data_categories": ["education"], "consent_id": "c-1", "legal_basis": None}, person_key="pk-plan", outbox_id=row.id, now=may(16))
    engine.dispose()
    return url


def test_the_chain_adds_up_in_json_csv_and_table(chain_url):
    args = ["report", "--municipality", "837", "--from", "2025-05-01", "--to", "2025-05-31", "--today", "2025-06-01"]
    r = hub([*args, "--format", "json"], chain_url)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["newcomers"] == 3 and out["by_mother_tongue"] == {"ar": 1, "fa": 1, "unknown": 1}  # 99 is in the cohort
    assert (out["assessments_done"], out["plans_requested"]) == (2, 1)
    chain = [(c["step"], c["persons"]) for c in out["chain"]]
    assert chain == [("newcomers", 3), ("referred", 3), ("reached", 2), ("assessed", 2), ("plan_requested", 1)]
    assert all(c["persons"] == c["recorded"] + c["only_from_a_later_step"] for c in out["chain"])
    c = hub([*args, "--format", "csv"], chain_url)
    assert c.returncode == 0, c.stderr
    rows = {(row["section"], row["item"]): row["value"] for row in csv.DictReader(io.StringIO(c.stdout))}
    assert [rows[("chain", step)] for step, _ in chain] == ["3", "3", "2", "2", "1"]
    assert rows[("chain_only_from_a_later_step", "reached")] == "2" and rows[("funnel", "assessments_done")] == "2"
    table = hub(args, chain_url)
    assert table.returncode == 0, table.stderr
    assert re.search(r"^  initial assessment done\s+2\s+66\.7 %$", table.stdout, re.M)
    assert "assessed or plan requested without a recorded contact (contact not reported to the hub): 2" in table.stdout
    assert "pk-" not in r.stdout + c.stdout + table.stdout
