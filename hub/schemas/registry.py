"""The hub's schemas as a Confluent Schema Registry in READONLY mode (the REST API standard
serializers, deserializers and tools use).

Pure: `SchemaRegistry.handle(method, target, body)` answers (status, JSON body);
hub/adapters/registry_server.py serves it over HTTP. The hub owns its schemas (hub/schemas), so
the registry only serves them:

- every version of every schema (hub/schemas/history/<Name>/v<N>.avsc) with its own permanent id
  from schema_ids.json, the codec's, so a standard AvroDeserializer resolves exactly the id in each
  record, whichever version wrote it;
- subjects: `<topic>-value` (TopicNameStrategy) for the fixed topics and `fi.integrationhub.<Name>`
  (RecordNameStrategy) for every schema; a subject's version numbers are the schema's;
- lookup (POST /subjects/{s}) and registration (POST /subjects/{s}/versions) of a schema identical
  (canonical form, `canonical`) to one of the subject's versions answer that version and its id,
  as Confluent's registry does, so AvroSerializer works with its default auto.register.schemas;
  any other schema is refused with error 42205 (operation not permitted; mode READONLY);
- compatibility (POST /compatibility/subjects/{s}/versions[/{v}]) by the subject's mode
  (compatibility.json), with the rules of `hub schemas check`;
- config and mode: read only; PUT and DELETE are refused with 42205.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, unquote, urlsplit

import fastavro

from hub.schemas import topics
from hub.schemas.codec import Codec, Version, default_codec
from hub.schemas.compatibility import data_problems, load_modes, mode_of, rule_problems

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MODE = "READONLY"

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
OPERATION_NOT_PERMITTED = 42205
ID_DOES_NOT_MATCH = 42207
COMPATIBILITY_SAMPLES = 20  # generated records per version pair in a compatibility POST

HOW_TO_CHANGE = ("the hub's schemas change only in its repository (hub/schemas/history/<Name>/v<N>.avsc with a new id "
                 "in schema_ids.json); to put them in a registry of your own, run `hub schemas register --url URL`")


class SchemaRegistry:
    """A READONLY Confluent Schema Registry over the codec's schema versions and the topic table's subjects."""

    def __init__(self, codec: Codec | None = None, modes: dict[str, str] | None = None):
        self.codec = codec or default_codec()
        self.subjects = {s: n for s, n in topics.subjects().items() if n in self.codec.names}
        self.modes = modes or load_modes()
        self._canonical: dict[str, dict[str, Version]] = {}  # name -> canonical form -> version
        for name in self.codec.names:
            forms = self._canonical[name] = {}
            for version in self.codec.versions(name):
                forms.setdefault(canonical(version.raw), version)

    def schema_of_subject(self, subject: str) -> str | None:
        """The schema name of a subject: a listed one, or `<topic>-value` of a per-recipient topic
        (an open set, so not listed), so that a serializer's default TopicNameStrategy works on every topic."""
        name = self.subjects.get(subject)
        if name is None and subject.endswith("-value"):
            spec = topics.spec_for_topic(subject.removesuffix("-value"))
            name = spec.schema if spec is not None and spec.schema in self.codec.names else None
        return name

    def _identical(self, subject: str, name: str, schema) -> Version | None:
        """The version identical to `schema` among the schemas `subject` carries: its own, and for
        `<topic>-value` of a topic with more than one schema (hub.referrals.*: Referral and
        ReferralWithdrawn) the others of that topic too, so a default serializer gets each one's id."""
        form = canonical(schema)
        names = [name]
        if subject.endswith("-value"):
            topic = subject.removesuffix("-value")
            names += [spec.schema for spec in topics.TOPICS if spec.matches(topic) and spec.schema != name and spec.schema in self._canonical]
        return next((self._canonical[n][form] for n in names if form in self._canonical[n]), None)

    # -- dispatch ------------------------------------------------------------------------------
    def handle(self, method: str, target: str, body: bytes = b"") -> tuple[int, object]:
        """Answer `method` on `target` (a path with an optional query)."""
        split = urlsplit(target)
        path = unquote(split.path).rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        for verb, pattern, handler in self._routes:
            m = re.fullmatch(pattern, path)
            if m and verb == method:
                if method == "POST":
                    return handler(self, *m.groups(), body=body, query=query)
                return handler(self, *m.groups())
        if method in ("PUT", "DELETE", "POST", "PATCH") and path.split("/")[1] in _API:
            return _refused(f"{method} {path} is not permitted: the registry is in {MODE} mode; {HOW_TO_CHANGE}")
        if any(re.fullmatch(pattern, path) for _, pattern, _ in self._routes):
            return 405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def get(self, target: str) -> tuple[int, object]:
        return self.handle("GET", target)

    def post(self, target: str, body: bytes | str | dict) -> tuple[int, object]:
        if isinstance(body, dict):
            body = json.dumps(body)
        return self.handle("POST", target, body.encode() if isinstance(body, str) else body)

    # -- reading -------------------------------------------------------------------------------
    def _root(self):
        return 200, {}

    def _by_id(self, raw_id: str, schema_only: str | None = None):
        version = self._version_of_id(raw_id)
        if version is None:
            return _not_found(SCHEMA_NOT_FOUND, f"Schema {raw_id} not found")
        if schema_only:
            return 200, version.raw
        return 200, {"schema": _text(version.raw), "schemaType": "AVRO", "references": []}

    def _id_versions(self, raw_id: str):
        version = self._version_of_id(raw_id)
        if version is None:
            return _not_found(SCHEMA_NOT_FOUND, f"Schema {raw_id} not found")
        return 200, [{"subject": s, "version": version.number} for s, n in self.subjects.items() if n == version.name]

    def _id_subjects(self, raw_id: str):
        version = self._version_of_id(raw_id)
        if version is None:
            return _not_found(SCHEMA_NOT_FOUND, f"Schema {raw_id} not found")
        return 200, [s for s, n in self.subjects.items() if n == version.name]

    def _schemas(self):
        return 200, [self._described(s, v) for s, n in self.subjects.items() for v in self.codec.versions(n)]

    def _subjects(self):
        return 200, list(self.subjects)

    def _versions(self, subject: str):
        name = self.schema_of_subject(subject)
        if name is None:
            return _not_found(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return 200, [v.number for v in self.codec.versions(name)]

    def _version(self, subject: str, version: str, schema_only: str | None = None):
        found = self._subject_version(subject, version)
        if isinstance(found, tuple):
            return found
        if schema_only:
            return 200, found.raw
        return 200, self._described(subject, found)

    def _referenced_by(self, subject: str, version: str):
        found = self._subject_version(subject, version)
        return found if isinstance(found, tuple) else (200, [])

    def _config(self, subject: str | None = None):
        if subject is None:
            return 200, {"compatibilityLevel": self.modes["default"]}
        name = self.schema_of_subject(subject)
        if name is None:
            return _not_found(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return 200, {"compatibilityLevel": mode_of(name, self.modes)}

    def _mode(self, subject: str | None = None):
        if subject is not None and self.schema_of_subject(subject) is None:
            return _not_found(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return 200, {"mode": MODE}

    def _types(self):
        return 200, ["AVRO"]

    # -- schema in the body: lookup, register, compatibility -------------------------------------
    def _lookup(self, subject: str, *, body: bytes, query: dict):
        name = self.schema_of_subject(subject)
        if name is None:
            return _not_found(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        schema = _schema_of(body)
        if isinstance(schema, tuple):
            return schema
        version = self._identical(subject, name, schema)
        if version is None:
            return _not_found(SCHEMA_NOT_FOUND, f"Schema not found: no version of subject '{subject}' is this schema "
                              f"(GET /subjects/{subject}/versions lists them)")
        return 200, self._described(subject, version)

    def _register(self, subject: str, *, body: bytes, query: dict):
        """Registering a schema identical to one of the subject's versions answers its id, as Confluent does; else 42205."""
        name = self.schema_of_subject(subject)
        schema = _schema_of(body)
        if isinstance(schema, tuple):
            return schema
        if name is None:
            return _refused(f"Subject '{subject}' is not one of the hub's and the registry is in {MODE} mode: serialize "
                            "with the subject of the topic (<topic>-value) or fi.integrationhub.<Name> (GET /subjects lists them); "
                            + HOW_TO_CHANGE)
        version = self._identical(subject, name, schema)
        if version is None:
            newest = self.codec.versions(name)[-1]
            return _refused(f"Subject '{subject}' has no version identical to this schema and the registry is in {MODE} mode: "
                            f"serialize with one of its versions (the newest is version {newest.number}, "
                            f"GET /subjects/{subject}/versions/latest/schema); " + HOW_TO_CHANGE)
        wanted = json.loads(body).get("id") if body else None
        if wanted not in (None, -1, 0) and wanted != version.schema_id:
            return 422, {"error_code": ID_DOES_NOT_MATCH, "message": f"Schema already registered with id {version.schema_id} "
                         f"instead of input id {wanted}: the hub's ids are permanent (schema_ids.json)"}
        return 200, {"id": version.schema_id, "subject": subject, "version": version.number, "schemaType": "AVRO", "schema": _text(version.raw)}

    def _compatibility(self, subject: str, version: str | None = None, *, body: bytes, query: dict):
        name = self.schema_of_subject(subject)
        if name is None:
            return _not_found(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        schema = _schema_of(body)
        if isinstance(schema, tuple):
            return schema
        mode = mode_of(name, self.modes)
        versions = self.codec.versions(name)
        if version is None:  # against the versions the mode names: all of them when transitive, else the latest
            against = versions if mode.endswith("_TRANSITIVE") else versions[-1:]
        else:
            found = self._subject_version(subject, version)
            if isinstance(found, tuple):
                return found
            against = [found]
        messages = []
        for existing in against if mode != "NONE" else ():
            if mode.startswith(("BACKWARD", "FULL")):
                messages += [f"reading data of version {existing.number}: {m}" for m in _resolution_problems(schema, existing.raw)]
            if mode.startswith(("FORWARD", "FULL")):
                messages += [f"version {existing.number} reading data of this schema: {m}" for m in _resolution_problems(existing.raw, schema)]
        answer: dict = {"is_compatible": not messages}
        if query.get("verbose", "").lower() == "true":
            answer["messages"] = messages + ([f"compatibility level {mode}"] if messages else [])
        return 200, answer

    # -- helpers -------------------------------------------------------------------------------
    def _described(self, subject: str, version: Version) -> dict:
        return {"subject": subject, "version": version.number, "id": version.schema_id, "schemaType": "AVRO", "schema": _text(version.raw)}

    def _subject_version(self, subject: str, version: str) -> Version | tuple[int, dict]:
        name = self.schema_of_subject(subject)
        if name is None:
            return _not_found(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        versions = self.codec.versions(name)
        if version in ("latest", "-1"):
            return versions[-1]
        if not re.fullmatch(r"[0-9]+", version) or int(version) == 0 or int(version) > 2**31 - 1:
            return 422, {"error_code": INVALID_VERSION, "message": f"The specified version '{version}' is not a valid version id. "
                         "Allowed values are between [1, 2^31-1] and the string \"latest\""}
        number = int(version)
        if number > len(versions):
            return _not_found(VERSION_NOT_FOUND, f"Version {number} not found.")
        return versions[number - 1]

    def _version_of_id(self, raw_id: str) -> Version | None:
        return self.codec.version_of_id(int(raw_id)) if re.fullmatch(r"[0-9]{1,10}", raw_id) else None

    _routes = (
        ("GET", r"/", _root),
        ("GET", r"/schemas", _schemas),
        ("GET", r"/schemas/types", _types),
        ("GET", r"/schemas/ids/([^/]+)", _by_id),
        ("GET", r"/schemas/ids/([^/]+)/(schema)", _by_id),
        ("GET", r"/schemas/ids/([^/]+)/versions", _id_versions),
        ("GET", r"/schemas/ids/([^/]+)/subjects", _id_subjects),
        ("GET", r"/subjects", _subjects),
        ("GET", r"/subjects/([^/]+)/versions", _versions),
        ("GET", r"/subjects/([^/]+)/versions/([^/]+)", _version),
        ("GET", r"/subjects/([^/]+)/versions/([^/]+)/(schema)", _version),
        ("GET", r"/subjects/([^/]+)/versions/([^/]+)/referencedby", _referenced_by),
        ("GET", r"/config", _config),
        ("GET", r"/config/([^/]+)", _config),
        ("GET", r"/mode", _mode),
        ("GET", r"/mode/([^/]+)", _mode),
        ("POST", r"/subjects/([^/]+)", _lookup),
        ("POST", r"/subjects/([^/]+)/versions", _register),
        ("POST", r"/compatibility/subjects/([^/]+)/versions", _compatibility),
        ("POST", r"/compatibility/subjects/([^/]+)/versions/([^/]+)", _compatibility),
    )


def canonical(schema) -> str:
    """The canonical form two schemas are identical in: only what writing and resolution read
    (types, full names, fields, defaults, order, aliases, symbols, sizes, logical types), as JSON
    with sorted keys; "doc", other properties (e.g. avro.java.string) and JSON spelling
    ("string" or {"type": "string"}, a name with or without its namespace) do not count."""
    return json.dumps(_normal(schema, None), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_KEPT = {
    "record": {"type", "name", "fields", "aliases"},
    "error": {"type", "name", "fields", "aliases"},
    "enum": {"type", "name", "symbols", "default", "aliases"},
    "fixed": {"type", "name", "size", "aliases", "logicalType", "precision", "scale"},
    "array": {"type", "items"},
    "map": {"type", "values"},
}
_FIELD_KEPT = {"name", "type", "default", "order", "aliases"}
_LOGICAL_KEPT = {"type", "logicalType", "precision", "scale"}


def _normal(schema, namespace):
    if isinstance(schema, list):
        return [_normal(s, namespace) for s in schema]
    if isinstance(schema, str):
        if schema in _PRIMITIVES or "." in schema or not namespace:
            return schema
        return f"{namespace}.{schema}"
    if not isinstance(schema, dict):
        return schema
    t = schema.get("type")
    if isinstance(t, (dict, list)) or (isinstance(t, str) and t not in _PRIMITIVES and t not in _KEPT):
        return _normal(t, namespace)  # {"type": <a schema or a named type's name>}
    if t in ("record", "error", "enum", "fixed"):
        name = schema["name"]
        ns = name.rpartition(".")[0] if "." in name else schema.get("namespace", namespace)
        out = {k: v for k, v in schema.items() if k in _KEPT[t]}
        out["name"] = name if "." in name or not ns else f"{ns}.{name}"
        if "fields" in out:
            out["fields"] = [{**{k: v for k, v in f.items() if k in _FIELD_KEPT}, "type": _normal(f["type"], ns)} for f in out["fields"]]
        return out
    if t == "array":
        return {"type": "array", "items": _normal(schema["items"], namespace)}
    if t == "map":
        return {"type": "map", "values": _normal(schema["values"], namespace)}
    out = {k: v for k, v in schema.items() if k in _LOGICAL_KEPT}
    return out if "logicalType" in out else t


_API = frozenset({"subjects", "schemas", "config", "mode", "compatibility", "contexts", "exporters"})
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _resolution_problems(reader: dict, writer: dict) -> list[str]:
    return rule_problems(reader, writer) or data_problems(reader, writer, COMPATIBILITY_SAMPLES)


def _schema_of(body: bytes):
    """The Avro schema (parsed JSON) in a request body {"schema": "...", "schemaType": "AVRO"}, or an error answer."""
    try:
        request = json.loads(body or b"{}")
        text = request["schema"]
        kind = request.get("schemaType") or "AVRO"
        references = request.get("references") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        return 422, {"error_code": INVALID_SCHEMA, "message": 'Invalid schema: the body must be JSON {"schema": "<the Avro schema as a string>"}'}
    if kind != "AVRO":
        return 422, {"error_code": INVALID_SCHEMA, "message": f"Invalid schema: schemaType {kind} is not served; the hub's schemas are AVRO"}
    if references:
        return 422, {"error_code": INVALID_SCHEMA, "message": "Invalid schema: schema references are not used by the hub's schemas"}
    try:
        if not isinstance(text, str):
            raise TypeError("schema is not a string")
        schema = json.loads(text)
        fastavro.parse_schema(schema, named_schemas={})
    except Exception as exc:  # noqa: BLE001 - any parse failure makes it an invalid schema
        return 422, {"error_code": INVALID_SCHEMA, "message": f"Invalid schema: not an Avro schema ({type(exc).__name__})"}
    return schema


def _text(raw: dict) -> str:
    return json.dumps(raw, separators=(",", ":"), ensure_ascii=False)


def _not_found(code: int, message: str) -> tuple[int, dict]:
    return 404, {"error_code": code, "message": message}


def _refused(message: str) -> tuple[int, dict]:
    return 422, {"error_code": OPERATION_NOT_PERMITTED, "message": message}
