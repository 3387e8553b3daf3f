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
import re
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


HISTORY = "history"
MAX_SCHEMA_ID = 2**31 - 1  # a Confluent schema id is a positive 32-bit signed integer


@dataclass(frozen=True)
class Version:
    """One version of a schema with its permanent id: hub/schemas/history/<name>/v<number>.avsc."""

    name: str
    number: int
    schema_id: int
    raw: dict
    parsed: Any = None


@dataclass(frozen=True)
class SchemaTable:
    """Every version of every schema with its id (schema_ids.json), and the problems found reading them."""

    current: dict[str, dict]  # name -> the schema the hub writes now (hub/schemas/*.avsc)
    files: dict[str, str]  # name -> its file name in hub/schemas/
    versions: dict[str, list[dict]]  # name -> raw versions, v1 first (history/<name>/, or the current one alone)
    ids: dict[tuple[str, int], int]  # (name, version number) -> schema id
    problems: list[str]


def _no_duplicate_keys(pairs):
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice")
        seen[key] = value
    return seen


def read_schema_table(schema_dir: Path = SCHEMA_DIR) -> SchemaTable:
    """Read hub/schemas: the current .avsc files, their history versions and schema_ids.json.

    Problems (each naming the fix): a key of schema_ids.json that names no version file, a version
    without an id, an id used twice or out of range, a current schema that differs from its newest
    history version (it would be written under an id that means another schema)."""
    problems: list[str] = []
    current: dict[str, dict] = {}
    files: dict[str, str] = {}
    for path in sorted(schema_dir.glob("*.avsc")):
        raw = _load_avsc(path)
        current[raw["name"]] = raw
        files[raw["name"]] = path.name
    versions: dict[str, list[dict]] = {}
    for name, raw in current.items():
        folder = schema_dir / HISTORY / name
        found = sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:]) if p.stem[1:].isdigit() else 0) if folder.is_dir() else []
        if [p.stem for p in found] != [f"v{n}" for n in range(1, len(found) + 1)]:
            problems.append(f"{HISTORY}/{name}/: versions must be v1.avsc, v2.avsc, ... without gaps; found {[p.name for p in found]}")
            found = []
        versions[name] = [_load_avsc(p) for p in found] or [raw]
        if found and versions[name][-1] != raw:
            n = len(found)
            problems.append(f"{files[name]} differs from {HISTORY}/{name}/v{n}.avsc: add it as {HISTORY}/{name}/v{n + 1}.avsc "
                            f"with a new id \"{name}/v{n + 1}\" in schema_ids.json (or revert)")
    try:
        entries = json.loads((schema_dir / "schema_ids.json").read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:
        return SchemaTable(current, files, versions, {}, problems + [f"schema_ids.json: {exc}"])
    ids: dict[tuple[str, int], int] = {}
    owner: dict[int, str] = {}
    for key, schema_id in entries.items():
        if key.startswith("_"):
            continue
        name, _, version = key.partition("/")
        if not version:
            problems.append(f"schema_ids.json: {key!r} names no version: key each id by the version whose data carries it, "
                            f"e.g. \"{key}/v1\": {schema_id} (never move an id to another version)")
            continue
        if name not in versions or not re.fullmatch(r"v[1-9][0-9]*", version) or int(version[1:]) > len(versions[name]):
            problems.append(f"schema_ids.json: {key!r} names no schema version: keep it only for a file {HISTORY}/{name}/{version}.avsc "
                            "(a released version's file is never removed)")
            continue
        if not isinstance(schema_id, int) or isinstance(schema_id, bool) or not 0 < schema_id <= MAX_SCHEMA_ID:
            problems.append(f"schema_ids.json: {key!r} must be a whole number from 1 to {MAX_SCHEMA_ID}")
            continue
        if schema_id in owner:
            problems.append(f"schema_ids.json: {key!r} and {owner[schema_id]!r} share id {schema_id}: every version needs its own id; "
                            f"keep {schema_id} on the version whose data carries it and give the other the next unused id")
            continue
        owner[schema_id] = key
        ids[(name, int(version[1:]))] = schema_id
    next_id = max(owner, default=0) + 1
    for name, listed in versions.items():
        for number in range(1, len(listed) + 1):
            if (name, number) not in ids:
                problems.append(f"schema_ids.json: {name}/v{number} has no id: add \"{name}/v{number}\": {next_id} "
                                "(the next unused id; ids are never reused)")
                next_id += 1
    return SchemaTable(current, files, versions, ids, problems)


class Codec:
    """Encode and decode hub events. Parsed schemas are cached per codec.

    Every version of every schema has its own id (schema_ids.json "<Name>/v<N>"); the hub writes
    with its newest version's id and reads a record of any version through that version's schema
    into the current one (fields the writer lacked get their defaults)."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR):
        table = read_schema_table(schema_dir)
        if table.problems:
            raise RuntimeError("; ".join(table.problems))
        self._raw: dict[str, dict] = dict(table.current)
        self._parsed: dict[str, Any] = {name: fastavro.parse_schema(raw, named_schemas={}) for name, raw in self._raw.items()}
        self._ids: dict[str, int] = {name: table.ids[(name, len(listed))] for name, listed in table.versions.items()}  # written now
        self._versions: dict[int, Version] = {}
        for (name, number), schema_id in table.ids.items():
            raw = table.versions[name][number - 1]
            newest = number == len(table.versions[name])
            parsed = None if newest else fastavro.parse_schema(raw, named_schemas={})
            self._versions[schema_id] = Version(name, number, schema_id, raw, parsed)
        self._names: dict[int, str] = {schema_id: v.name for schema_id, v in self._versions.items()}
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

    def versions(self, name: str) -> list[Version]:
        """Every version of `name`, v1 first; the last is the one the hub writes."""
        self.schema_id(name)
        return sorted((v for v in self._versions.values() if v.name == name), key=lambda v: v.number)

    def version_of_id(self, schema_id: int) -> Version | None:
        return self._versions.get(schema_id)

    def earlier_ids(self, name: str) -> dict[int, int]:
        """version -> schema id of the earlier versions of `name` (data in Kafka may still use them)."""
        return {v.number: v.schema_id for v in self.versions(name)[:-1]}

    def schema_of_id(self, schema_id: int) -> tuple[str, dict] | None:
        """(name, raw schema) of the version `schema_id` stands for, or None for an unknown id."""
        version = self._versions.get(schema_id)
        return (version.name, version.raw) if version is not None else None

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
            writer = self._versions[schema_id].parsed
            if writer is None:
                record = fastavro.schemaless_reader(buf, self._parsed[name], None)
            else:  # written with an earlier version: resolved into the current schema (new fields get their defaults)
                record = fastavro.schemaless_reader(buf, writer, self._parsed[name])
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
