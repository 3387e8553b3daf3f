"""The soak's own Avro wire format, from the published .avsc files and fastavro: not the hub's codec.

Confluent's framing: magic byte 0, the schema id (4 bytes, big-endian, from schema_ids.json), the
Avro body. The soak encodes what it publishes and decodes what the hub publishes with this module,
so a codec bug cannot hide itself from the soak's oracle.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
from functools import lru_cache
from pathlib import Path

import fastavro

SCHEMAS = Path(__file__).resolve().parents[2] / "hub" / "schemas"
FILES = {
    "PopulationChange": "population_change.avsc", "Newcomer": "newcomer.avsc", "Referral": "referral.avsc",
    "ReferralStatus": "referral_status.avsc", "AssessmentCompleted": "assessment_completed.avsc", "Consent": "consent.avsc",
    "PlanRequest": "plan_request.avsc", "Notice": "notice.avsc", "DeadLetter": "dead_letter.avsc",
    "ReferralWithdrawn": "referral_withdrawn.avsc", "ReferralUpdated": "referral_updated.avsc",
}


@lru_cache(maxsize=None)
def _ids() -> dict[str, int]:
    # the ids the hub writes now: each schema's newest version ("Name/vN": id, one entry per version)
    newest: dict[str, tuple[int, int]] = {}
    for key, schema_id in json.loads((SCHEMAS / "schema_ids.json").read_text()).items():
        if not key.startswith("_"):
            name, _, version = key.partition("/")
            newest[name] = max(newest.get(name, (0, 0)), (int(version[1:]), schema_id))
    return {name: schema_id for name, (_, schema_id) in newest.items()}


@lru_cache(maxsize=None)
def schema(name: str):
    return fastavro.parse_schema(json.loads((SCHEMAS / FILES[name]).read_text()), named_schemas={})


@lru_cache(maxsize=None)
def _by_id() -> dict[int, str]:
    return {v: k for k, v in _ids().items()}


def encode(name: str, record: dict) -> bytes:
    out = io.BytesIO()
    out.write(b"\x00" + struct.pack(">I", _ids()[name]))
    fastavro.schemaless_writer(out, schema(name), record)
    return out.getvalue()


def decode(value: bytes) -> tuple[str, dict]:
    """(schema name, record) of a value in the wire format; ValueError when it is not one."""
    if not value or len(value) < 5 or value[0] != 0:
        raise ValueError("not the Confluent wire format")
    (schema_id,) = struct.unpack(">I", value[1:5])
    name = _by_id().get(schema_id)
    if name is None:
        raise ValueError(f"unknown schema id {schema_id}")
    return name, fastavro.schemaless_reader(io.BytesIO(value[5:]), schema(name), None)


def headers(name: str, record: dict) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode attributes, as any publisher sets them."""
    occurred = record.get("occurred_at") or dt.datetime.now(dt.timezone.utc)
    return [
        ("ce_specversion", b"1.0"), ("ce_id", str(record["event_id"]).encode()), ("ce_type", f"fi.integrationhub.{name}.v1".encode()),
        ("ce_source", ("/" + str(record.get("source") or "soak").replace(":", "/", 1)).encode()),  # a URI-reference, as docs/integrating.md asks
        ("ce_time", occurred.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z").encode()), ("content-type", b"application/avro"),
    ]
