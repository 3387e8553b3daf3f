"""The one codec of the hub: Avro (fastavro) in the Confluent wire format, and the JSON form.

Wire format: magic byte 0, a 4-byte big-endian schema id from `schema_ids.json`, the Avro body.
JSON form: the Avro record as plain JSON with the schema's field names; dates as YYYY-MM-DD,
timestamps as RFC 3339 (UTC, "Z"), bytes as base64, unions unwrapped (null or the value).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import struct
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from hub.domain.clock import iso_utc
from hub.domain.errors import Rejected
from hub.schemas import bounds

SCHEMA_DIR = Path(__file__).resolve().parent
MAGIC = 0
_HEADER = struct.Struct(">bI")


class CodecError(Rejected):
    """A record could not be encoded or decoded. `reason` is a stable code for dead letters.

    Reasons: undecodable (not Avro of the named schema), wrong_magic, unknown_schema_id,
    unexpected_schema, invalid_record (does not match the schema), invalid_json, out_of_bounds
    (an input record over a bound of hub/schemas/bounds.py: its size, a field's length, a list's
    items or a character).
    The message never quotes field values, so it cannot leak an identity code.
    """

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded event: the schema name and the Avro record as a dict."""

    name: str
    record: dict
    schema_id: int


def _load_avsc(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


class Codec:
    """Encode and decode hub events. Parsed schemas are cached per codec."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR):
        ids = json.loads((schema_dir / "schema_ids.json").read_text(encoding="utf-8"))
        entries = {k: v for k, v in ids.items() if not k.startswith("_")}
        self._ids: dict[str, int] = {k: v for k, v in entries.items() if "/" not in k}  # name -> id of the version written now
        self._names: dict[int, str] = {v: k for k, v in self._ids.items()}
        self._raw: dict[str, dict] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            raw = _load_avsc(path)
            self._raw[raw["name"]] = raw
        missing = set(self._ids) - set(self._raw)
        if missing:
            raise RuntimeError(f"schema ids name schemas with no .avsc file: {sorted(missing)}")
        self._parsed: dict[str, Any] = {name: fastavro.parse_schema(raw, named_schemas={}) for name, raw in self._raw.items()}
        # earlier released versions ("Name/vN": id): data written with them is read through the
        # version's own schema (hub/schemas/history/Name/vN.avsc) into the current one
        self._earlier: dict[int, tuple[str, int, dict, Any]] = {}
        for key, schema_id in entries.items():
            if "/" not in key:
                continue
            name, _, version = key.partition("/")
            path = schema_dir / "history" / name / f"{version}.avsc"
            if name not in self._ids or not version.startswith("v") or not version[1:].isdigit() or not path.is_file():
                raise RuntimeError(f"schema_ids.json: {key!r} must name an earlier version of a known schema, kept as history/{name}/{version}.avsc")
            raw = _load_avsc(path)
            self._earlier[schema_id] = (name, int(version[1:]), raw, fastavro.parse_schema(raw, named_schemas={}))
            self._names[schema_id] = name
        if len(self._names) != len(entries):
            raise RuntimeError("schema_ids.json: every id must be used once")
        self._to_jsonable: dict[str, Any] = {}  # schema name -> its compiled JSON-form converter

    # -- schemas -------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return sorted(self._ids, key=self._ids.__getitem__)

    def schema_id(self, name: str) -> int:
        try:
            return self._ids[name]
        except KeyError:
            raise CodecError("unknown_schema", f"no schema named {name!r}; known: {', '.join(self.names)}") from None

    def raw_schema(self, name: str) -> dict:
        self.schema_id(name)
        return self._raw[name]

    def parsed_schema(self, name: str):
        self.schema_id(name)
        return self._parsed[name]

    def earlier_ids(self, name: str) -> dict[int, int]:
        """version -> schema id of the earlier released versions of `name` (data in Kafka may still use them)."""
        self.schema_id(name)
        return {version: schema_id for schema_id, (n, version, _, _) in self._earlier.items() if n == name}

    def schema_of_id(self, schema_id: int) -> tuple[str, dict] | None:
        """(name, raw schema) of the version `schema_id` stands for, or None for an unknown id."""
        if schema_id in self._earlier:
            name, _, raw, _ = self._earlier[schema_id]
            return name, raw
        name = self._names.get(schema_id)
        return (name, self._raw[name]) if name is not None else None

    # -- wire format -------------------------------------------------------------------------
    def encode(self, name: str, record: dict) -> bytes:
        """The record in the Confluent wire format. Raises CodecError(invalid_record)."""
        schema_id = self.schema_id(name)
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, schema_id))
        try:
            fastavro.schemaless_writer(buf, self._parsed[name], record, strict_allow_default=True)
        except CodecError:
            raise
        except Exception as exc:  # fastavro raises many types; report which field, never the value
            raise CodecError("invalid_record", f"{name} does not match its schema: {_describe(exc)}") from None
        return buf.getvalue()

    def decode(self, data: bytes, expect: str | tuple[str, ...] | None = None, *, check_bounds: bool = True) -> Event:
        """Decode wire-format bytes. Raises CodecError for garbage, wrong magic, unknown id, and
        (unless `check_bounds` is false) for an input record over its declared bounds."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError("undecodable", f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise CodecError("undecodable", f"{len(data)} bytes is shorter than the 5-byte wire-format header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise CodecError("wrong_magic", f"first byte is {magic & 0xFF}, expected 0 (Confluent wire format)")
        name = self._names.get(schema_id)
        if name is None:
            raise CodecError("unknown_schema_id", f"schema id {schema_id} is not in the hub's schema table")
        if expect is not None:
            allowed = (expect,) if isinstance(expect, str) else expect
            if name not in allowed:
                raise CodecError("unexpected_schema", f"got a {name} where {' or '.join(allowed)} was expected")
        if check_bounds:
            try:
                bounds.check_size(name, len(data))
            except bounds.OutOfBounds as exc:
                raise CodecError(exc.reason, exc.message) from None
        buf = io.BytesIO(data)
        buf.seek(_HEADER.size)
        try:
            earlier = self._earlier.get(schema_id)
            if earlier is None:
                record = fastavro.schemaless_reader(buf, self._parsed[name], None)
            else:  # written with an earlier version: resolved into the current schema (new fields get their defaults)
                record = fastavro.schemaless_reader(buf, earlier[3], self._parsed[name])
        except Exception as exc:
            raise CodecError("undecodable", f"body is not a valid {name} record ({type(exc).__name__})") from None
        if buf.tell() != len(data):
            raise CodecError("undecodable", f"{len(data) - buf.tell()} trailing bytes after a {name} record")
        if check_bounds:
            _check_bounds(name, record)
        return Event(name, record, schema_id)

    # -- JSON form ---------------------------------------------------------------------------
    def to_jsonable(self, name: str, record: dict) -> dict:
        convert = self._to_jsonable.get(name)
        if convert is None:
            convert = self._to_jsonable[name] = _json_converter(self.parsed_schema(name))
        return convert(record)

    def to_json(self, name: str, record: dict) -> str:
        return json.dumps(self.to_jsonable(name, record), ensure_ascii=False, separators=(",", ":"))

    def from_jsonable(self, name: str, obj: Any, *, check_bounds: bool = True) -> dict:
        """The Avro record for a JSON-form object. Raises CodecError(invalid_json), or (unless
        `check_bounds` is false) CodecError(out_of_bounds) for an input record over its bounds."""
        schema = self.parsed_schema(name)
        if not isinstance(obj, dict):
            raise CodecError("invalid_json", f"a {name} must be a JSON object, got {type(obj).__name__}")
        if check_bounds:
            _check_bounds(name, obj)
        try:
            return _from_json(schema, obj, name)
        except CodecError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise CodecError("invalid_json", f"{name}: {_describe(exc)}") from None

    def from_json(self, name: str, text: str | bytes, *, check_bounds: bool = True) -> dict:
        try:
            obj = bounds.loads(text, f"the {name} JSON", max_bytes=bounds.MAX_JSON_BYTES)
        except bounds.OutOfBounds as exc:
            raise CodecError(exc.reason, exc.message) from None
        except ValueError as exc:  # UnicodeDecodeError too
            raise CodecError("invalid_json", f"not JSON ({type(exc).__name__} at position {getattr(exc, 'pos', '?')})") from None
        return self.from_jsonable(name, obj, check_bounds=check_bounds)


def _check_bounds(name: str, record: dict) -> None:
    try:
        bounds.check_record(name, record)
    except bounds.OutOfBounds as exc:
        raise CodecError(exc.reason, exc.message) from None


def _describe(exc: Exception) -> str:
    """A short description of a fastavro/parse error without the offending value."""
    text = str(exc)
    # fastavro's messages look like "<value> (type <class>) do not match <schema> on field <f>";
    # keep only the field and the type.
    if " on field " in text:
        field = text.rsplit(" on field ", 1)[1]
        return f"field {field!r} has a value of the wrong type or is missing"
    if "is not a valid" in text or "not in" in text:
        return f"a value is not allowed ({type(exc).__name__})"
    return type(exc).__name__ if len(text) > 120 or any(ch.isdigit() for ch in text) else text


def _type_of(schema):
    return schema["type"] if isinstance(schema, dict) else schema


_PLAIN = frozenset({str, int, float, bool})  # values the JSON form carries as they are


def _leaf_to_json(value):
    """The JSON form of a leaf value (not a record, array or map), by its Python type."""
    if isinstance(value, dt.datetime):
        return iso_utc(value, "milliseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    return value


def _json_converter(schema):
    """A function from a value of `schema` that is neither None nor a plain str/int/float/bool (those
    the JSON form carries as they are) to its JSON form. Built once per schema, so that a value is not
    walked against its schema again (the referral ledger stores the JSON form of every referral).
    A union takes its first non-null branch; a leaf goes by its Python type."""
    if isinstance(schema, list):  # union
        branches = [b for b in schema if b != "null"]
        return _json_converter(branches[0]) if branches else (lambda value: value)
    t = _type_of(schema)
    if t == "record":
        fields = [(f["name"], _json_converter(f["type"])) for f in schema["fields"]]

        def record(value):
            get = value.get
            out = {}
            for name, convert in fields:
                v = get(name)
                out[name] = v if v is None or type(v) in _PLAIN else convert(v)
            return out
        return record
    if t == "array":
        item = _json_converter(schema["items"])
        return lambda value: [v if v is None or type(v) in _PLAIN else item(v) for v in value]
    if t == "map":
        item = _json_converter(schema["values"])
        return lambda value: {k: v if v is None or type(v) in _PLAIN else item(v) for k, v in value.items()}
    return _leaf_to_json


def parse_timestamp(text: str) -> dt.datetime:
    """RFC 3339 → aware datetime (a date alone means midnight UTC)."""
    if len(text) == 10:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.timezone.utc)
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("timestamp has no UTC offset; RFC 3339 needs one, e.g. 2025-03-01T12:00:00Z")
    return value


def _from_json(schema, value, path):
    if isinstance(schema, list):
        if value is None:
            if "null" in schema:
                return None
            raise CodecError("invalid_json", f"{path} must not be null")
        branches = [b for b in schema if b != "null"]
        last = None
        for branch in branches:
            try:
                return _from_json(branch, value, path)
            except (CodecError, ValueError, TypeError) as exc:
                last = exc
        raise last if isinstance(last, CodecError) else CodecError("invalid_json", f"{path} has the wrong type")
    t = _type_of(schema)
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if value is None:
        raise CodecError("invalid_json", f"{path} must not be null")
    if t == "record":
        if not isinstance(value, dict):
            raise CodecError("invalid_json", f"{path} must be an object")
        out = {}
        for f in schema["fields"]:
            if f["name"] in value:
                out[f["name"]] = _from_json(f["type"], value[f["name"]], f"{path}.{f['name']}")
            elif "default" in f:
                out[f["name"]] = _copy_default(f["default"])
            else:
                raise CodecError("invalid_json", f"{path}.{f['name']} is required")
        return out
    if t == "array":
        if not isinstance(value, list):
            raise CodecError("invalid_json", f"{path} must be a list")
        return [_from_json(schema["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if t == "enum":
        if value not in schema["symbols"]:
            raise CodecError("invalid_json", f"{path} must be one of {', '.join(schema['symbols'])}")
        return value
    if logical == "date":
        if not isinstance(value, str):
            raise CodecError("invalid_json", f"{path} must be a date string YYYY-MM-DD")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise CodecError("invalid_json", f"{path} is not a valid date YYYY-MM-DD") from None
    if logical in ("timestamp-millis", "timestamp-micros"):
        if not isinstance(value, str):
            raise CodecError("invalid_json", f"{path} must be an RFC 3339 timestamp string")
        try:
            return parse_timestamp(value)
        except ValueError:
            raise CodecError("invalid_json", f"{path} is not an RFC 3339 timestamp with offset") from None
    if logical == "uuid":
        try:
            return uuid.UUID(value) if isinstance(value, str) else _raise_type(path, "a UUID string")
        except ValueError:
            raise CodecError("invalid_json", f"{path} is not a valid UUID") from None
    if t == "bytes":
        if not isinstance(value, str):
            raise CodecError("invalid_json", f"{path} must be base64 text")
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise CodecError("invalid_json", f"{path} is not valid base64") from None
    expected = {"string": str, "boolean": bool, "int": int, "long": int, "double": (int, float), "float": (int, float)}.get(t)
    if expected is not None:
        if not isinstance(value, expected) or (t in ("int", "long") and isinstance(value, bool)):
            raise CodecError("invalid_json", f"{path} must be of type {t}")
    return value


def _raise_type(path: str, what: str):
    raise CodecError("invalid_json", f"{path} must be {what}")


def _copy_default(value):
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


@lru_cache(maxsize=1)
def default_codec() -> Codec:
    """The codec over the schemas shipped in the package (built once per process)."""
    return Codec()
