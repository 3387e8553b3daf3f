"""The go-live backfill as an operator runs it: `hub ingest dvv --snapshot FILE`, twice, on the real
broker, with the worker's newcomer detection (states in a database) between the runs: each resident
inside the integration period is detected once."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "tests" / "fixtures" / "dvv" / "perustiedot-snapshot.json"
HUB = [sys.executable, "-m", "hub.cli"]
INSIDE = ("120491-941T", "300985-942X")  # the fixture's residents inside the period (test identity codes)


def run(*args, env=None, timeout=120):
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def test_help_explains_the_backfill():
    out = run("ingest", "dvv", "--help")
    text = " ".join(out.stdout.split())
    assert out.returncode == 0 and "--snapshot" in text and "--taken-on" in text
    assert "go-live backfill" in text and "detects nobody again" in text and "--poll --since" in text


@pytest.mark.parametrize("args, words", [(["--snapshot", "--poll"], "not --poll"), (["--taken-on", "2026-05-15", "f"], "goes with --snapshot"),
                                         (["--snapshot", "--taken-on", "2999-01-01", "f"], "in the future")])
def test_usage_errors_exit_2(args, words):
    args = [str(SNAPSHOT) if a == "f" else a for a in args]
    out = run("ingest", "dvv", *args)
    assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr


def test_a_snapshot_without_its_day_stops_with_the_fix(tmp_path):
    doc = json.loads(SNAPSHOT.read_text())
    del doc["poimintapv"]
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(doc))
    out = run("ingest", "dvv", "--snapshot", "--dry-run", str(path), env={"HUB_DATA_DIR": str(tmp_path)})
    assert out.returncode == 1 and "poimintapv" in out.stderr and "--taken-on YYYY-MM-DD" in out.stderr and "Traceback" not in out.stderr
    out = run("ingest", "dvv", "--snapshot", "--dry-run", "--taken-on", "2026-05-15", str(path), env={"HUB_DATA_DIR": str(tmp_path)})
    assert out.returncode == 3 and len(out.stdout.splitlines()) == 5


def test_a_change_data_file_given_as_a_snapshot_says_so(tmp_path):
    out = run("ingest", "dvv", "--snapshot", "--dry-run", str(ROOT / "tests" / "fixtures" / "dvv" / "page1.json"), env={"HUB_DATA_DIR": str(tmp_path)})
    assert out.returncode == 3 and "ingest it without --snapshot" in out.stderr


@pytest.mark.integration
def test_backfill_twice_detects_each_resident_inside_the_period_once(fresh_kafka_url, tmp_path):
    from hub.adapters.database import upgrade
    from hub.config import Settings
    from hub.domain import hetu
    from hub.schemas import topics
    from hub.streams import newcomer_agents
    from hub.streams.pipeline import hub_app
    from hub.streams.runner import running, wait_for
    from tests.kafka_helpers import decoded, read_topic

    secret = os.environ["HUB_PERSON_KEY_SECRET"]  # the e2e conftest's: the CLI runs under it too
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    upgrade(url)

    async def detect(until: int):
        hub = hub_app(Settings(app_id="snapshot-e2e", person_key_secret=secret), fresh_kafka_url)
        seen = newcomer_agents.register(hub, database_url=url)
        async with running(hub):
            await wait_for(lambda: seen.consumed >= until, 60, "detection to consume the snapshot's residents")
            await asyncio.sleep(1)
        return seen

    env = {"HUB_KAFKA_URL": fresh_kafka_url, "HUB_DATA_DIR": str(tmp_path)}
    for _run in (1, 2):
        out = run("ingest", "dvv", "--snapshot", str(SNAPSHOT), env=env)
        assert out.returncode == 3, out.stderr  # one person with a broken identity code went to dead letters
        progress = [line for line in out.stderr.splitlines() if line.startswith("ingest dvv: page 1:")]
        assert progress and "8 persons, 5 events, 1 dead letters" in progress[0] and "persons/s" in progress[0]
        assert "1 pages, 8 persons, 5 events published, 1 dead letters (invalid_person_id: 1)" in out.stderr
        assert not any(code in out.stderr for code in INSIDE)
        asyncio.run(detect(until=5))  # the same consumer group: the second run's records only

    newcomers = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=2)))
    arrived = [n for n in newcomers if n["change"] == "arrived"]
    assert sorted(n["person_key"] for n in arrived) == sorted(hetu.person_key(code, secret) for code in INSIDE)
    assert {n["municipality_code"]: n["arrival_date"].isoformat() for n in arrived} == {"091": "2025-03-01", "049": "2024-01-10"}
    assert len(newcomers) == 2  # nothing moved, nobody again

    # then the change feed: movers the hub first sees on a move between municipalities
    page = tmp_path / "muutokset.json"
    page.write_text(json.dumps({"viimeisinKirjausavain": 2, "ajanTasalla": True, "muutokset": [
        _move(UNKNOWN_IN_SNAPSHOT, "049", "091", came="2024-06-01"),  # the snapshot could not date them; the move can
        _move(NEW_MOVER, "837", "091", came="2024-03-01"),  # not in the snapshot at all
        _move(MOVER_WITHOUT_DATE, "837", "091"),  # no date of moving to Finland: not guessed
    ]}))
    out = run("ingest", "dvv", str(page), env=env)
    assert out.returncode == 0, out.stderr
    asyncio.run(detect(until=3))
    newcomers = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=4)))
    before = {hetu.person_key(code, secret) for code in INSIDE}
    assert len(newcomers) == 4 and sum(n["person_key"] in before for n in newcomers) == 2
    movers = {n["person_key"]: n for n in newcomers if n["person_key"] not in before}
    assert set(movers) == {hetu.person_key(UNKNOWN_IN_SNAPSHOT, secret), hetu.person_key(NEW_MOVER, secret)}
    first_seen = movers[hetu.person_key(NEW_MOVER, secret)]
    assert (first_seen["change"], first_seen["municipality_code"], first_seen["previous_municipality_code"]) == ("arrived", "837", "091")
    assert first_seen["arrival_date"].isoformat() == "2024-03-01"


UNKNOWN_IN_SNAPSHOT = "070788-944A"  # the fixture's resident who moved from 092 without a date of moving to Finland
NEW_MOVER, MOVER_WITHOUT_DATE = "150690-951D", "160690-9523"  # test identity codes


def _move(code, to, came_from, came=None):
    groups = [{"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": to, "kuntaanMuuttopv": {"arvo": "2026-06-01", "tarkkuus": "PAIVA"}},
              {"tietoryhma": "EDELLINEN_KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": came_from},
              {"tietoryhma": "KANSALAISUUS", "muutosattribuutti": "LISATIETO", "henkilonKansalaisuudet": [{"kansalaisuuskoodi": "804", "voimassaolo": "AKTIIVI"}]}]
    if came:
        groups.append({"tietoryhma": "SUOMEEN_MUUTTOPAIVA", "muutosattribuutti": "LISATIETO", "suomeenMuuttopv": {"arvo": came, "tarkkuus": "PAIVA"}})
    return {"henkilotunnus": code, "muutospv": "2026-06-01T08:00:00.000Z", "tietoryhmat": groups}
