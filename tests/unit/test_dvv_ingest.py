"""The ingest use case with in-memory sink and cursor: order of publish, flush and cursor."""

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import pytest

from hub import metrics
from hub.adapters.dvv.ingest import BadRecord, IngestReport, ingest, kafka_key, process_page, read_files
from hub.adapters.dvv.page import parse_page
from hub.adapters.dvv.sample import sample_files
from hub.domain import hetu

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dvv"
SAMPLE = sample_files()
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
SECRET = "unit-secret"


class MemorySink:
    def __init__(self, fail_on_flush: int | None = None):
        self.log: list[tuple] = []
        self.flushes = 0
        self.fail_on_flush = fail_on_flush

    async def change(self, record, key):
        self.log.append(("change", record, key))

    async def dead_letter(self, bad):
        self.log.append(("dead", bad))

    async def flush(self):
        self.flushes += 1
        if self.fail_on_flush == self.flushes:
            raise ConnectionError("broker went away")
        self.log.append(("flush",))


class MemoryCursor:
    def __init__(self, log):
        self.log = log
        self.key = None

    def save(self, key):
        self.key = key
        self.log.append(("cursor", key))


def run(pages, sink, cursor=None):
    return asyncio.run(ingest(pages, sink, secret=SECRET, cursor=cursor, now=lambda: NOW))


def fixture_pages():
    return [parse_page((FIXTURES / n).read_text(), n) for n in ("page1.json", "page2.json")]


def test_events_are_keyed_by_the_pseudonymous_person_key_never_the_code():
    outcome = process_page(fixture_pages()[0], secret=SECRET, now=NOW)
    assert outcome.bad == () and len(outcome.events) == 9
    for record, key in outcome.events:
        assert key == hetu.person_key(record["person_id"], SECRET) and record["person_id"] not in key


def test_identity_correction_is_keyed_by_the_replaced_code():
    record = {"change_type": "identity_correction", "person_id": "new", "previous_person_id": "old"}
    assert kafka_key(record, SECRET) == hetu.person_key("old", SECRET)


def test_cursor_moves_only_after_the_page_is_flushed():
    sink = MemorySink()
    cursor = MemoryCursor(sink.log)
    report = run(fixture_pages(), sink, cursor)
    kinds = [entry[0] for entry in sink.log]
    assert kinds.count("flush") == 2 and kinds.count("cursor") == 2
    first_flush = kinds.index("flush")
    assert kinds[first_flush + 1] == "cursor" and sink.log[first_flush + 1] == ("cursor", 5446623512)
    assert all(k in ("change", "dead") for k in kinds[:first_flush])
    assert cursor.key == 5446623600 and report.cursor == 5446623600
    assert report.pages == 2 and report.changes == 12 and report.published == 15 and report.ok
    assert report.unknown_groups == {"JOKU_UUSI_TIETORYHMA": 1}


def test_a_failed_flush_leaves_the_cursor_at_the_last_acknowledged_page_and_a_rerun_gives_the_same_ids():
    sink = MemorySink(fail_on_flush=2)
    cursor = MemoryCursor(sink.log)
    with pytest.raises(ConnectionError):
        run(fixture_pages(), sink, cursor)
    assert cursor.key == 5446623512  # page 2 was not acknowledged: it will be re-read
    first_ids = [e[1]["event_id"] for e in sink.log if e[0] == "change"]
    rerun = MemorySink()
    run(fixture_pages()[1:], rerun, MemoryCursor(rerun.log))
    rerun_ids = [e[1]["event_id"] for e in rerun.log if e[0] == "change"]
    assert rerun_ids == first_ids[9:]  # the page-2 events sent before the failure, with the same ids


def test_bad_changes_go_to_dead_letters_with_original_bytes_and_location():
    sink = MemorySink()
    report = run(list(read_files([str(p) for p in SAMPLE])), sink)
    bad = [e[1] for e in sink.log if e[0] == "dead"]
    assert sorted(b.reason for b in bad) == ["future_date", "invalid_person_id", "unknown_municipality"]
    text = SAMPLE[2].read_text()
    for b in bad:
        path, line = b.location.rsplit(":", 1)
        assert path == str(SAMPLE[2])
        assert text.splitlines()[int(line) - 1].strip() == "{"
        original = json.loads(b.original)
        assert b.original.decode() in text  # exactly the bytes of the file
        assert original["henkilotunnus"] not in b.message
    assert report.dead_letters == {"future_date": 1, "invalid_person_id": 1, "unknown_municipality": 1} and not report.ok
    assert report.changes == 46


