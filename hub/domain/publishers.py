"""Who may publish what on the hub's input topics: record signatures and the identity fields.

A Kafka consumer cannot see the producer's authenticated principal, so each publisher signs its
records: header `hub-publisher` = its id (e.g. `municipality:091`), header `hub-signature` =
`v1,<base64 HMAC-SHA256 over ce_id + "." + value bytes>` (several space-separated signatures are
allowed, for key rotation). The hub checks the signature, then that the record's identity fields
(`source`, and `assessor` / `recorded_by` / a status's `authority` / the `identified_by` of service
needs / the `employment_area` of a jobseeker status) are ones the signer may use.
Pure: no I/O, no environment; `hub.adapters.publisher_keys` builds `Publishers` from a file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from hub.domain import hetu

PUBLISHER_HEADER = "hub-publisher"
SIGNATURE_HEADER = "hub-signature"
EVENT_ID_HEADER = "ce_id"
SCHEME = "v1"
ANY = "*"  # in `sources` / `authorities`: any value (for the hub itself only)
FORBIDDEN = "forbidden"  # the dead-letter reason of every refusal here

# identity fields of each input schema: (field, which allowance applies)
IDENTITY_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "PopulationChange": (("source", "sources"),),
    "AssessmentCompleted": (("source", "sources"), ("assessor", "authorities")),
    "Consent": (("source", "sources"), ("recorded_by", "authorities")),
    "ReferralStatus": (("source", "sources"), ("authority", "authorities")),
    "JobseekerStatus": (("source", "sources"), ("employment_area", "employment_areas")),
    "ResidencePermit": (("source", "sources"),),
    "ServiceNeeds": (("source", "sources"), ("identified_by", "authorities")),
}

EMPLOYMENT_AUTHORITY = "employment_authority"


def employment_authority_of(area: object) -> str | None:
    """The authority id of an employment area code (`08` -> `employment_authority:08`), None for a non-code."""
    return f"{EMPLOYMENT_AUTHORITY}:{area}" if isinstance(area, str) and area else None

_SAFE = re.compile(r"^[A-Za-z0-9_.:/@-]{1,80}$")


@dataclass(frozen=True)
class Publisher:
    """A publishing system: its id, its verification keys, and what it may publish as.

    `sources`: values it may put in `source`; `authorities`: values it may put in `assessor`,
    `recorded_by`, a status's `authority` and the `identified_by` of service needs. Both always
    include its own id. A jobseeker status's `employment_area` <code> is allowed when
    `employment_authority:<code>` is one of its authorities: its own id for the employment
    authority itself, so it reports for its own employment area only."""

    id: str
    keys: tuple[bytes, ...] = field(repr=False)
    sources: frozenset[str] = frozenset()
    authorities: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.keys or any(not k for k in self.keys):
            raise ValueError(f"publisher {self.id}: no signing key")
        object.__setattr__(self, "sources", frozenset(self.sources) | {self.id})
        object.__setattr__(self, "authorities", frozenset(self.authorities) | {self.id})

    def may_use(self, allowance: str, value: object) -> bool:
        allowed = self.sources if allowance == "sources" else self.authorities
        if allowance == "employment_areas":
            value = employment_authority_of(value)
        return ANY in allowed or (isinstance(value, str) and value in allowed)


@dataclass(frozen=True)
class Publishers:
    """Every known publisher by id (the identity configuration, `HUB_PUBLISHERS`)."""

    by_id: Mapping[str, Publisher]

    @classmethod
    def of(cls, publishers: Iterable[Publisher]) -> "Publishers":
        by_id: dict[str, Publisher] = {}
        for p in publishers:
            if p.id in by_id:
                raise ValueError(f"publisher {p.id} is listed twice")
            by_id[p.id] = p
        return cls(by_id)

    def get(self, publisher_id: str) -> Publisher | None:
        return self.by_id.get(publisher_id)


@dataclass(frozen=True)
class Verdict:
    """The answer for one record: allowed (with the publisher) or refused (reason + message)."""

    allowed: bool
    publisher: str | None = None
    reason: str | None = None
    message: str | None = None


def _refuse(message: str, publisher: str | None = None) -> Verdict:
    # values quoted here came from the record: never let an identity code through
    return Verdict(False, publisher, FORBIDDEN, hetu.scrub(message))


def shown(value: object) -> str:
    """A header or field value fit for a dead-letter message (bounded, no identity code)."""
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else repr(value)
    if not _SAFE.match(text) or hetu.PATTERN.search(text):
        return "(a value that is not an id)"
    return repr(text)


def signature(key: bytes, event_id: str, value: bytes) -> str:
    """The `hub-signature` header value of a record signed with `key`."""
    mac = hmac.new(key, event_id.encode() + b"." + bytes(value), hashlib.sha256).digest()
    return f"{SCHEME},{base64.b64encode(mac).decode()}"


def sign_headers(headers: Sequence[tuple[str, bytes]], value: bytes, publisher_id: str, key: bytes) -> list[tuple[str, bytes]]:
    """`headers` (which must hold `ce_id`) with this publisher's id and signature, replacing any old ones."""
    event_id = header(headers, EVENT_ID_HEADER)
    if not event_id:
        raise ValueError("cannot sign a record without a ce_id header")
    kept = [(k, v) for k, v in headers if k not in (PUBLISHER_HEADER, SIGNATURE_HEADER)]
    return kept + [(PUBLISHER_HEADER, publisher_id.encode()), (SIGNATURE_HEADER, signature(key, event_id, value).encode())]


