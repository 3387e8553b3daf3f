"""The hub's schemas as a read-only Confluent Schema Registry (the REST paths deserializers use).

Pure: `SchemaRegistry.get(path)` answers (status, JSON body); hub/adapters/registry_server.py
serves it over HTTP. Ids are the codec's (schema_ids.json), so a standard AvroDeserializer
resolves exactly the id the hub wrote into each record.

Versions: a subject's registered versions are the schema the hub writes now, numbered as its
newest file in hub/schemas/history/<Name>/ (PopulationChange is version 3), and the earlier
versions that were released with an id of their own (schema_ids.json "Name/vN": PopulationChange
version 2 is id 1), whose data may still be in Kafka. Versions never released (PopulationChange
version 1) are kept in the repository for the compatibility check only.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote, urlsplit

from hub.schemas import topics
from hub.schemas.codec import SCHEMA_DIR, Codec, default_codec
from hub.schemas.compatibility import load_history, load_modes, mode_of

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403


class SchemaRegistry:
    """Read-only registry over the codec's schemas and the topic table's subjects."""

    def __init__(self, codec: Codec | None = None):
        self.codec = codec or default_codec()
        self.subjects = topics.subjects()
        history = load_history(SCHEMA_DIR)
        self.version = {name: max(1, len(history.get(name, ()))) for name in self.codec.names}
        self.modes = load_modes(SCHEMA_DIR)

    def schema_text(self, name: str) -> str:
        return json.dumps(self.codec.raw_schema(name), separators=(",", ":"), ensure_ascii=False)

    # -- routes ------------------------------------------------------------------------------
    def get(self, target: str) -> tuple[int, object]:
        """Answer a GET of `target` (path with optional query, which is ignored)."""
        path = unquote(urlsplit(target).path).rstrip("/") or "/"
        for pattern, handler in self._routes:
            m = re.fullmatch(pattern, path)
            if m:
                return handler(self, *m.groups())
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def _root(self):
        return 200, {}

    def _by_id(self, raw_id: str, schema_only: str | None = None):
        found = self._schema_of_id(raw_id)
        if found is None:
            return _not_found(SCHEMA_NOT_FOUND, "Schema not found")
        if schema_only:
            return 200, found[1]
        return 200, {"schema": json.dumps(found[1], separators=(",", ":"), ensure_ascii=False), "schemaType": "AVRO", "references": []}

    def _id_versions(self, raw_id: str):
        name = self._name_of_id(raw_id)
        if name is None:
            return _not_found(SCHEMA_NOT_FOUND, "Schema not found")
        version = next(v for v, i in self._released(name).items() if i == int(raw_id))
        return 200, [{"subject": s, "version": version} for s, n in self.subjects.items() if n == name]

    def _id_subjects(self, raw_id: str):
        name = self._name_of_id(raw_id)
        if name is None:
            return _not_found(SCHEMA_NOT_FOUND, "Schema not found")
        return 200, [s for s, n in self.subjects.items() if n == name]

    def _subjects(self):
        return 200, list(self.subjects)

    def _versions(self, subject: str):
        name = self.subjects.get(subject)
        if name is None:
            return _not_found(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return 200, sorted(self._released(name))

    def _version(self, subject: str, version: str, schema_only: str | None = None):
        name = self.subjects.get(subject)
        if name is None:
            return _not_found(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        released = self._released(name)
        number = self.version[name] if version in ("latest", "-1") else int(version) if version.isdigit() else None
        if number not in released:
            return _not_found(VERSION_NOT_FOUND, f"Version {version} not found.")
        raw = self.codec.schema_of_id(released[number])[1]
        if schema_only:
            return 200, raw
        return 200, {"subject": subject, "version": number, "id": released[number], "schemaType": "AVRO",
                     "schema": json.dumps(raw, separators=(",", ":"), ensure_ascii=False)}

    def _released(self, name: str) -> dict[int, int]:
        """version -> schema id of every version of `name` with an id: the current one and the earlier released ones."""
        return {**self.codec.earlier_ids(name), self.version[name]: self.codec.schema_id(name)}

    def _config(self, subject: str | None = None):
        if subject is None:
            return 200, {"compatibilityLevel": self.modes["default"]}
        name = self.subjects.get(subject)
        if name is None:
            return _not_found(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return 200, {"compatibilityLevel": mode_of(name, self.modes)}

    def _types(self):
        return 200, ["AVRO"]

    def _name_of_id(self, raw_id: str) -> str | None:
        found = self._schema_of_id(raw_id)
        return found[0] if found is not None else None

    def _schema_of_id(self, raw_id: str) -> tuple[str, dict] | None:
        try:
            wanted = int(raw_id)
        except ValueError:
            return None
        return self.codec.schema_of_id(wanted)

    _routes = (
        (r"/", _root),
        (r"/schemas/ids/([^/]+)", _by_id),
        (r"/schemas/ids/([^/]+)/(schema)", _by_id),
        (r"/schemas/ids/([^/]+)/versions", _id_versions),
        (r"/schemas/ids/([^/]+)/subjects", _id_subjects),
        (r"/schemas/types", _types),
        (r"/subjects", _subjects),
        (r"/subjects/([^/]+)/versions", _versions),
        (r"/subjects/([^/]+)/versions/([^/]+)", _version),
        (r"/subjects/([^/]+)/versions/([^/]+)/(schema)", _version),
        (r"/config", _config),
        (r"/config/([^/]+)", _config),
    )


def _not_found(code: int, message: str) -> tuple[int, dict]:
    return 404, {"error_code": code, "message": message}
