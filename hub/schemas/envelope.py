"""What every hub event carries besides its payload: the envelope fields, its CloudEvents form (Kafka
headers in binary mode, a JSON body in structured mode for webhooks) and the DeadLetter record of a
record that could not be processed."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from urllib.parse import quote, unquote

from hub.domain.clock import iso_utc, utcnow
from hub.schemas.topics import NAMESPACE

CE_TYPE_PREFIX = f"{NAMESPACE}."  # ce_type is `<prefix><Name>.v1`, the Avro record's full name and its version
CE_SPECVERSION = "1.0"
# the characters RFC 3986 allows as they are in a path segment (pchar: unreserved, sub-delims, ":", "@");
# every other character of a source id is percent-encoded (UTF-8)
_PCHAR = "-._~!$&'()*+,;=:@"


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


def ce_source(source: str | None) -> str:
    """The CloudEvents `source` of a record: its `source` id as an RFC 3986 URI-reference, an absolute path.

    `<kind>:<rest>` becomes `/<kind>/<rest>` (`wellbeing_area:04` -> `/wellbeing_area/04`, `hub:routing` ->
    `/hub/routing`), an id without a colon one segment (`migri` -> `/migri`); each part is percent-encoded where
    a path segment needs it (`/` as %2F, so no two ids give the same source). `source_id` turns it back.
    An id such as `wellbeing_area:04` is no URI-reference as it is (`_` is not allowed in a scheme)."""
    text = str(source or "hub")
    kind, colon, rest = text.partition(":")
    if colon and kind and rest:
        return f"/{quote(kind, safe=_PCHAR.replace(':', ''))}/{quote(rest, safe=_PCHAR)}"
    return "/" + quote(text, safe=_PCHAR.replace(":", ""))


def source_id(source: str) -> str:
    """The record's `source` id of a CloudEvents `source` made by `ce_source`."""
    first, slash, rest = source.removeprefix("/").partition("/")
    return f"{unquote(first)}:{unquote(rest)}" if slash else unquote(first)


def cloudevent_headers(name: str, record: dict) -> list[tuple[str, bytes]]:
    """CloudEvents Kafka binary-mode attributes for an encoded hub event."""
    occurred = record.get("occurred_at") or utcnow()
    return [
        ("ce_specversion", CE_SPECVERSION.encode()),
        ("ce_id", str(record["event_id"]).encode()),
        ("ce_type", ce_type(name).encode()),
        ("ce_source", ce_source(record.get("source")).encode()),
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
        "source": ce_source(event.get("source")),
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
    original_headers: Sequence[tuple[str, bytes | None]] | None = None,
) -> dict:
    """The DeadLetter record for a record that could not be processed (bytes unchanged), with the original
    record's Kafka headers as they came, in order (`original_headers`: what a replay puts back)."""
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
        original_headers=header_list(original_headers),
    )
    return record


def header_list(headers: Sequence[tuple[str, bytes | None]] | None) -> list[dict]:
    """Kafka headers as the DeadLetter's `original_headers` (key, value bytes or null), order and repeats kept."""
    return [{"key": str(key), "value": None if value is None else bytes(value)} for key, value in headers or ()]


def kafka_headers(original_headers: Sequence[dict] | None) -> list[tuple[str, bytes | None]]:
    """A DeadLetter's `original_headers` back as Kafka headers (the inverse of `header_list`)."""
    return [(h["key"], h.get("value")) for h in original_headers or ()]
