"""Pure validation of a PopulationChange record (mapped from DVV data by `hub ingest dvv`, or
published by a municipal system and checked again by newcomer detection): identity codes, municipality codes, dates,
language and country codes. Returns problems with a stable reason code and a message a person can
act on; a message never contains an identity code (codes of municipalities and countries are not
personal data and are quoted so the operator can find them).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Collection

from hub.domain import codes, hetu
from hub.domain.clock import DEFAULT_CLOCK_SKEW, FutureDate, check_not_future

REASONS = ("invalid_person_id", "unknown_municipality", "future_date", "invalid_date", "invalid_language", "invalid_country", "malformed_record")
_MUNICIPALITY_SHAPE = re.compile(r"^\d{3}$")
_ALPHA2 = re.compile(r"^[A-Z]{2}$")
_LANGUAGE = re.compile(r"^([a-z]{2}|\d{2})$")


@dataclass(frozen=True)
class Problem:
    """What is wrong with a record: a reason code (dead-letter reason) and an actionable message."""

    reason: str
    message: str


def _safe(value: object) -> str:
    """A code value for a message: quoted only when too short to hold (part of) an identity code."""
    text = str(value)
    return repr(text) if isinstance(value, str) and len(text) <= 4 else f"<{len(text)} characters>" if isinstance(value, str) else f"<{type(value).__name__}>"


def validate(record: dict, *, now: dt.datetime, municipalities: Collection[str],
             skew: dt.timedelta = DEFAULT_CLOCK_SKEW) -> list[Problem]:
    """The problems of one mapped PopulationChange (empty when it may be published); `municipalities`:
    the valid home-municipality codes (`hub.routing.reference.municipality_codes()`).

    Messages name the field, not the data group: the person's attributes travel on every event of
    a muutos, so the same problem found on several events reads the same and is reported once.
    """
    problems: list[Problem] = []

    for field, what in (("person_id", "the person's identity code"), ("previous_person_id", "the replaced identity code")):
        value = record.get(field)
        if field == "previous_person_id" and value is None:
            continue
        try:
            hetu.validate(value)
        except hetu.InvalidHetu as exc:
            problems.append(
                Problem("invalid_person_id", f"{what} is not valid ({exc}); check the source record with DVV, it cannot be published under a wrong code")
            )

    for field, what in (("municipality_code", "home municipality"), ("previous_municipality_code", "previous home municipality")):
        value = record.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not _MUNICIPALITY_SHAPE.match(value):
            problems.append(Problem("unknown_municipality", f"{what} code {_safe(value)} is not a 3-digit municipality code"))
        elif value not in municipalities:
            problems.append(
                Problem(
                    "unknown_municipality",
                    f"{what} code {value!r} is not in the 2025 municipality list; if municipalities merged, update the reference data",
                )
            )

    today = now.astimezone(dt.timezone.utc).date()
    occurred = record.get("occurred_at")
    try:  # muutospv is the source's clock, `now` is ours: the hub's one skew policy
        check_not_future(occurred, now, what="change time muutospv", skew=skew)
    except FutureDate as exc:
        problems.append(Problem(exc.reason, exc.message))
    for field, what in (("move_date", "move date"), ("birth_date", "birth date"), ("death_date", "date of death"),
                        ("arrived_in_finland", "date of moving to Finland")):
        value = record.get(field)
        if isinstance(value, dt.date) and value > today:
            problems.append(Problem("future_date", f"{what} {value.isoformat()} is after today ({today.isoformat()}); check the record with DVV"))
    born, moved = record.get("birth_date"), record.get("move_date")
    if isinstance(born, dt.date) and isinstance(moved, dt.date) and moved < born:
        # routing would reject the newcomer (arrival before birth): stop it here, with DVV's original record
        problems.append(Problem("invalid_date", f"move date {moved.isoformat()} is before the birth date; check the record with DVV"))
    arrived = record.get("arrived_in_finland")
    if isinstance(born, dt.date) and isinstance(arrived, dt.date) and arrived < born:
        # the integration period would start before the person was born
        problems.append(Problem("invalid_date", f"date of moving to Finland {arrived.isoformat()} is before the birth date; check the record with DVV"))

    for field, what in (("mother_tongue", "mother tongue"), ("contact_language", "contact language")):
        value = record.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not _LANGUAGE.match(value) or value not in codes.languages():
            problems.append(
                Problem(
                    "invalid_language",
                    f"{what} code {_safe(value)} is not an ISO 639-1 code (or DVV's 98 / 99); check the record",
                )
            )

    countries = [("previous country", record.get("previous_country")), ("destination country", record.get("destination_country"))]
    countries += [("nationality", n) for n in record.get("nationalities") or []]
    for what, value in countries:
        if value is None:
            continue
        if not isinstance(value, str) or not _ALPHA2.match(value) or value not in codes.alpha2_countries():
            problems.append(
                Problem(
                    "invalid_country",
                    f"{what} code {_safe(value)} is not an ISO 3166-1 country code the hub knows; if DVV added a code, extend countries_iso3166.csv",
                )
            )
    return problems