def header(headers: Mapping | Sequence | None, name: str) -> str | None:
    """One header's value as text (the last one if repeated); None when absent or not UTF-8."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found = None
    for k, v in pairs:
        k = k.decode() if isinstance(k, bytes) else k
        if k == name:
            found = v
    if found is None:
        return None
    if isinstance(found, (bytes, bytearray, memoryview)):
        try:
            return bytes(found).decode()
        except UnicodeDecodeError:
            return None
    return str(found)


def authenticate(headers, value: bytes, publishers: Publishers) -> Verdict:
    """Who signed this record: allowed with the publisher's id, or refused (unsigned, unknown, bad)."""
    who = header(headers, PUBLISHER_HEADER)
    sig = header(headers, SIGNATURE_HEADER)
    if not who or not sig:
        return _refuse(f"the record is not signed (headers {PUBLISHER_HEADER} and {SIGNATURE_HEADER} are required); the publisher must sign it")
    publisher = publishers.get(who)
    if publisher is None:
        return _refuse(f"publisher {shown(who)} is not a known publisher; add it to the publishers file or fix the {PUBLISHER_HEADER} header")
    event_id = header(headers, EVENT_ID_HEADER)
    if not event_id:
        return _refuse(f"publisher {who!r}: the record has no ce_id header, which the signature covers", who)
    offered = {s for s in sig.split() if s.startswith(SCHEME + ",")}
    expected = {signature(k, event_id, value or b"") for k in publisher.keys}
    if not any(hmac.compare_digest(o, e) for o in offered for e in expected):
        return _refuse(f"publisher {who!r}: the {SIGNATURE_HEADER} does not verify with its key (wrong key, or the record was altered)", who)
    return Verdict(True, who)


def authorize(publisher: Publisher, name: str, record: Mapping, event_id: str | None = None) -> Verdict:
    """Whether the authenticated `publisher` may publish this decoded record (its identity fields)."""
    if event_id is not None and str(record.get("event_id")) != event_id:
        return _refuse(f"publisher {publisher.id!r}: the record's event_id differs from the signed ce_id header", publisher.id)
    wrong = [f"{field_name}={shown(record.get(field_name))}" for field_name, allowance in IDENTITY_FIELDS.get(name, ())
             if not publisher.may_use(allowance, record.get(field_name))]
    if wrong:
        return _refuse(f"publisher {publisher.id!r} may not publish a {name} with {', '.join(wrong)}", publisher.id)
    return Verdict(True, publisher.id)


def decide(headers, value: bytes, name: str | None, record: Mapping | None, publishers: Publishers) -> Verdict:
    """The whole check of one record on an input topic. `name`/`record` are the decoded record, or
    None when it did not decode (then only the signature is checked; the codec reports the rest)."""
    verdict = authenticate(headers, value, publishers)
    if not verdict.allowed or record is None or name is None:
        return verdict
    return authorize(publishers.by_id[verdict.publisher], name, record, header(headers, EVENT_ID_HEADER))
