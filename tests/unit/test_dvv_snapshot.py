"""The go-live snapshot: saved /perustiedot responses into `resident` PopulationChange records (pure),
and through detection: each resident inside the integration period a newcomer once."""

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from hub.adapters.dvv.ingest import ingest
from hub.adapters.dvv.page import MalformedPage
from hub.adapters.dvv.snapshot import SnapshotDateMissing, map_resident, parse_snapshot_page, read_snapshot_files, snapshot_processor
from hub.newcomers.detection import step
from hub.schemas.codec import default_codec

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "dvv" / "perustiedot-snapshot.json"
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
SECRET = "snapshot-secret"
TAKEN = dt.date(2026, 5, 15)


class ListSink:
    def __init__(self):
        self.records, self.bad = [], []

    async def change(self, record, key):
        self.records.append((record, key))

    async def dead_letter(self, bad):
        self.bad.append(bad)

    async def flush(self):
        pass


def run(paths, taken_on=None, progress=None):
    sink = ListSink()
    report = asyncio.run(ingest(read_snapshot_files(paths), sink, secret=SECRET, now=lambda: NOW, process=snapshot_processor(taken_on),
                                unit="persons", progress=progress))
    return sink, report


def test_each_addressable_person_is_one_resident_record_and_bad_ones_dead_letters():
    lines = []
    sink, report = run([FIXTURE], progress=lines.append)
    records = [r for r, _ in sink.records]
    assert [r["change_type"] for r in records] == ["resident"] * 5  # the deceased and the masked home municipality make none
    first = records[0]
    assert (first["municipality_code"], first["previous_municipality_code"], first["arrived_in_finland"]) == ("091", "049", dt.date(2025, 3, 1))
    assert first["occurred_at"] == dt.datetime(2026, 5, 15, tzinfo=dt.timezone.utc) and first["dvv_batch_ref"] == "snapshot 2026-05-15"
    assert first["nationalities"] == ["UA"] and first["mother_tongue"] == "uk"
    for r in records:
        default_codec().encode("PopulationChange", r)
    (bad,) = sink.bad
    assert bad.reason == "invalid_person_id" and bad.location.startswith(f"{FIXTURE}:")
    assert json.loads(bad.original)["henkilotunnus"] not in bad.message
    assert report.changes == 8 and report.published == 5
    assert len(lines) == 1 and "8 persons, 5 events, 1 dead letters" in lines[0] and "persons/s" in lines[0]


def test_event_ids_derive_from_the_snapshot_day_and_the_person():
    once, _ = run([FIXTURE])
    again, _ = run([FIXTURE])
    assert [r["event_id"] for r, _ in once.records] == [r["event_id"] for r, _ in again.records]
    assert len({r["event_id"] for r, _ in once.records}) == 5


def test_the_snapshot_through_detection_finds_the_residents_inside_the_period_once():
    sink, _ = run([FIXTURE])
    states, found = {}, []
    for _ in range(2):  # the snapshot ingested twice
        for record, _key in sink.records:
            done = step(record, states.get, SECRET)
            states[done.key] = done.state
            found += done.found
    assert sorted((e.state.municipality_code, e.state.arrival_date.isoformat()) for e in found) == [("049", "2024-01-10"), ("091", "2025-03-01")]
    mover = next(e for e in found if e.state.municipality_code == "091")
    assert mover.reasons[0] == "resident of 091 in the register snapshot of 2026-05-15; in Finland since 2025-03-01, inside the integration period"


def test_a_response_without_poimintapv_needs_the_day(tmp_path):
    doc = json.loads(FIXTURE.read_text())
    del doc["poimintapv"]
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SnapshotDateMissing, match="--taken-on"):
        run([path])
    sink, _ = run([path], taken_on=TAKEN)
    assert {r["occurred_at"].date() for r, _ in sink.records} == {TAKEN}


def test_a_muutokset_response_is_not_a_snapshot():
    with pytest.raises(MalformedPage, match="without --snapshot"):
        parse_snapshot_page(json.dumps({"viimeisinKirjausavain": 1, "muutokset": [], "ajanTasalla": True}), "f.json")


def test_json_lines_of_responses_keep_each_persons_line(tmp_path):
    doc = json.loads(FIXTURE.read_text())
    path = tmp_path / "snapshot.jsonl"
    path.write_text("\n".join(json.dumps(dict(doc, perustiedot=[p])) for p in doc["perustiedot"]) + "\n")
    sink, report = run([path])
    assert report.pages == 8 and len(sink.records) == 5 and sink.bad[0].location == f"{path}:8"


def test_a_person_without_the_documented_shape_names_the_field():
    from hub.adapters.dvv.mapping import MalformedMuutos

    with pytest.raises(MalformedMuutos, match="tietoryhmat"):
        map_resident({"henkilotunnus": "x", "tietoryhmat": {}}, secret=SECRET, taken_on=TAKEN, recorded_at=NOW)
    with pytest.raises(MalformedMuutos, match="henkilotunnus"):
        map_resident({"tietoryhmat": []}, secret=SECRET, taken_on=TAKEN, recorded_at=NOW)
