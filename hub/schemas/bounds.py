"""The declared bounds of every input the hub takes: sizes, counts and characters, in one table.

Checked at the edge, before any rule or database sees a value: by `Codec.decode` and
`Codec.from_jsonable` for the input schemas (every consumer of an input topic decodes there),
by `hub route` for each line, and by `hub ingest dvv` for each change and the events mapped from it.
A value over its bound is refused with the reason `out_of_bounds` and a message naming the field
and the bound, never the value (it may be an identity code).

Where a value ends in a database column the bound is that column's size (tests/unit/test_bounds.py
compares the two); elsewhere it is generous for real data and small enough that a record at every
bound still fits its record bound. Identity codes are bounded by length only: their exact shape is
checked by `hub.domain.hetu` (reason `invalid_person_id`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import accumulate

from hub.domain.errors import Rejected

REASON = "out_of_bounds"

KIB = 1024
MAX_JSON_DEPTH = 32  # nesting of objects and lists in any JSON the hub parses (a DVV page nests 8 deep)
MAX_ROUTE_LINE_BYTES = 64 * KIB  # one `hub route` input line (a Newcomer in JSON form)
MAX_DVV_CHANGE_BYTES = 64 * KIB  # one DVV change (muutos) as it stands in its page
MAX_DVV_DATA_GROUPS = 100  # data groups (tietoryhmät) of one DVV change; each can make an event
MAX_JSON_BYTES = 1024 * KIB  # a JSON document given to the codec (`hub publish FILE`)


class OutOfBounds(Rejected):
    """A value over its declared bound. `field` names where; the message never quotes the value."""

    def __init__(self, field: str, message: str):
        super().__init__(REASON, message)
        self.field = field


# -- the kinds of bound ---------------------------------------------------------------------------
_TEXT_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")  # NUL: PostgreSQL text cannot hold it; lone surrogates: not UTF-8


@dataclass(frozen=True, slots=True)
class Code:
    """An identifier or code: at most `max_chars` characters, printable ones only (no control,
    format or line-separator characters: no NUL, tab, newline, zero-width space)."""

    max_chars: int

    def ok(self, value: object) -> bool:
        # a wrong type is the schema's or the validator's to report
        return not isinstance(value, str) or (len(value) <= self.max_chars and value.isprintable())

    def check(self, value: object, path: str) -> None:
        if self.ok(value):
            return
        _length(value, self.max_chars, path)
        if not value.isprintable():
            bad = next(ch for ch in value if not ch.isprintable())
            raise OutOfBounds(path, f"{path} contains the character U+{ord(bad):04X}; identifiers and codes take printable characters only")


@dataclass(frozen=True, slots=True)
class Text:
    """Free text: at most `max_chars` characters, no NUL (tabs and line breaks are fine)."""

    max_chars: int

    def ok(self, value: object) -> bool:
        return not isinstance(value, str) or (len(value) <= self.max_chars and _TEXT_FORBIDDEN.search(value) is None)

    def check(self, value: object, path: str) -> None:
        if self.ok(value):
            return
        _length(value, self.max_chars, path)
        bad = _TEXT_FORBIDDEN.search(value)
        if bad is not None:
            raise OutOfBounds(path, f"{path} contains the character U+{ord(bad.group()):04X}, which the hub cannot store; remove it")


@dataclass(frozen=True, slots=True)
class IdentityCode:
    """A henkilötunnus: bounded by length here; its characters and checksum by hetu.validate."""

    max_chars: int = 32

    def ok(self, value: object) -> bool:
        return not isinstance(value, str) or len(value) <= self.max_chars

    def check(self, value: object, path: str) -> None:
        if not self.ok(value):
            _length(value, self.max_chars, path)


@dataclass(frozen=True, slots=True)
class Items:
    """A list of at most `max_items` items, each within `item` (a bound, or a dict of the fields
    of a record item)."""

    max_items: int
    item: "Code | Text | IdentityCode | dict"

    def ok(self, value: object) -> bool:
        if not isinstance(value, list):
            return True
        if len(value) > self.max_items:
            return False
        if isinstance(self.item, dict):
            return all(_fields_ok(self.item, v) for v in value if isinstance(v, dict))
        item_ok = self.item.ok
        return all(item_ok(v) for v in value)

    def check(self, value: object, path: str) -> None:
        if self.ok(value):
            return
        if len(value) > self.max_items:
            raise OutOfBounds(path, f"{path} has {len(value)} items; at most {self.max_items} are allowed")
        for i, v in enumerate(value):
            if isinstance(self.item, dict):
                if isinstance(v, dict):
                    _check_fields(self.item, v, f"{path}[{i}]")
            else:
                self.item.check(v, f"{path}[{i}]")


def _length(value: str, limit: int, path: str) -> None:
    if len(value) > limit:
        raise OutOfBounds(path, f"{path} has {len(value)} characters; at most {limit} are allowed")


@dataclass(frozen=True, slots=True)
class RecordBounds:
    """The bounds of one input schema: its record size on the wire and each field's bound."""

    max_bytes: int
    fields: dict


