"""`hub route` and `hub authorities` as a user runs them (subprocesses, no broker)."""

import json
import os
import subprocess
import sys

import pytest

from hub.domain.hetu import make

HUB = [sys.executable, "-m", "hub.cli"]


def run(*args, stdin="", timeout=60):
    return subprocess.run([*HUB, *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def test_route_one_line_per_input_in_order_errors_inline_and_processing_goes_on():
    import datetime as dt

    hetu = make(dt.date(1990, 4, 1), 912)
    lines = [
        {"event_id": "e1", "occurred_at": "2025-03-01T10:00:00Z", "person_id": hetu, "municipality_code": "091", "labour_force_status": "unemployed_job_seeker", "arrival_date": "2025-02-01", "service_needs": ["health"]},
        "this is not json",
        {"event_id": "e3", "municipality_code": "999"},
        {"event_id": "e4", "municipality_code": "478", "labour_force_status": "home_parent"},
        {"event_id": "e5", "municipality_code": "092", "birth_date": "2025-02-30"},
        {"event_id": "e6", "municipality_code": None},
        ["not", "an", "object"],
        {"event_id": "e8", "occurred_at": "2025-03-01T10:00:00Z", "municipality_code": "049", "birth_date": "2010-01-01", "guardian_in_finland": False, "residence_basis": None, "service_needs": None},
    ]
    stdin = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n\n"
    out = run("route", stdin=stdin)
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r.get("event_id") for r in results] == ["e1", None, "e3", "e4", "e5", "e6", None, "e8"]
    assert hetu not in out.stdout and hetu not in out.stderr
    e1 = {(d["authority"], d["purpose"]): d for d in results[0]["decisions"]}
    assert set(e1) == {("municipality:091", "outreach"), ("employment_authority:08", "initial_assessment"), ("municipality:091", "social_and_health_services")}
    d = e1[("employment_authority:08", "initial_assessment")]
    assert d["due"] == "2028-02-01" and d["rule"] == "assess-job-seeker" and d["rules_version"] == "2025.1" and d["reasons"]
    assert set(d) == {"authority", "purpose", "reasons", "rule", "rules_version", "due"}
    assert [r["error"]["code"] for r in (results[1], results[2], results[4], results[5], results[6])] == [
        "invalid_json",
        "unknown_municipality",
        "invalid_date",
        "missing_municipality",
        "invalid_input",
    ]
    assert all(r["error"]["message"] for r in results if "error" in r)
    assert {(d["authority"], d["purpose"]) for d in results[3]["decisions"]} == {("municipality:478", "outreach"), ("municipality:478", "initial_assessment")}
    e8 = {(d["authority"], d["purpose"]) for d in results[7]["decisions"]}
    assert ("wellbeing_area:03", "unaccompanied_minor") in e8 and ("municipality:049", "initial_assessment") in e8


def test_route_with_a_deployment_rules_file_and_trace(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        'version: "local-1"\nrules:\n  - id: only-outreach\n    recipient: municipality\n    purpose: outreach\n'
        '    citation: "681/2023 § 10"\n    confidence: medium\n    reason: test\n',
        encoding="utf-8",
    )
    out = run("route", "--rules", str(rules), "--trace", stdin='{"event_id":"x","municipality_code":"091","service_needs":["health"]}\n')
    result = json.loads(out.stdout)
    assert [d["rule"] for d in result["decisions"]] == ["only-outreach"]
    assert result["decisions"][0]["rules_version"] == "local-1"
    assert any(line.startswith("only-outreach: fired") for line in result["trace"])


def test_route_with_a_bad_rules_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: x\n    recipient: police\n", encoding="utf-8")
    out = run("route", "--rules", str(bad), stdin="{}\n")
    assert out.returncode == 2 and "rule 'x'" in out.stderr and "Traceback" not in out.stderr


def test_authorities_of_helsinki_text_and_json():
    text = run("authorities", "--municipality", "091")
    assert text.returncode == 0
    assert "municipality:091" in text.stdout and "employment_authority:08" in text.stdout
    info = json.loads(run("authorities", "--municipality", "091", "--json").stdout)
    roles = {a["role"]: a["authority"] for a in info["authorities"]}
    assert roles == {"municipality": "municipality:091", "wellbeing_area": "municipality:091", "employment_authority": "employment_authority:08"}
    assert info["reference"]["valid_from"] == "2025-01-01"


def test_authorities_of_an_aland_municipality_explains_why_there_is_none():
    info = json.loads(run("authorities", "--municipality", "478", "--json").stdout)
    for a in info["authorities"]:
        if a["role"] != "municipality":
            assert a["authority"] is None and "Åland" in a["note"] and a["fallback"] == "municipality:478"
    assert "none" in run("authorities", "--municipality", "Mariehamn").stdout


def test_authorities_lists_all_without_a_municipality():
    out = run("authorities")
    assert out.returncode == 0
    assert len([line for line in out.stdout.splitlines() if not line.startswith("#")]) == 308
    assert len(json.loads(run("authorities", "--json").stdout)) == 308


@pytest.mark.parametrize("code", ["999", "Atlantis"])
def test_authorities_unknown_municipality_is_a_usage_error(code):
    out = run("authorities", "--municipality", code)
    assert out.returncode == 2 and "--municipality" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("cmd", ["route", "authorities", "referrals"])
def test_help(cmd):
    out = run(cmd, "--help")
    assert out.returncode == 0 and "Usage:" in out.stdout


def test_referrals_lists_open_and_overdue_from_the_ledger(tmp_path):
    import datetime as dt

    from hub.adapters import database
    from hub.adapters.referral_ledger import ReferralLedger
    from hub.routing.engine import route
    from hub.routing.model import RoutingInput
    from hub.routing.reference import default_reference
    from hub.routing.rules import default_rules

    env = {**os.environ, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": ""}
    missing = subprocess.run([*HUB, "referrals"], capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode == 1 and "hub db upgrade" in missing.stderr and "Traceback" not in missing.stderr
    url = f"sqlite:///{(tmp_path / 'hub.sqlite3').resolve()}"
    database.upgrade(url)
    engine = database.create_engine(url)
    n = RoutingInput.from_record({"event_id": "e1", "person_key": "pk", "occurred_at": "2025-06-15T09:00:00Z", "municipality_code": "010", "labour_force_status": "retired", "arrival_date": "2023-01-01"})
    ReferralLedger(engine).record(n, route(n, default_rules(), default_reference()), dt.datetime(2025, 6, 15, tzinfo=dt.timezone.utc))
    engine.dispose()

    def hub(*args):
        out = subprocess.run([*HUB, "referrals", *args], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert json.loads(hub("--json", "--today", "2026-01-02")) == [{"authority": "municipality:010", "open": 2, "overdue": 1}]
    assert json.loads(hub("--json", "--overdue", "--today", "2026-01-01")) == []
    listed = json.loads(hub("--authority", "municipality:010", "--overdue", "--json", "--today", "2026-01-02"))
    assert [(r["purpose"], r["due"], r["state"]) for r in listed] == [("initial_assessment", "2026-01-01", "sent")]
    assert "initial_assessment" in hub("--authority", "municipality:010")
