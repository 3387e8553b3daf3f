"""`hub schemas register`: put every version of every schema of the hub into a Confluent-compatible
schema registry a deployment runs itself, under the hub's own ids.

The hub writes its ids (schema_ids.json) into every record, so a registry of the deployment's own
must hold each version under exactly that id, or its deserializers resolve a record's id to
another schema. Confluent's registry takes a given id (and version number) only for a subject in
IMPORT mode: the operator sets it, or `--import-mode` sets it per subject and sets READWRITE back.

Per subject, versions go in order (v1 first). Idempotent: a version already there under the
hub's id is left alone; one there under another id is a conflict, reported and not touched.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from hub.schemas import topics
from hub.schemas.codec import Codec, default_codec
from hub.schemas.compatibility import load_modes, mode_of

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
TIMEOUT = 15.0


@dataclass(frozen=True)
class Item:
    """One version of one schema under one subject, with the id the hub writes for it."""

    subject: str
    name: str  # the schema's name
    version: int
    schema_id: int
    schema: str  # the schema as JSON text


@dataclass
class Outcome:
    registered: list[Item] = field(default_factory=list)
    present: list[Item] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    config_set: list[str] = field(default_factory=list)


class RegistryError(Exception):
    """The registry answered an error (or could not be reached); `status` and `code` as it answered."""

    def __init__(self, status: int, code: int | None, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def __str__(self) -> str:
        if self.status == 0:  # no answer
            return self.message
        return f"HTTP {self.status}" + (f", error_code {self.code}" if self.code is not None else "") + f": {self.message}"


def plan(codec: Codec | None = None) -> list[Item]:
    """Every subject (topics.subjects()) with every version of its schema, in version order."""
    codec = codec or default_codec()
    items = []
    for subject, name in topics.subjects().items():
        if name not in codec.names:
            continue
        for version in codec.versions(name):
            text = json.dumps(version.raw, separators=(",", ":"), ensure_ascii=False)
            items.append(Item(subject, name, version.number, version.schema_id, text))
    return items


class Client:
    """A minimal Confluent Schema Registry REST client (urllib; TLS verified by default)."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"--url must be an http:// or https:// address of the registry, got {url!r}")
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                answer = json.loads(raw)
                raise RegistryError(exc.code, answer.get("error_code"), str(answer.get("message", "")))
            except (ValueError, AttributeError):
                raise RegistryError(exc.code, None, raw[:200].decode("utf-8", "replace") or exc.reason) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(0, None, f"cannot reach {self.url}: {reason}") from None


def _subject_path(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def lookup(client: Client, item: Item) -> int | None:
    """The id the registry has this version under in `item.subject`, or None when it has not."""
    try:
        found = client.call("POST", f"/subjects/{_subject_path(item.subject)}?normalize=false", {"schema": item.schema, "schemaType": "AVRO"})
    except RegistryError as exc:
        if exc.status == 404 and exc.code in (40401, 40403):
            return None
        raise
    return found.get("id")


def register(url: str, *, dry_run: bool = False, import_mode: bool = False, set_compatibility: bool = True,
             username: str | None = None, password: str | None = None, items: list[Item] | None = None,
             progress=lambda line: None) -> Outcome:
    """Register every item not yet in the registry at `url`, subject by subject, versions in order.

    A subject's later versions are not attempted after one of its versions failed (they would be
    out of order). `dry_run` only looks up. `import_mode` puts each subject that needs a version in
    IMPORT mode first and back in READWRITE after. `set_compatibility` sets each subject's
    compatibility level to the hub's mode (compatibility.json) when it differs."""
    client = Client(url, username, password)
    items = plan() if items is None else items
    modes = load_modes()
    outcome = Outcome()
    by_subject: dict[str, list[Item]] = {}
    for item in items:
        by_subject.setdefault(item.subject, []).append(item)
    for subject, versions in by_subject.items():
        missing: list[Item] = []
        try:
            for item in versions:
                found = lookup(client, item)
                if found is None:
                    missing.append(item)
                elif found == item.schema_id:
                    outcome.present.append(item)
                else:
                    raise RegistryError(409, None, f"version {item.version} is registered there under id {found}, but the hub's records "
                                        f"carry id {item.schema_id} for it (schema_ids.json): that registry would resolve them to another "
                                        "schema. Register the hub's schemas in a registry (or context) whose ids are free, "
                                        "or serve them with `hub registry`")
            if missing and not dry_run:
                _register_missing(client, subject, missing, import_mode, outcome, progress)
            elif missing:
                for item in missing:
                    progress(f"would register {subject} version {item.version} as id {item.schema_id}")
                    outcome.registered.append(item)
            if set_compatibility:
                _set_compatibility(client, subject, mode_of(versions[0].name, modes), dry_run, outcome, progress)
        except RegistryError as exc:
            outcome.errors.append(f"{subject}: {exc}")
            progress(f"error: {subject}: {exc}")
            if exc.status == 0:  # unreachable: the other subjects would fail alike
                break
    return outcome


def _register_missing(client: Client, subject: str, missing: list[Item], import_mode: bool, outcome: Outcome, progress) -> None:
    path = _subject_path(subject)
    if import_mode:
        client.call("PUT", f"/mode/{path}?force=true", {"mode": "IMPORT"})
    try:
        for item in missing:
            try:
                answer = client.call("POST", f"/subjects/{path}/versions?normalize=false",
                                     {"schema": item.schema, "schemaType": "AVRO", "id": item.schema_id, "version": item.version})
            except RegistryError as exc:
                if exc.code == 42205 and not import_mode:
                    raise RegistryError(exc.status, exc.code, f"{exc.message} -- a schema goes in under the hub's id only in IMPORT mode: "
                                        "rerun with --import-mode, or put the subject in IMPORT mode yourself "
                                        f"(PUT /mode/{subject} {{\"mode\": \"IMPORT\"}})") from None
                raise RegistryError(exc.status, exc.code, f"registering version {item.version} (id {item.schema_id}): {exc.message}") from None
            if answer.get("id") != item.schema_id:
                raise RegistryError(200, None, f"registered version {item.version} but the registry gave it id {answer.get('id')}, "
                                    f"not the hub's {item.schema_id}: put the subject in IMPORT mode (--import-mode) and delete that version")
            outcome.registered.append(item)
            progress(f"registered {subject} version {item.version} as id {item.schema_id}")
    finally:
        if import_mode:
            client.call("PUT", f"/mode/{path}", {"mode": "READWRITE"})


def _set_compatibility(client: Client, subject: str, level: str, dry_run: bool, outcome: Outcome, progress) -> None:
    path = _subject_path(subject)
    try:
        now = client.call("GET", f"/config/{path}?defaultToGlobal=true").get("compatibilityLevel")
    except RegistryError as exc:
        if exc.status != 404:
            raise
        now = None
    if now == level:
        return
    if not dry_run:
        client.call("PUT", f"/config/{path}", {"compatibility": level})
    outcome.config_set.append(subject)
    progress(f"{'would set' if dry_run else 'set'} {subject} compatibility {level}" + (f" (was {now})" if now else ""))
