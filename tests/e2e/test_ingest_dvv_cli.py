"""`hub ingest dvv` as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.adapters.dvv.sample import sample_files

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "dvv"
SAMPLE = sample_files()
HUB = [sys.executable, "-m", "hub.cli"]


def run(*args, env=None, timeout=120):
    return subprocess.run(
        [*HUB, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=ROOT
    )


def test_help():
    out = run("ingest", "dvv", "--help")
    assert out.returncode == 0 and "Exit status" in out.stdout and "--dry-run" in out.stdout and "--poll" in out.stdout
    assert run("ingest", "--help").returncode == 0
    assert "ingest" in run("--help").stdout


def test_dry_run_prints_population_changes_as_json_lines():
    out = run("ingest", "dvv", "--dry-run", str(FIXTURES / "page1.json"), str(FIXTURES / "page2.json"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 15
    events = [json.loads(line) for line in lines]
    assert events[0]["change_type"] == "immigration" and events[0]["municipality_code"] == "049" and events[0]["person_id"] == "041187Y9341"
    assert "15 events printed (dry run), 0 dead letters" in out.stderr and "Traceback" not in out.stderr


def test_dry_run_with_bad_records_reports_line_and_reason_and_exits_3():
    out = run("ingest", "dvv", "--dry-run", *map(str, SAMPLE))
    assert out.returncode == 3
    bad = [line for line in out.stderr.splitlines() if ": invalid_" in line or ": unknown_" in line or ": future_" in line]
    assert len(bad) == 3
    for line in bad:
        assert line.startswith(str(SAMPLE[2]) + ":")
    data = json.loads(SAMPLE[2].read_text())
    for change in data["muutokset"][-3:]:
        assert change["henkilotunnus"] not in out.stderr
    assert len(out.stdout.splitlines()) == 105


def test_json_lines_input(tmp_path):
    lines = [json.dumps(json.loads((FIXTURES / n).read_text())) for n in ("page1.json", "page2.json")]
    path = tmp_path / "day.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = run("ingest", "dvv", "--dry-run", "--quiet", str(path))
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 15 and out.stderr == ""


def test_garbage_file_is_reported_not_a_traceback(tmp_path):
    path = tmp_path / "garbage.json"
    path.write_text("this is not json\n")
    out = run("ingest", "dvv", "--dry-run", str(path))
    assert out.returncode == 3 and f"{path}:1: malformed_page" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "FILE"),
        (["--poll", "f"], "not both"),
        (["--since", "2026-05-01", "f"], "--poll"),
        (["no-such-file.json"], "does not exist"),
        (["--poll", "--since", "yesterday"], "yesterday"),
    ],
)
def test_usage_errors_exit_2(args, words, tmp_path):
    if args[-1:] == ["f"]:
        args = [*args[:-1], str(FIXTURES / "page1.json")]
    out = run("ingest", "dvv", *args)
    assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr


def test_poll_without_url_fails_with_a_clear_message(tmp_path):
    out = run("ingest", "dvv", "--poll", "--since", "2026-05-11", env={"HUB_DVV_URL": "", "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": ""})
    assert out.returncode == 1 and "HUB_DVV_URL" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.integration
def test_publish_files_to_the_broker_with_dead_letters_carrying_the_original_bytes(kafka_url):
    import asyncio

    from hub.schemas.codec import default_codec
    from tests.kafka_helpers import read_topic

    out = run("ingest", "dvv", *map(str, SAMPLE), env={"HUB_KAFKA_URL": kafka_url})
    assert out.returncode == 3, out.stderr
    assert "105 events published, 3 dead letters" in out.stderr
    # the whole topic: on the session's shared broker, other tests' dead letters may come first
    records = asyncio.run(read_topic(kafka_url, "hub.dead-letters.v1", min_count=3))
    letters = {}
    for r in records:
        letter = default_codec().decode(r.value, "DeadLetter").record
        if (letter["location"] or "").startswith(str(SAMPLE[2]) + ":"):
            letters[letter["event_id"]] = letter
    assert sorted(letter["reason"] for letter in letters.values()) == ["future_date", "invalid_person_id", "unknown_municipality"]
    text = SAMPLE[2].read_text()
    for letter in letters.values():
        line = int(letter["location"].rsplit(":", 1)[1])
        start = text.find(letter["original_value"].decode())  # exactly the bytes of the file ...
        assert start > 0 and text.count("\n", 0, start) + 1 == line  # ... at the line reported


@pytest.mark.integration
def test_poll_against_a_replay_server_stores_the_cursor(kafka_url, tmp_path):
    from tests.dvv_replay import ReplayServer, fixture_pages

    first, pages = fixture_pages()
    env = {"HUB_KAFKA_URL": kafka_url, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_DVV_XROAD_CLIENT": "FI-TEST/MUN/0000000-0/hub"}
    with ReplayServer(pages, first) as server:
        env["HUB_DVV_URL"] = server.url
        out = run("ingest", "dvv", "--poll", env=env)
        assert out.returncode == 1 and "--since" in out.stderr  # no cursor yet
        out = run("ingest", "dvv", "--poll", "--since", "2026-05-11", env=env)
        assert out.returncode == 0, out.stderr
        assert "cursor at 5446623600" in out.stderr and "15 events published" in out.stderr
        out = run("ingest", "dvv", "--poll", env=env)  # from the stored cursor: nothing new
        assert out.returncode == 0 and "0 events published" in out.stderr
    assert server.muutokset_keys() == [5446623423, 5446623512, 5446623600]


@pytest.mark.integration
def test_poll_reports_a_malformed_page_and_keeps_the_cursor(kafka_url, tmp_path):
    from tests.dvv_replay import ReplayServer

    env = {"HUB_KAFKA_URL": kafka_url, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_DVV_RETRIES": "2"}
    with ReplayServer({5: b'{"viimeisinKirjausavain": 6, "muutokset": [], "ajanTasalla": "maybe"}'}, 5) as server:
        env["HUB_DVV_URL"] = server.url
        out = run("ingest", "dvv", "--poll", "--since", "2026-05-11", env=env)
    assert out.returncode == 1 and "malformed page" in out.stderr and "ajanTasalla" in out.stderr and "Traceback" not in out.stderr
