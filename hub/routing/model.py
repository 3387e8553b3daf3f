"""Plain types of the routing: what the rules look at (RoutingInput) and what they decide (Decision).

`RoutingInput.from_record` accepts both the JSON form of a Newcomer (strings for dates, as `hub.schemas.codec` writes it)
and the decoded Avro record (date/datetime objects). Any field may be missing or null: unknown.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from hub.domain import hetu
from hub.domain.errors import Rejected

FINLAND = ZoneInfo("Europe/Helsinki")


def finnish_day(when: dt.datetime) -> dt.date:
    """The day in Finland of a moment (a naive one is UTC). OverflowError at the ends of the datetime range."""
    aware = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    return aware.astimezone(FINLAND).date()


RESIDENCE_BASES = ("work", "study", "family", "international_protection", "temporary_protection", "eu_citizen", "returnee", "other", "unknown")
LABOUR_FORCE_STATUSES = ("employed", "unemployed_job_seeker", "student", "home_parent", "retired", "outside_labour_force", "unknown")
# needs identified in guidance (the ServiceNeeds input): health, social, disability, child welfare,
# literacy (reading and writing) and mental health
SERVICE_NEEDS = ("health", "social", "disability", "child_welfare", "literacy", "mental_health")
PURPOSES = ("outreach", "initial_assessment", "social_and_health_services", "unaccompanied_minor", "special_services")
CHANGES = ("arrived", "moved", "circumstances")
UNKNOWN = "unknown"

_MUNICIPALITY_CODE = re.compile(r"^\d{3}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


class InputError(Rejected):
    """A newcomer that cannot be routed. `reason` is stable (output and dead letters); no personal data."""


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """The facts of one newcomer the rules may use. None means unknown."""

    event_id: str | None = None
    person_key: str | None = None
    change: str = "arrived"
    occurred_at: dt.datetime | None = None
    municipality_code: str | None = None
    previous_municipality_code: str | None = None
    birth_date: dt.date | None = None
    arrival_date: dt.date | None = None
    # the first residence permit or registered right of residence (Migri): the start of the
    # integration period (kotoutumisaika), which time limits count from when it is known
    integration_start: dt.date | None = None
    residence_basis: str = UNKNOWN
    labour_force_status: str = UNKNOWN
    guardian_in_finland: bool | None = None
    service_needs: tuple[str, ...] = ()
    mother_tongue: str | None = None
    contact_language: str | None = None
    nationalities: tuple[str, ...] = ()
    turvakielto: bool = False
    # after an identity-code correction: the person key of the replaced code, whose open referrals
    # are withdrawn (the person is routed under `person_key` from then on)
    previous_person_key: str | None = None
    # why this update was routed, in words for the recipients of what it supersedes (e.g. "registration
    # as a jobseeker ended"); set by the caller, not read from the Newcomer
    change_reason: str | None = None

    @property
    def reference_date(self) -> dt.date | None:
        """The day (Finnish time) against which ages and time limits are evaluated."""
        return None if self.occurred_at is None else finnish_day(self.occurred_at)

    @property
    def period_start(self) -> dt.date | None:
        """Where the integration period starts: the first permit or registration when known, else the arrival."""
        return self.integration_start or self.arrival_date

    @property
    def period_start_source(self) -> str:
        """Which date `period_start` is, in words (for the decision trace)."""
        if self.integration_start is not None:
            return "the first residence permit or registration"
        if self.arrival_date is not None:
            return "the arrival (no first-permit date known)"
        return "unknown (no first-permit date, no arrival date)"

    @property
    def language(self) -> str | None:
        """The language to address the person in: the contact language, else the mother tongue."""
        return self.contact_language or self.mother_tongue

    @classmethod
    def from_record(cls, obj: object) -> "RoutingInput":
        """From a Newcomer in JSON form or as a decoded Avro dict. Raises InputError."""
        if not isinstance(obj, dict):
            raise InputError("invalid_input", f"a newcomer must be a JSON object, got {type(obj).__name__}")
        event_id = obj.get("event_id")
        occurred = timestamp_field(obj, "occurred_at")
        birth = date_field(obj, "birth_date")
        if obj.get("person_id") is not None:
            # an invalid code must not travel on in a referral; the code carries the birth date.
            # Never echo the code itself.
            try:
                hetu.validate(obj["person_id"])
                born = hetu.birth_date(obj["person_id"])
            except (hetu.InvalidHetu, TypeError, ValueError):
                raise InputError("invalid_person_id", "person_id is not a valid henkilötunnus (checksum, date or shape); fix it or leave it out") from None
            birth = born if birth is None else birth
        arrival = date_field(obj, "arrival_date")
        result = cls(
            event_id=None if event_id is None else str(event_id),
            person_key=text_field(obj, "person_key"),
            change=_enum(obj, "change", CHANGES, default="arrived"),
            occurred_at=occurred,
            municipality_code=_municipality(obj, "municipality_code"),
            previous_municipality_code=_municipality(obj, "previous_municipality_code"),
            birth_date=birth,
            arrival_date=arrival,
            integration_start=date_field(obj, "integration_start"),
            residence_basis=_enum(obj, "residence_basis", RESIDENCE_BASES),
            labour_force_status=_enum(obj, "labour_force_status", LABOUR_FORCE_STATUSES),
            guardian_in_finland=_bool(obj, "guardian_in_finland"),
            service_needs=_needs(obj),
            mother_tongue=_language(obj, "mother_tongue"),
            contact_language=_language(obj, "contact_language"),
            nationalities=tuple(_list_of_text(obj, "nationalities")),
            turvakielto=bool(_bool(obj, "turvakielto") or False),
            previous_person_key=text_field(obj, "previous_person_key"),
        )
        try:
            day = result.reference_date
        except OverflowError:  # e.g. 9999-12-31T23:00Z cannot be moved to Finnish time
            raise InputError("invalid_date", "occurred_at is outside the range the rules can evaluate; check it") from None
        if day is not None and birth is not None and birth > day:
            raise InputError("invalid_field", f"birth_date {birth.isoformat()} is after occurred_at ({day.isoformat()}); check both")
        if day is not None and arrival is not None and arrival > day:
            raise InputError("invalid_field", f"arrival_date {arrival.isoformat()} is after occurred_at ({day.isoformat()}); check both")
        if birth is not None and arrival is not None and arrival < birth:
            raise InputError("invalid_field", "arrival_date is before birth_date; check both")
        return result


@dataclass(frozen=True, slots=True)
class Decision:
    """One referral decision: which authority gets the newcomer, for what, by which rule, by when."""

    authority: str
    purpose: str
    reasons: tuple[str, ...]
    rule: str
    rules_version: str
    due: dt.date | None = None
    citation: str = ""
    trace: tuple[str, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict:
        """The JSON form (as `hub route` prints a decision)."""
        return {
            "authority": self.authority,
            "purpose": self.purpose,
            "reasons": list(self.reasons),
            "rule": self.rule,
            "rules_version": self.rules_version,
            "due": self.due.isoformat() if self.due else None,
        }


# -- field parsers: each names the field and the fix, never the value of person_id -----------


def text_field(obj: dict, name: str, record: str = "") -> str | None:
    """`obj[name]` as stripped text, None for null or blank. `record` ("RoutingFact ") leads the field's name in the error."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError("invalid_field", f"{record}{name} must be text or null")
    return value.strip() or None