def test_the_synthetic_day_covers_what_the_demo_needs():
    sink = MemorySink()
    run(list(read_files([str(p) for p in SAMPLE])), sink)
    events = [e[1] for e in sink.log if e[0] == "change"]
    arrivals = [e for e in events if e["change_type"] == "immigration" and e["data_group"] == "KOTIKUNTA"]
    assert {e["municipality_code"] for e in arrivals} >= {"091", "049", "092", "837", "853", "564", "478"}
    assert len({n for e in arrivals for n in e["nationalities"]}) >= 15
    assert len({e["mother_tongue"] for e in arrivals}) >= 12
    minors = [e for e in arrivals if e["birth_date"] > dt.date(2008, 11, 16)]
    assert {e["guardian_in_finland"] for e in minors} == {True, False, None}
    assert any(e["turvakielto"] for e in arrivals)
    types = {e["change_type"] for e in events}
    assert {"move_in", "identity_correction", "death", "non_disclosure", "emigration", "other"} <= types
    for e in events:
        assert hetu.validate(e["person_id"]) and 900 <= int(e["person_id"][7:10]) <= 999


def test_a_malformed_page_in_a_file_is_dead_lettered_and_the_rest_goes_on(tmp_path):
    good = json.dumps(json.loads((FIXTURES / "page2.json").read_text()))
    path = tmp_path / "day.jsonl"
    path.write_text('{"viimeisinKirjausavain": 1, "muutokset": 5, "ajanTasalla": true}\n' + good + "\n")
    sink = MemorySink()
    report = run(list(read_files([str(path)])), sink)
    (bad,) = [e[1] for e in sink.log if e[0] == "dead"]
    assert bad.reason == "malformed_page" and bad.location == f"{path}:1" and bad.original.startswith(b'{"viimeisinKirjausavain": 1')
    assert report.published == 6 and report.dead_letters == {"malformed_page": 1}


def test_a_file_that_is_not_utf8_is_dead_lettered(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"x": "\xe4"}')
    sink = MemorySink()
    report = run(list(read_files([str(path)])), sink)
    (bad,) = [e[1] for e in sink.log if e[0] == "dead"]
    assert bad.original == b'{"x": "\xe4"}' and "UTF-8" in bad.message and report.dead_letters == {"malformed_page": 1}


def test_metrics_count_dead_letters_and_unknown_groups():
    def value(metric, **labels):
        return metrics.REGISTRY.get_sample_value(metric, labels) or 0

    before = (value("hub_dead_letters_total", reason="unknown_municipality"), value("hub_dvv_unknown_data_groups_total", group="JOKU_UUSI_TIETORYHMA"))
    run(list(read_files([str(p) for p in SAMPLE])), MemorySink())
    after = (value("hub_dead_letters_total", reason="unknown_municipality"), value("hub_dvv_unknown_data_groups_total", group="JOKU_UUSI_TIETORYHMA"))
    assert after[0] == before[0] + 1 and after[1] == before[1] + 1


def test_dead_letter_ids_are_deterministic():
    a = BadRecord(b"x", "f:1", "malformed_record", "m")
    assert a.event_id == BadRecord(b"x", "f:1", "malformed_record", "other words").event_id
    assert a.event_id != BadRecord(b"y", "f:1", "malformed_record", "m").event_id


def test_report_defaults():
    assert IngestReport().ok and IngestReport().published == 0


def test_metrics_count_pages_and_changes_and_the_last_page_time_moves_only_with_a_stored_cursor():
    def value(metric, **labels):
        return metrics.REGISTRY.get_sample_value(metric, labels) or 0

    metrics.dvv_last_page.labels(feed="muutokset").set(0)
    pages, changes = value("hub_dvv_pages_total"), value("hub_dvv_changes_total")
    run(fixture_pages(), MemorySink())  # files: no cursor, the feed's time stays
    assert value("hub_dvv_pages_total") == pages + 2 and value("hub_dvv_changes_total") == changes + 12
    assert value("hub_dvv_last_page_timestamp_seconds", feed="muutokset") == 0
    sink = MemorySink()
    before = time.time()
    run(fixture_pages(), sink, MemoryCursor(sink.log))
    assert before <= value("hub_dvv_last_page_timestamp_seconds", feed="muutokset") <= time.time()
