"""The fields the DVV adapter added to PopulationChange keep old and new readers compatible."""

import datetime as dt
import io
import json

import fastavro

from hub.schemas.codec import SCHEMA_DIR

ADDED = {"destination_country", "death_date"}


def schemas():
    new = json.loads((SCHEMA_DIR / "population_change.avsc").read_text())
    old = dict(new, fields=[f for f in new["fields"] if f["name"] not in ADDED])
    return fastavro.parse_schema(old, named_schemas={}), fastavro.parse_schema(new, named_schemas={})


RECORD = {
    "event_id": "6f1c3a52-8d0e-5b7e-9a43-2f5d1c0b7e91",
    "occurred_at": dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc),
    "recorded_at": dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc),
    "source": "dvv:muutosrajapinta",
    "person_id": "010190-900R",
    "change_type": "emigration",
    "destination_country": "SE",
    "death_date": dt.date(2026, 5, 1),
}


def roundtrip(writer, reader):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer, RECORD)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, writer, reader)


def test_old_reader_reads_new_writer_and_back():
    old, new = schemas()
    assert roundtrip(new, old)["change_type"] == "emigration"
    back = roundtrip(old, new)
    assert back["destination_country"] is None and back["death_date"] is None
    assert all("default" in f for f in json.loads((SCHEMA_DIR / "population_change.avsc").read_text())["fields"] if f["name"] in ADDED)