# -- the table ------------------------------------------------------------------------------------
# Sizes of database columns the values end in (hub/adapters/*.py, hub/adapters/consent_store.py):
EVENT_ID = Code(64)  # processed_events.event_id, referrals.newcomer_event_id, consent_events.event_id (an Avro uuid on the wire)
PERSON_KEY = Code(128)  # person_states.person_key, newcomers.person_key, referrals.person_key
AUTHORITY = Code(64)  # referral_events.reported_by, consent_events.recorded_by, disclosures.recipient
MUNICIPALITY = Code(3)  # newcomers.municipality
LANGUAGE = Code(8)  # newcomers.mother_tongue
COUNTRY = Code(8)
# newcomers.nationalities is VARCHAR(200), comma-separated: 20 × (8 + 1) - 1 = 179 characters at most
NATIONALITIES = Items(20, COUNTRY)
SOURCE = Code(128)
EMPLOYMENT_AREA = Code(8)  # the <code> of an employment_authority:<code> id (hub.schemas.topics: 1-8 characters)
PERSON_ID = IdentityCode()

_ENVELOPE = {"event_id": EVENT_ID, "source": SOURCE}

SCHEMAS: dict[str, RecordBounds] = {
    "PopulationChange": RecordBounds(16 * KIB, {
        **_ENVELOPE,
        "person_id": PERSON_ID,
        "previous_person_id": PERSON_ID,
        "municipality_code": MUNICIPALITY,
        "previous_municipality_code": MUNICIPALITY,
        "previous_country": COUNTRY,
        "destination_country": COUNTRY,
        "nationalities": NATIONALITIES,
        "mother_tongue": LANGUAGE,
        "contact_language": LANGUAGE,
        "dvv_batch_ref": Code(64),
        "data_group": Code(64),
    }),
    "Newcomer": RecordBounds(16 * KIB, {
        **_ENVELOPE,
        "person_key": PERSON_KEY,
        "person_id": PERSON_ID,
        "municipality_code": MUNICIPALITY,
        "previous_municipality_code": MUNICIPALITY,
        "service_needs": Items(16, Code(32)),
        "mother_tongue": LANGUAGE,
        "contact_language": LANGUAGE,
        "nationalities": NATIONALITIES,
        "detected_from": Code(64),
        "previous_person_key": PERSON_KEY,
    }),
    "AssessmentCompleted": RecordBounds(256 * KIB, {
        **_ENVELOPE,
        "assessment_id": Code(128),  # held_items.assessment_id, disclosures.assessment_id
        "person_key": Code(64),  # disclosures.person_key
        "person_id": PERSON_ID,
        "assessor": AUTHORITY,
        "plan_authority": AUTHORITY,
        "referral_id": Code(64),  # referrals.referral_id
        "education": Text(8000),
        "work_history": Text(8000),
        "language_skills": Items(32, {"language": LANGUAGE, "skill": Code(16), "cefr_level": Code(8)}),
        "literacy": Text(8000),
        "recommended_path": Text(8000),
        "service_needs": Items(32, Text(200)),
    }),
    "Consent": RecordBounds(16 * KIB, {
        **_ENVELOPE,
        "consent_id": Code(128),  # consent_events.consent_id
        "person_id": PERSON_ID,
        "purpose": Code(64),  # consent_events.purpose
        "data_categories": Items(16, Code(32)),
        "recipients": Items(32, AUTHORITY),
        "evidence": Text(1000),
        "recorded_by": AUTHORITY,
    }),
    "ReferralStatus": RecordBounds(8 * KIB, {
        **_ENVELOPE,
        "referral_id": Code(64),  # referrals.referral_id
        "authority": AUTHORITY,
        "reason": Text(1000),
    }),
    "JobseekerStatus": RecordBounds(4 * KIB, {
        **_ENVELOPE,
        "person_id": PERSON_ID,
        "employment_area": EMPLOYMENT_AREA,
    }),
    "ResidencePermit": RecordBounds(4 * KIB, {
        **_ENVELOPE,
        "person_id": PERSON_ID,
    }),
    "ServiceNeeds": RecordBounds(4 * KIB, {
        **_ENVELOPE,
        "person_id": PERSON_ID,
        "needs": Items(16, Code(32)),  # an enum's symbols; a list with each need once fits many times over
        "identified_by": AUTHORITY,
    }),
}


