"""`hub schemas register`: put every version of every schema of the hub into a Confluent-compatible
schema registry a deployment runs itself, under the hub's own ids, through confluent-kafka's
`SchemaRegistryClient` (TLS verified against certifi's authorities, or SSL_CERT_FILE / SSL_CERT_DIR).

The hub writes its ids (schema_ids.json) into every record, so a registry of the deployment's own
must hold each version under exactly that id, or its deserializers resolve a record's id to
another schema. Confluent's registry takes a given id (and version number) only for a subject in
IMPORT mode: the operator sets it, or `--import-mode` sets it per subject and sets READWRITE back.

Per subject, versions go in order (v1 first). Idempotent: a version already there under the
hub's id is left alone; one there under another id is a conflict, reported and not touched.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from dataclasses import dataclass, field

from hub.schemas import topics
from hub.schemas.codec import Codec, default_codec
from hub.schemas.compatibility import load_modes, mode_of

TIMEOUT = 15.0  # seconds per request
RETRIES = 2  # a request that failed on the way (refused, reset, timed out) is tried this many times more


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
    """The calls `register` makes, on confluent-kafka's SchemaRegistryClient; its errors (an answer
    or none) as RegistryError."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"--url must be an http:// or https:// address of the registry, got {url!r}")
        if parsed.username or parsed.password:
            raise ValueError("--url must not carry credentials (they would be on the command line): use --basic-auth-file")
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.url = url.rstrip("/")
        conf = {"url": self.url, "timeout": TIMEOUT, "max.retries": RETRIES, "retries.wait.ms": 250, "retries.max.wait.ms": 2000}
        if username:
            conf["basic.auth.user.info"] = f"{username}:{password or ''}"
        self.client = SchemaRegistryClient(conf)

    def close(self) -> None:
        self.client.close()

    def call(self, method, *args, **kwargs):
        """`method(*args, **kwargs)` of the client."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:  # the HTTP client under confluent-kafka's: httpx2 where installed, else httpx
            import httpx2 as httpx
        except ImportError:
            import httpx

        try:
            return method(*args, **kwargs)
        except SchemaRegistryError as exc:
            code = None if exc.error_code in (None, -1) else exc.error_code
            raise RegistryError(exc.http_status_code, code, exc.error_message) from None
        except httpx.TransportError as exc:  # refused, reset, timed out, TLS not verified
            raise RegistryError(0, None, f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # an answer that is no JSON: not a schema registry at this address
            raise RegistryError(0, None, f"{self.url} does not answer as a schema registry ({type(exc).__name__}); check --url") from None

    def lookup(self, item: Item) -> int | None:
        """The id the registry has this version under in `item.subject`, or None when it has not."""
        from confluent_kafka.schema_registry import Schema

        try:
            found = self.call(self.client.lookup_schema, item.subject, Schema(item.schema, "AVRO"), normalize_schemas=False)
        except RegistryError as exc:
            if exc.status == 404 and exc.code in (40401, 40403):
                return None
            raise
        return found.schema_id

    def register(self, item: Item) -> int | None:
        """Register the version under the hub's id and version number (the subject must be in IMPORT
        mode); the id the registry gave it."""
        return self.call(self.client.register_schema_full_response, item.subject, _given_id(item), normalize_schemas=False).schema_id

    def set_mode(self, subject: str, mode: str, force: bool = False) -> None:
        self.call(self.client.update_mode, subject, mode, force=force)

    def compatibility(self, subject: str) -> str | None:
        """The subject's compatibility level, or the registry's global one when the subject has none."""
        try:
            return self.call(self.client.get_compatibility, subject)
        except RegistryError as exc:
            if exc.status != 404:
                raise
        try:
            return self.call(self.client.get_compatibility)
        except RegistryError as exc:
            if exc.status != 404:
                raise
            return None

    def set_compatibility(self, subject: str, level: str) -> None:
        self.call(self.client.set_compatibility, subject, level)


def _given_id(item: Item):
    """The schema with the id and version number it is to be registered under."""
    return _given_id_schema()(item.schema, "AVRO", schema_id=item.schema_id, version=item.version)


@functools.cache
def _given_id_schema() -> type:
    """confluent-kafka's Schema, whose `to_dict` is the body its client posts to register, with the
    two fields of Confluent's register request that it leaves out (`id`, `version`: taken only in
    IMPORT mode). Made on first use: confluent-kafka is imported only by this command."""
    from attrs import define
    from confluent_kafka.schema_registry import Schema

    @define(frozen=True, cache_hash=True)
    class GivenId(Schema):
        schema_id: int | None = None
        version: int | None = None

        def to_dict(self):
            return {**super().to_dict(), "id": self.schema_id, "version": self.version}

    return GivenId


def register(url: str, *, dry_run: bool = False, import_mode: bool = False, set_compatibility: bool = True,
             username: str | None = None, password: str | None = None, items: list[Item] | None = None,
             progress=lambda line: None) -> Outcome:
    """Register every item not yet in the registry at `url`, subject by subject, versions in order.

    A subject's later versions are not attempted after one of its versions failed (they would be
    out of order). `dry_run` only looks up. `import_mode` puts each subject that needs a version in
    IMPORT mode first and back in READWRITE after. `set_compatibility` sets each subject's
    compatibility level to the hub's mode (compatibility.json) when it differs."""
    client = Client(url, username, password)
    try:
        return _register(client, dry_run, import_mode, set_compatibility, plan() if items is None else items, progress)
    finally:
        client.close()


def _register(client: Client, dry_run: bool, import_mode: bool, set_compatibility: bool, items: list[Item], progress) -> Outcome:
    modes = load_modes()
    outcome = Outcome()
    by_subject: dict[str, list[Item]] = {}
    for item in items:
        by_subject.setdefault(item.subject, []).append(item)
    for subject, versions in by_subject.items():
        missing: list[Item] = []
        try:
            for item in versions:
                found = client.lookup(item)
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
    if import_mode:
        client.set_mode(subject, "IMPORT", force=True)
    try:
        for item in missing:
            try:
                given = client.register(item)
            except RegistryError as exc:
                if exc.code == 42205 and not import_mode:
                    raise RegistryError(exc.status, exc.code, f"{exc.message} -- a schema goes in under the hub's id only in IMPORT mode: "
                                        "rerun with --import-mode, or put the subject in IMPORT mode yourself "
                                        f"(PUT /mode/{subject} {{\"mode\": \"IMPORT\"}})") from None
                raise RegistryError(exc.status, exc.code, f"registering version {item.version} (id {item.schema_id}): {exc.message}") from None
            if given != item.schema_id:
                raise RegistryError(200, None, f"registered version {item.version} but the registry gave it id {given}, "
                                    f"not the hub's {item.schema_id}: put the subject in IMPORT mode (--import-mode) and delete that version")
            outcome.registered.append(item)
            progress(f"registered {subject} version {item.version} as id {item.schema_id}")
    finally:
        if import_mode:
            client.set_mode(subject, "READWRITE")


def _set_compatibility(client: Client, subject: str, level: str, dry_run: bool, outcome: Outcome, progress) -> None:
    now = client.compatibility(subject)
    if now == level:
        return
    if not dry_run:
        client.set_compatibility(subject, level)
    outcome.config_set.append(subject)
    progress(f"{'would set' if dry_run else 'set'} {subject} compatibility {level}" + (f" (was {now})" if now else ""))
