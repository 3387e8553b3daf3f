"""Inputs over their declared bounds (hub/schemas/bounds.py) as a user gives them to the CLI: each is
answered or dead-lettered with `out_of_bounds` and its place, and the inputs after it go on."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from hub.domain import codes
from hub.adapters.dvv.ingest import process_page
from hub.adapters.dvv.page import parse_page

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "dvv"
HUB = [sys.executable, "-m", "hub.cli"]
SECRET = "bounds-cli-secret"
DEEP = "[" * 1000 + "]" * 1000  # 2 KB
DEEP_PAGE = '{"viimeisinKirjausavain": 1, "ajanTasalla": false, "muutokset": [' + DEEP + "]}"


def run(*args, stdin=None, env=None, timeout=180):
    return subprocess.run([*HUB, *args], input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "HUB_PERSON_KEY_SECRET": SECRET, **(env or {})}, stdin=None if stdin is not None else subprocess.DEVNULL)


def _newcomer(event_id: str, **changes) -> str:
    rec = {"event_id": event_id, "occurred_at": "2026-11-01T09:00:00Z", "municipality_code": "091", "labour_force_status": "unemployed_job_seeker",
           "person_key": "ab" * 16, "nationalities": ["EE"]}
    return json.dumps({**rec, **changes})


def test_hub_route_answers_a_deeply_nested_line_with_an_error_and_the_lines_around_it():
    lines = [_newcomer("first"), DEEP, _newcomer("third")]
    out = run("route", stdin="\n".join(lines) + "\n")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-800:]
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a["event_id"] for a in answers] == ["first", None, "third"]
    assert answers[0]["decisions"] and answers[2]["decisions"]
    assert answers[1]["error"]["code"] == "out_of_bounds" and "1000 levels deep; at most 32" in answers[1]["error"]["message"]


def test_hub_route_answers_each_newcomer_over_a_bound_with_the_field_and_the_bound():
    lines = [
        _newcomer("nationalities", nationalities=[c for c in sorted(codes.alpha2_countries())][:70]),
        _newcomer("person-key", person_key="k" * 129),
        _newcomer("nul", person_key="ab\u0000cd"),
        _newcomer("good"),
        _newcomer("x" * 65),
        _newcomer("huge-line", work_history="x" * 70_000),
    ]
    out = run("route", stdin="\n".join(lines) + "\n")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-800:]
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a["event_id"] for a in answers] == ["nationalities", "person-key", "nul", "good", None, None]
    assert "decisions" in answers[3]
    messages = [a["error"]["message"] for a in answers if "error" in a]
    assert all(a["error"]["code"] == "out_of_bounds" for a in answers if "error" in a) and len(messages) == 5
    assert messages[0] == "Newcomer.nationalities has 70 items; at most 20 are allowed"
    assert messages[1] == "Newcomer.person_key has 129 characters; at most 128 are allowed"
    assert messages[2].startswith("Newcomer.person_key contains the character U+0000")
    assert messages[3] == "Newcomer.event_id has 65 characters; at most 64 are allowed"
    assert "bytes is over the bound of 65536 bytes" in messages[4]


# -- hub ingest dvv -------------------------------------------------------------------------------------
def _pages_with_a_change_over_bounds() -> tuple[list[str], str]:
    """JSON lines: a good page; a page whose first change has 70 nationalities (its second is good);
    a page nested 1,000 deep; a good page. Returns the lines and the bad change's person id."""
    page1 = json.loads((FIXTURES / "page1.json").read_text())
    page2 = json.loads((FIXTURES / "page2.json").read_text())
    bad_page = copy.deepcopy(page1)
    bad_page["viimeisinKirjausavain"] += 1
    change = bad_page["muutokset"][0]
    group = next(g for g in change["tietoryhmat"] if g["tietoryhma"] == "KANSALAISUUS")
    numeric = [n for n, a in _numeric_countries() if a != "XX"][:70]
    group["henkilonKansalaisuudet"] = [{"kansalaisuuskoodi": n, "voimassaolo": "AKTIIVI"} for n in numeric]
    bad_page["muutokset"] = [change, page2["muutokset"][0]]
    return [json.dumps(page1), json.dumps(bad_page), DEEP_PAGE, json.dumps(page2)], change["henkilotunnus"]


def _numeric_countries() -> list[tuple[str, str]]:
    import csv

    with open(ROOT / "hub" / "domain" / "data" / "countries_iso3166.csv", encoding="utf-8") as f:
        rows = [r for r in csv.reader(line for line in f if not line.startswith("#"))][1:]
    return sorted({(r[0], r[1]) for r in rows})


def test_hub_ingest_dvv_dry_run_reports_a_change_over_bounds_and_a_deep_page_by_line_and_goes_on(tmp_path):
    lines, person = _pages_with_a_change_over_bounds()
    path = tmp_path / "day.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    good = run("ingest", "dvv", "--dry-run", "--quiet", str(FIXTURES / "page1.json"), str(FIXTURES / "page2.json"))
    assert good.returncode == 0, good.stderr
    good_events = good.stdout.splitlines()

    out = run("ingest", "dvv", "--dry-run", str(path))
    assert out.returncode == 3, out.stderr[-800:]  # exit 3: some records went to dead letters, the rest was printed
    assert "Traceback" not in out.stderr and person not in out.stderr
    problems = [line for line in out.stderr.splitlines() if ": out_of_bounds: " in line]
    assert problems == [
        f"{path}:2, muutos 0: out_of_bounds: PopulationChange.nationalities has 70 items; at most 20 are allowed; check the change with DVV",
        f"{path}:3: out_of_bounds: the response nests JSON objects and lists 1002 levels deep; at most 32 are allowed; the page was not processed",
    ], out.stderr
    assert "2 dead letters (out_of_bounds: 2)" in out.stderr
    # page 1, the good change of the bad page, page 2 (whose first change is that good one again): not the change over bounds
    printed = Counter(json.loads(e)["event_id"] for e in out.stdout.splitlines())
    again = json.dumps({**json.loads(lines[3]), "muutokset": json.loads(lines[3])["muutokset"][:1]})
    expected = Counter(json.loads(e)["event_id"] for e in good_events) + Counter(str(r["event_id"]) for r, _ in process_page(
        parse_page(again), secret=SECRET, now=dt.datetime.now(dt.timezone.utc)).events)
    assert printed == expected


def test_hub_ingest_dvv_dead_letters_a_change_over_bounds_with_its_bytes_and_publishes_the_rest(kafka_url, tmp_path):
    from tests.e2e.test_fuzz_cli_inputs import _dead_letters_at

    lines, person = _pages_with_a_change_over_bounds()
    path = tmp_path / "bounds-day.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {"HUB_KAFKA_URL": kafka_url, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": ""}
    out = run("ingest", "dvv", "--quiet", str(path), env=env)
    assert out.returncode == 3, out.stderr[-800:]
    letters = asyncio.run(_dead_letters_at(kafka_url, str(path)))
    by_location = {d["location"]: d for d in letters}
    assert set(by_location) == {f"{path}:2, muutos 0", f"{path}:3"}
    change = by_location[f"{path}:2, muutos 0"]
    assert change["reason"] == "out_of_bounds" and "nationalities has 70 items" in change["message"] and person not in change["message"]
    assert json.loads(bytes(change["original_value"]))["henkilotunnus"] == person
    assert json.dumps(json.loads(lines[1])["muutokset"][0]).encode() == bytes(change["original_value"])
    deep = by_location[f"{path}:3"]
    assert deep["reason"] == "out_of_bounds" and bytes(deep["original_value"]) == DEEP_PAGE.encode()
