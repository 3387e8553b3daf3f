"""A register snapshot for the go-live backfill: saved responses of DVV's base-data service
(`POST /api/v1/perustiedot`: `{"perustiedot": [{"henkilotunnus", "tietoryhmat": [...]}, ...],
"ajanTasalla": ...}`, optionally with the extraction day `poimintapv`), one response per file or
JSON lines. Each person becomes ONE PopulationChange of change type `resident`: the person's
register data on the day the snapshot was taken, not a change. Newcomer detection turns the
residents still inside the integration period into newcomers, each once (docs/domain.md,
"Movers and the go-live snapshot").

Pure: text in, pages and records out. The data groups are read as in the change data
(hub/adapters/dvv/mapping.py); a base-data group has no `muutosattribuutti`, so each is current data.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Iterator

from hub.adapters.dvv import mapping
from hub.adapters.dvv.page import _DECODER, MalformedPage, Page, _changes_with_spans, _line_of, _skip
from hub.domain import hetu
from hub.domain.clock import DEFAULT_CLOCK_SKEW
from hub.domain.population_change import validate
from hub.routing.reference import municipality_codes
from hub.schemas import bounds

PERSONS = "perustiedot"
DATA_GROUP = "KOTIKUNTA"  # the group a resident record stands on: the home municipality


class SnapshotDateMissing(Exception):
    """A snapshot response without `poimintapv`, and no day given for the run."""


@dataclass(frozen=True)
class SnapshotPage(Page):
    """A `perustiedot` response: its persons (as `changes`) and the day it was extracted, if it says."""

    taken_on: dt.date | None = None


def parse_snapshot_page(text: str, origin: str = "", first_line: int = 1) -> SnapshotPage:
    """Parse one `perustiedot` response. Raises MalformedPage naming the place and the field."""
    loc = f"{origin}:{first_line}" if origin else f"line {first_line}"
    pos = _skip(text, 0)
    if pos >= len(text) or text[pos] != "{":
        raise MalformedPage(loc, "a perustiedot response must be a JSON object ({...})", raw=text)
    try:
        bounds.check_json_depth(text, "the response")
    except bounds.OutOfBounds as exc:
        raise MalformedPage(loc, exc.message, raw=text, reason=exc.reason) from None
    try:
        whole, end = _DECODER.raw_decode(text, pos)
    except ValueError as exc:
        at = _line_of(text, getattr(exc, "pos", pos), first_line)
        raise MalformedPage(f"{origin}:{at}" if origin else f"line {at}", f"not valid JSON: {getattr(exc, 'msg', 'undecodable')}", raw=text) from None
    if _skip(text, end) != len(text):
        raise MalformedPage(loc, "extra text after the JSON object", raw=text)
    if not isinstance(whole.get(PERSONS), list):
        hint = "; this is a muutokset response: ingest it without --snapshot" if "muutokset" in whole else ""
        raise MalformedPage(loc, f"the response has no '{PERSONS}' list; is this a /perustiedot response?{hint}", raw=text)
    taken_on = None
    if whole.get("poimintapv") is not None:
        try:
            taken_on = mapping.parse_date(whole["poimintapv"], "poimintapv")
        except mapping.MalformedMuutos as exc:
            raise MalformedPage(loc, exc.message, raw=text) from None
    changes = tuple(_changes_with_spans(text, pos, whole[PERSONS], first_line, key_name=PERSONS))
    return SnapshotPage(next_key=0, up_to_date=bool(whole.get("ajanTasalla", True)), changes=changes, origin=origin, text=text, taken_on=taken_on)


def read_snapshot_files(paths) -> Iterator[SnapshotPage | MalformedPage]:
    """The pages of saved `perustiedot` responses, file by file (a malformed one in place, as its error)."""
    from hub.adapters.dvv.ingest import read_files

    return read_files(paths, parse=parse_snapshot_page)


def resident_event_id(taken_on: dt.date, person_key: str) -> str:
    """Derived from the snapshot's day and the pseudonymous key: the same snapshot ingested again
    gives the same ids, which detection has seen already."""
    return str(uuid.uuid5(mapping.NAMESPACE, f"dvv-snapshot|{taken_on.isoformat()}|{person_key}"))


def map_resident(person: object, *, secret: str, taken_on: dt.date, recorded_at: dt.datetime, batch_ref: str | None = None) -> dict | None:
    """The `resident` PopulationChange of one person of a snapshot, or None for a person the hub
    cannot address (deceased, or no home municipality, also when it is masked for turvakielto).
    Raises MalformedMuutos when the person does not have the documented shape."""
    if not isinstance(person, dict):
        raise mapping.MalformedMuutos("a person of perustiedot must be a JSON object with henkilotunnus and tietoryhmat")
    person_id = person.get("henkilotunnus")
    if not isinstance(person_id, str) or not person_id:
        raise mapping.MalformedMuutos("the person has no henkilotunnus (text)")
    groups = person.get("tietoryhmat")
    if not isinstance(groups, list):
        raise mapping.MalformedMuutos("tietoryhmat must be a list of data groups")
    if len(groups) > bounds.MAX_DVV_DATA_GROUPS:
        raise bounds.OutOfBounds("tietoryhmat", f"tietoryhmat has {len(groups)} data groups; at most {bounds.MAX_DVV_DATA_GROUPS} are allowed")
    current = []
    for i, g in enumerate(groups):
        if not isinstance(g, dict) or not isinstance(g.get("tietoryhma"), str) or not g["tietoryhma"]:
            raise mapping.MalformedMuutos(f"tietoryhmat[{i}] must be an object with a 'tietoryhma' name")
        current.append(g if "muutosattribuutti" in g else {**g, "muutosattribuutti": "LISATIETO"})  # base data: all current
    if any(g["tietoryhma"] in ("KUOLINPAIVA", "KUOLLEEKSIJULISTAMISPAIVA") and g.get("kuollut") is True for g in current):
        return None
    p = mapping._collect(current, person_id, taken_on)
    if p.municipality_code is None:
        return None
    occurred_at = dt.datetime.combine(taken_on, dt.time(0, 0), dt.timezone.utc)
    return {
        "event_id": resident_event_id(taken_on, hetu.person_key(person_id, secret)),
        "occurred_at": occurred_at,
        "recorded_at": recorded_at,
        "source": mapping.SOURCE,
        "schema_version": 3,
        "person_id": person_id,
        "change_type": "resident",
        "municipality_code": p.municipality_code,
        "previous_municipality_code": p.previous_municipality_code,
        "previous_country": None,
        "destination_country": None,
        "nationalities": list(p.nationalities or []),
        "mother_tongue": p.mother_tongue,
        "birth_date": p.birth_date,
        "move_date": p.move_date,
        "contact_language": p.contact_language,
        "dvv_batch_ref": batch_ref,
        "previous_person_id": None,
        "guardian_in_finland": p.guardian_in_finland,
        "turvakielto": p.turvakielto,
        "data_group": DATA_GROUP,
        "death_date": None,
        "arrived_in_finland": p.arrived_in_finland,
    }


def snapshot_processor(taken_on: dt.date | None):
    """A page processor for `hub.adapters.dvv.ingest.ingest` (as `process_page`): each person of a
    snapshot page to its `resident` record, or to dead letters with the reason. `taken_on`: the day
    the snapshot was extracted, for responses without `poimintapv`."""
    from hub.adapters.dvv.ingest import BadRecord, PageOutcome, kafka_key

    def process(page: SnapshotPage, *, secret: str, now: dt.datetime, municipalities: frozenset[str] | None = None,
                skew: dt.timedelta = DEFAULT_CLOCK_SKEW) -> PageOutcome:
        day = page.taken_on or taken_on
        if day is None:
            raise SnapshotDateMissing(f"{page.origin or 'the snapshot'}: the response has no poimintapv (the day it was extracted); "
                                      "give it with --taken-on YYYY-MM-DD")
        known = municipality_codes() if municipalities is None else municipalities
        events, bad = [], []
        batch_ref = f"snapshot {day.isoformat()}"
        for change in page.changes:
            location = page.location(change)
            original = change.text.encode("utf-8")
            try:
                if len(original) > bounds.MAX_DVV_CHANGE_BYTES:
                    raise bounds.OutOfBounds("person", f"the person of {len(original)} bytes is over the bound of {bounds.MAX_DVV_CHANGE_BYTES} bytes")
                record = map_resident(change.obj, secret=secret, taken_on=day, recorded_at=now, batch_ref=batch_ref)
                if record is None:
                    continue
                bounds.check_record("PopulationChange", record)
                problems = validate(record, now=now, municipalities=known, skew=skew)
            except bounds.OutOfBounds as exc:
                bad.append(BadRecord(original, location, exc.reason, f"{exc.message}; check the person's base data with DVV"))
                continue
            except mapping.MalformedMuutos as exc:
                bad.append(BadRecord(original, location, exc.reason, f"{hetu.scrub(str(exc))}; fix the record or ask DVV"))
                continue
            except Exception as exc:  # a shape nobody foresaw must not stop the backfill; values stay out of the message
                bad.append(BadRecord(original, location, "malformed_record", f"the person could not be mapped ({type(exc).__name__}); report it with its location"))
                continue
            if problems:
                unique = list(dict.fromkeys(p.message for p in problems))
                bad.append(BadRecord(original, location, problems[0].reason, hetu.scrub("; ".join(unique))))
                continue
            events.append((record, kafka_key(record, secret)))
        return PageOutcome(tuple(events), tuple(bad), (), len(page.changes))

    return process