def _enum(obj: dict, name: str, allowed: tuple[str, ...], default: str = UNKNOWN) -> str:
    value = obj.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise InputError("invalid_field", f"{name} must be one of {', '.join(allowed)} (or null for unknown)")
    return value


def _bool(obj: dict, name: str) -> bool | None:
    value = obj.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise InputError("invalid_field", f"{name} must be true, false or null (unknown)")


def date_field(obj: dict, name: str, record: str = "") -> dt.date | None:
    """`obj[name]` as a date (a datetime's date; text only as YYYY-MM-DD), None for null."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and len(value) == 10:  # fromisoformat alone would accept 20250301
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise InputError("invalid_date", f"{record}{name} must be a real date YYYY-MM-DD or null")


def timestamp_field(obj: dict, name: str, record: str = "") -> dt.datetime | None:
    """`obj[name]` as an aware datetime (naive: UTC; text as RFC 3339 with offset), None for null."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, str):
        from hub.schemas.codec import parse_timestamp

        try:
            return parse_timestamp(value)
        except ValueError:
            pass
    raise InputError("invalid_date", f"{record}{name} must be an RFC 3339 timestamp with offset, e.g. 2025-03-01T09:00:00Z, or null")


def _municipality(obj: dict, name: str) -> str | None:
    value = text_field(obj, name)
    if value is not None and not _MUNICIPALITY_CODE.match(value):
        raise InputError("invalid_field", f"{name} must be a 3-digit municipality code such as 091 (keep the leading zeros)")
    return value


# DVV's own language codes: 98 sign language (kept: the person needs a sign language interpreter),
# 99 unknown (the same as null)
SIGN_LANGUAGE = "98"
_DVV_LANGUAGES = {SIGN_LANGUAGE: SIGN_LANGUAGE, "99": None}


def _language(obj: dict, name: str) -> str | None:
    value = text_field(obj, name)
    if value is not None and value in _DVV_LANGUAGES:
        return _DVV_LANGUAGES[value]
    if value is not None and not _LANGUAGE.match(value.lower()):
        raise InputError("invalid_field", f"{name} must be an ISO 639 language code such as fi, sv, ar, DVV's 98 or 99, or null")
    return None if value is None else value.lower()


def _list_of_text(obj: dict, name: str) -> list[str]:
    value = obj.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError("invalid_field", f"{name} must be a list of text or null")
    return value


def _needs(obj: dict) -> tuple[str, ...]:
    needs = _list_of_text(obj, "service_needs")
    bad = [n for n in needs if n not in SERVICE_NEEDS]
    if bad:
        raise InputError("invalid_field", f"service_needs may contain only {', '.join(SERVICE_NEEDS)}")
    return tuple(dict.fromkeys(needs))