# -- checks ---------------------------------------------------------------------------------------
# A record is checked on every decode of an input topic: `ok` is the fast test of each bound, and
# only a value that fails it is looked at again (`check`) for the message.
def _fields_ok(fields: dict, record: dict) -> bool:
    get = record.get
    for name, bound in fields.items():
        if not bound.ok(get(name)):
            return False
    return True


def _check_fields(fields: dict, record: dict, prefix: str) -> None:
    for name, bound in fields.items():
        value = record.get(name)
        if not bound.ok(value):
            bound.check(value, f"{prefix}.{name}")


def check_record(schema: str, record: dict) -> None:
    """Raise OutOfBounds when a field of `record` (an Avro record or its JSON form) is over its
    bound. A schema without declared bounds (one the hub only writes) passes."""
    spec = SCHEMAS.get(schema)
    if spec is not None and isinstance(record, dict) and not _fields_ok(spec.fields, record):
        _check_fields(spec.fields, record, schema)


def check_size(schema: str, size: int) -> None:
    """Raise OutOfBounds when a record of `schema` of `size` bytes (wire format) is over its bound."""
    spec = SCHEMAS.get(schema)
    if spec is not None and size > spec.max_bytes:
        raise OutOfBounds(schema, f"a {schema} record of {size} bytes is over the {spec.max_bytes}-byte bound of its topic")


def check_text_size(text: str, limit: int, what: str) -> None:
    """Raise OutOfBounds when `text` takes more than `limit` bytes in UTF-8."""
    if len(text) * 4 <= limit:  # no need to encode: a character takes at most 4 bytes
        return
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise OutOfBounds(what, f"{what} of {size} bytes is over the bound of {limit} bytes")


_ESCAPE = re.compile(r"\\.", re.S)
_STRING = re.compile(r'"[^"]*"')
_BRACKET = re.compile(r"[\[\]{}]")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def check_json_depth(text: str, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise OutOfBounds when the JSON `text` nests objects and lists deeper than `limit`.

    A scan of the brackets outside strings (linear; no parsing), so that a parser never recurses
    into 1,000 levels (Python's json raises RecursionError there). Text that is not JSON is left to
    the parser to report."""
    if text.count("[") + text.count("{") <= limit:
        return
    outside = _STRING.sub("", _ESCAPE.sub("", text))
    deepest = max(accumulate(_DEPTH_STEP[b] for b in _BRACKET.findall(outside)), default=0)
    if deepest > limit:
        raise OutOfBounds(what, f"{what} nests JSON objects and lists {deepest} levels deep; at most {limit} are allowed")


def loads(text: str | bytes, what: str, *, max_bytes: int | None = None):
    """The one parse of external JSON: size and depth bounds first, then `json.loads`. Raises
    OutOfBounds, or ValueError (UnicodeDecodeError included) for text that is not JSON; never
    RecursionError. `what` names the input in messages, e.g. "the line"."""
    import json

    if isinstance(text, (bytes, bytearray)):
        if max_bytes is not None and len(text) > max_bytes:
            raise OutOfBounds(what, f"{what} of {len(text)} bytes is over the bound of {max_bytes} bytes")
        text = bytes(text).decode(json.detect_encoding(text), "surrogatepass")  # as json.loads decodes bytes
    elif max_bytes is not None:
        check_text_size(text, max_bytes, what)
    check_json_depth(text, what)
    try:
        return json.loads(text)
    except RecursionError:  # the depth scan is exact for JSON; this only guards a parser's own limit
        raise OutOfBounds(what, f"{what} nests JSON too deep to parse; at most {MAX_JSON_DEPTH} levels are allowed") from None
