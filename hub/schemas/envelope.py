"""What every hub event carries besides its payload: the envelope fields, its CloudEvents form (Kafka
headers in binary mode, a JSON body in structured mode for webhooks) and the DeadLetter record of a
record that could not be processed."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from hub.domain.clock import iso_utc, utcnow
from hub.schemas.topics import NAMESPACE

CE_TYPE_PREFIX = f"{NAMESPACE}."  # ce_type is `<prefix><Name>.v1`, the Avro record's full name and its version
CE_SPECVERSION = "1.0"


def envelope(source: str, occurred_at: dt.datetime | None = None, event_id: str | None = None) -> dict:
    """The common envelope fields of every event."""
    now = utcnow()
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "occurred_at": occurred_at or now,
        "recorded_at": now,
        "source": source,
        "schema_version": 1,
    }


def ce_type(name: str) -> str:
    """The CloudEvents type of a hub event by its schema name: `fi.integrationhub.<Name>.v1`."""
    return f"{CE_TYPE_PREFIX}{name}.v1"


def cloudevent_headers(name: str, record: dict) -> list[tuple[str, bytes]]:
    """CloudEvents Kafka binary-mode attributes for an encoded hub event."""
    occurred = record.get("occurred_at") or utcnow()
    return [
        ("ce_specversion", CE_SPECVERSION.encode()),
        ("ce_id", str(record["event_id"]).encode()),
        ("ce_type", ce_type(name).encode()),
        ("ce_source", str(record.get("source") or "hub").encode()),
        ("ce_time", iso_utc(occurred).encode()),
        ("content-type", b"application/avro"),
    ]


def cloudevent_body(name: str, event: dict, jsonable: dict) -> bytes:
    """A hub record as a CloudEvents JSON (structured mode) body; `jsonable` is the codec's JSON form."""
    occurred = event.get("occurred_at")
    body = {
        "specversion": CE_SPECVERSION,
        "id": str(event["event_id"]),
        "type": ce_type(name),
        "source": str(event.get("source") or "hub"),
        "time": iso_utc(occurred) if isinstance(occurred, dt.datetime) else None,
        "datacontenttype": "application/json",
        "data": jsonable,
    }
    return json.dumps({k: v for k, v in body.items() if v is not None}, ensure_ascii=False, separators=(",", ":")).encode()


def dead_letter_record(
    original_value: bytes,
    reason: str,
    message: str,
    *,
    original_topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    original_key: bytes | None = None,
    location: str | None = None,
    event_id: str | None = None,
    source: str = "hub",
) -> dict:
    """The DeadLetter record for a record that could not be processed (bytes unchanged)."""
    record = envelope(source, event_id=event_id)
    record.update(
        original_topic=original_topic,
        original_partition=partition,
        original_offset=offset,
        original_key=original_key,
        original_value=bytes(original_value or b""),
        location=location,
        reason=reason,
        message=message,
    )
    return record
