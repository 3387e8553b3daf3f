"""Newcomer detection, pure: (person state, population change) -> (new state, newcomer events).

A person becomes a newcomer when they arrive from abroad and get a Finnish home municipality, or
when a foreign national or a person with a foreign mother tongue gets a home municipality for the
first time, and the arrival lies within the period the integration act covers: the services of
681/2023 (§ 14 assessment, § 16 first plan) are tied to the first three years after the first
residence permit or registration, so an arrival more than `window_days` (default 3 × 365) before
the change is not a newcomer (a snapshot of long-time residents reaches nobody).

A later move between Finnish municipalities re-addresses an existing newcomer (`moved`), never a
new one. A foreign national the hub first sees on such a move (arrived before the hub saw them) is
a newcomer only when the change says when they moved to Finland (`arrived_in_finland`, DVV's
SUOMEEN_MUUTTOPAIVA) and that date lies within the window; without it the hub does not guess (the
date of moving into the new municipality says nothing about the arrival in Finland).

A `resident` record is a row of a register snapshot (the go-live backfill), not a change: a
foreign national still inside the window, by the date of moving to Finland or, when the register
names no earlier home municipality, by the date the first one began, is a newcomer once. A
snapshot never re-addresses or re-detects a newcomer: the change feed is newer.

An identity-code correction of a newcomer is published as a `circumstances` update under the
corrected code's key that names the replaced code's key (`previous_person_key`): routing withdraws
the referrals made under the old key and routes the person under the new one.

Duplicates and replays change nothing: the state remembers the event ids it applied.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Callable

from hub.domain import hetu

DOMESTIC_LANGUAGES = frozenset({"fi", "sv", "se", "smn", "sms"})  # Finnish, Swedish, the Sami languages
# EU and EEA states plus Switzerland: their citizens register a right of residence (residence basis eu_citizen)
EU_EEA = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO CH".split()
)
DEFAULT_WINDOW_DAYS = 3 * 365
SEEN_LIMIT = 64  # event ids remembered per person for deduplication


@dataclass(frozen=True)
class Change:
    """The fields of a PopulationChange that detection uses (built from the Avro record)."""

    event_id: str
    person_id: str
    change_type: str
    occurred_at: dt.datetime
    municipality_code: str | None = None
    previous_municipality_code: str | None = None
    previous_country: str | None = None
    nationalities: tuple[str, ...] = ()
    mother_tongue: str | None = None
    birth_date: dt.date | None = None
    move_date: dt.date | None = None
    contact_language: str | None = None
    previous_person_id: str | None = None
    guardian_in_finland: bool | None = None
    turvakielto: bool = False
    arrived_in_finland: dt.date | None = None

    @classmethod
    def from_record(cls, r: dict) -> "Change":
        # every field set at once, not through the frozen dataclass's __init__ (one object.__setattr__
        # per field): this runs for every population change; a unit test checks that it sets every field
        c = object.__new__(cls)
        c.__dict__.update(
            event_id=str(r["event_id"]),
            person_id=r["person_id"],
            change_type=r["change_type"],
            occurred_at=r["occurred_at"],
            municipality_code=r.get("municipality_code"),
            previous_municipality_code=r.get("previous_municipality_code"),
            previous_country=r.get("previous_country"),
            nationalities=tuple(r.get("nationalities") or ()),
            mother_tongue=r.get("mother_tongue"),
            birth_date=r.get("birth_date"),
            move_date=r.get("move_date"),
            contact_language=r.get("contact_language"),
            previous_person_id=r.get("previous_person_id"),
            guardian_in_finland=r.get("guardian_in_finland"),
            turvakielto=bool(r.get("turvakielto")),
            arrived_in_finland=r.get("arrived_in_finland"),
        )
        return c


@dataclass(frozen=True)
class PersonState:
    """What the hub remembers of one person (one row of `person_states`, keyed by person key; the
    stored form leaves `person_id` out: `encode_state`)."""

    person_id: str
    municipality_code: str | None = None
    arrived_from_abroad: bool = False
    arrival_date: dt.date | None = None
    birth_date: dt.date | None = None
    mother_tongue: str | None = None
    contact_language: str | None = None
    nationalities: tuple[str, ...] = ()
    guardian_in_finland: bool | None = None
    turvakielto: bool = False
    newcomer: bool = False
    newcomer_event_id: str | None = None
    deceased: bool = False
    emigrated: bool = False
    seen: tuple[str, ...] = ()

    def to_json(self) -> dict:
        # field by field: dataclasses.asdict deep-copies recursively, a large share of detection's time
        d = {name: getattr(self, name) for name in _STATE_FIELDS}
        for k in ("arrival_date", "birth_date"):
            d[k] = d[k].isoformat() if d[k] else None
        d["nationalities"] = list(self.nationalities)
        d["seen"] = list(self.seen)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "PersonState":
        if "person_id" not in d or not d.keys() <= _FIELD_NAMES:
            return cls(**d)  # raises TypeError naming the missing or unknown field
        out = dict(_DEFAULT_VALUES)  # the fields encode_state leaves out
        out.update(d)
        for k in ("arrival_date", "birth_date"):
            out[k] = dt.date.fromisoformat(out[k]) if out[k] else None
        out["nationalities"] = tuple(out["nationalities"] or ())
        out["seen"] = tuple(out["seen"] or ())
        state = object.__new__(cls)  # as `_with`: no per-field __init__ for a state read per change
        state.__dict__.update(out)
        return state


_STATE_FIELDS = tuple(f.name for f in fields(PersonState))
_STORED_FIELDS = tuple(name for name in _STATE_FIELDS if name != "person_id")  # encode_state: never the identity code
_FIELD_NAMES = frozenset(_STATE_FIELDS)
# field -> its default: encode_state leaves these out, the dataclass puts them back when read
_DEFAULT_VALUES = {f.name: f.default for f in fields(PersonState) if f.default is not MISSING}


@dataclass(frozen=True)
class NewcomerEvent:
    """A newcomer to publish: `arrived` (new) or `moved` (re-addressed)."""

    change: str
    state: PersonState
    previous_municipality_code: str | None
    detected_from: str
    occurred_at: dt.datetime
    residence_basis: str = "unknown"
    reasons: tuple[str, ...] = field(default=())
    previous_person_key: str | None = None  # an identity-code correction: the replaced code's person key


def _with(state: PersonState, **changes) -> PersonState:
    """`dataclasses.replace` for PersonState without its per-field __init__ (a frozen dataclass sets
    each field through object.__setattr__): detection makes up to four per change, and replace was
    a fifth of the snapshot's time. No __post_init__ or validation is skipped: PersonState has none."""
    new = object.__new__(PersonState)
    d = new.__dict__
    d.update(state.__dict__)
    d.update(changes)
    return new


def _is_foreign(state: PersonState) -> bool:
    foreign_nationality = bool(state.nationalities) and "FI" not in state.nationalities
    foreign_tongue = state.mother_tongue is not None and state.mother_tongue.lower() not in DOMESTIC_LANGUAGES
    return foreign_nationality or foreign_tongue


def residence_basis(nationalities: tuple[str, ...]) -> str:
    """What the register tells of the residence basis: EU/EEA citizens register a right of residence."""
    if nationalities and all(n in EU_EEA for n in nationalities):
        return "eu_citizen"
    return "unknown"


def _merge(state: PersonState, c: Change) -> PersonState:
    """Carry over every attribute the change knows; unknown (None/empty) keeps what we had; remember
    the change's event id."""
    return _with(
        state,
        seen=(state.seen + (c.event_id,))[-SEEN_LIMIT:],
        person_id=c.person_id,
        birth_date=c.birth_date or state.birth_date,
        mother_tongue=c.mother_tongue or state.mother_tongue,
        contact_language=c.contact_language or state.contact_language,
        nationalities=c.nationalities or state.nationalities,
        guardian_in_finland=c.guardian_in_finland if c.guardian_in_finland is not None else state.guardian_in_finland,
        turvakielto=c.turvakielto if c.change_type in ("non_disclosure",) else (state.turvakielto or c.turvakielto),
    )


def _in_period(arrival: dt.date, on: dt.date, window_days: int) -> bool:
    return (on - arrival).days <= window_days


def _mover_reason(before: PersonState, c: Change, window_days: int) -> str:
    came_from = c.previous_municipality_code or before.municipality_code
    seen = "first seen on a move" if before.municipality_code is None else "not a newcomer before (no date of moving to Finland), seen on a move"
    where = f"from {came_from} to {c.municipality_code}" if came_from else f"to {c.municipality_code}"
    inside = "inside" if _in_period(c.arrived_in_finland, c.occurred_at.date(), window_days) else "outside"
    return f"{seen} {where}; in Finland since {c.arrived_in_finland.isoformat()}, {inside} the integration period"


def _resident(before: PersonState, state: PersonState, c: Change, window_days: int) -> tuple[PersonState, list[NewcomerEvent]]:
    """A row of a register snapshot: a newcomer when the person is a foreign national whose
    arrival the register dates within the window; a known newcomer, a death or a missing home
    municipality change nothing (the change feed is newer than any snapshot)."""
    if state.newcomer or state.deceased or c.municipality_code is None:
        return state, []
    if before.municipality_code is None:  # a home municipality the feed already gave is newer than the snapshot's
        state = _with(state, municipality_code=c.municipality_code, emigrated=False)
    if "FI" in state.nationalities or not _is_foreign(state):
        return state, []
    taken = c.occurred_at.date()
    if c.arrived_in_finland is not None:
        arrival, how = c.arrived_in_finland, f"in Finland since {c.arrived_in_finland.isoformat()}"
    elif c.previous_municipality_code is None and c.move_date is not None:
        arrival = c.move_date
        how = f"home municipality since {c.move_date.isoformat()}, the first the register names (no date of moving to Finland)"
    else:
        return state, []  # when they came to Finland is unknown: not guessed
    if not _in_period(arrival, taken, window_days):
        return state, []
    state = _with(state, newcomer=True, newcomer_event_id=c.event_id, arrival_date=arrival, arrived_from_abroad=c.arrived_in_finland is not None)
    reasons = (f"resident of {state.municipality_code} in the register snapshot of {taken.isoformat()}; {how}, inside the integration period",
               f"arrival {arrival.isoformat()} is within {window_days} days of the snapshot")
    return state, [NewcomerEvent("arrived", state, None, c.event_id, c.occurred_at, residence_basis(state.nationalities), reasons)]


def merge_identity(old: PersonState | None, new: PersonState | None, person_id: str) -> PersonState:
    """After an identity-code correction: one state under the new code, newcomer status kept."""
    if old is None and new is None:
        return PersonState(person_id=person_id)
    base = new or old
    other = old if new is not None else None
    if other is None:
        return replace(base, person_id=person_id)
    return replace(
        base,
        person_id=person_id,
        newcomer=base.newcomer or other.newcomer,
        newcomer_event_id=base.newcomer_event_id or other.newcomer_event_id,
        municipality_code=base.municipality_code or other.municipality_code,
        arrival_date=base.arrival_date or other.arrival_date,
        arrived_from_abroad=base.arrived_from_abroad or other.arrived_from_abroad,
        seen=(base.seen + other.seen)[-SEEN_LIMIT:],
    )


def detect(state: PersonState | None, c: Change, window_days: int = DEFAULT_WINDOW_DAYS) -> tuple[PersonState, list[NewcomerEvent]]:
    """Apply one change to a person's state; return the new state and what to publish."""
    state = state or PersonState(person_id=c.person_id)
    if c.event_id in state.seen:
        return state, []
    before = state
    state = _merge(state, c)
    out: list[NewcomerEvent] = []

    if c.change_type == "death":
        return _with(state, deceased=True), []
    if c.change_type in ("emigration", "move_out") and c.municipality_code is None:
        return _with(state, emigrated=True), []
    if c.change_type == "resident":
        return _resident(before, state, c, window_days)

    gets_municipality = c.municipality_code is not None and c.change_type in ("immigration", "move_in")
    if not gets_municipality or state.deceased:
        return state, out

    from_abroad = c.change_type == "immigration" or c.previous_country is not None or before.emigrated
    first_municipality = before.municipality_code is None and c.previous_municipality_code is None
    arrival = c.move_date or c.occurred_at.date()

    if state.newcomer:
        if c.municipality_code != before.municipality_code:
            state = _with(state, municipality_code=c.municipality_code, emigrated=False)
            out.append(
                NewcomerEvent("moved", state, before.municipality_code, c.event_id, c.occurred_at, residence_basis(state.nationalities),
                              (f"moved from municipality {before.municipality_code} to {c.municipality_code}",))
            )
        return state, out

    state = _with(state, municipality_code=c.municipality_code, emigrated=False)
    if "FI" in state.nationalities:
        return state, out  # § 2: the act's services are for foreign nationals; Finnish citizens are not newcomers
    reasons: list[str] = []
    if from_abroad:
        reasons.append("arrived from abroad" + (f" ({c.previous_country})" if c.previous_country else "") + " and got a home municipality")
    elif first_municipality and _is_foreign(state):
        reasons.append("got a home municipality for the first time as a foreign national or with a foreign mother tongue")
    elif c.arrived_in_finland is not None and _is_foreign(state):
        # arrived before the hub saw them: DVV's date of moving to Finland, not the move-in date, is the arrival
        arrival = c.arrived_in_finland
        reasons.append(_mover_reason(before, c, window_days))
    else:
        return state, out  # a move between municipalities without a date of moving to Finland: not guessed
    if (c.occurred_at.date() - arrival).days > window_days:
        return state, out  # arrived too long ago for the act's services
    state = _with(state, newcomer=True, newcomer_event_id=c.event_id, arrival_date=arrival, arrived_from_abroad=from_abroad)
    reasons.append(f"arrival {arrival.isoformat()} is within {window_days} days of the change")
    out.append(NewcomerEvent("arrived", state, before.municipality_code or c.previous_municipality_code, c.event_id, c.occurred_at, residence_basis(state.nationalities), tuple(reasons)))
    return state, out


NEWCOMER_NAMESPACE = uuid.UUID("5b0c7a3e-3f4e-4c55-9a51-6a1f2f0e8d11")


@dataclass(frozen=True)
class Step:
    """What one population change does to the stored states: write `state` (JSON) under `key`, remove
    the state under `old_key` (an identity-code correction), publish `found`."""

    key: str
    state: str  # encode_state(): compact JSON
    old_key: str | None
    found: list[NewcomerEvent]


def person_keys(record: dict, secret: str) -> tuple[str, str | None]:
    """The keys of the states a PopulationChange record reads: the person's, and the previous
    identity code's on a correction (else None)."""
    previous = record.get("previous_person_id")
    return hetu.person_key(record["person_id"], secret), (hetu.person_key(previous, secret) if previous else None)


def step(record: dict, lookup: Callable[[str], str | dict | None], secret: str, window_days: int = DEFAULT_WINDOW_DAYS,
         keys: tuple[str, str | None] | None = None) -> Step:
    """One validated PopulationChange record against the states `lookup(person key)` returns: the
    glue around `detect` that the detection agent and the soak test's oracle share. `keys`: the
    record's `person_keys`, when the caller has them already."""
    change = Change.from_record(record)
    key, old_key = keys or person_keys(record, secret)
    state = decode_state(lookup(key), change.person_id)
    old = None
    if old_key:  # identity-code correction: the old code's state, found by the old code's key, joins the new one
        old = decode_state(lookup(old_key), change.person_id)
        state = merge_identity(old, state, change.person_id)
    seen_before = state is not None and change.event_id in state.seen
    state, found = detect(state, change, window_days)
    if old is not None and old.newcomer and old_key != key and not seen_before:
        found = _re_keyed(state, change, old_key, found)
    return Step(key, encode_state(state), old_key, found)


def _re_keyed(state: PersonState, c: Change, old_key: str, found: list[NewcomerEvent]) -> list[NewcomerEvent]:
    """A newcomer's identity code was corrected: what detection found names the old key; when it found
    nothing, a `circumstances` update does, so routing withdraws the old key's referrals and routes the
    person under the new key (not for a person who died or left: nothing is routed for them)."""
    if found:
        return [replace(ev, previous_person_key=old_key) for ev in found]
    if state.deceased or state.emigrated or not state.newcomer or state.municipality_code is None:
        return found
    return [NewcomerEvent("circumstances", state, None, c.event_id, c.occurred_at, residence_basis(state.nationalities),
                          ("identity code corrected: the person is routed under the corrected code",), previous_person_key=old_key)]


def encode_state(state: PersonState) -> str:
    """The stored form of a person's state (a row of `person_states`, keyed by the person key): compact
    JSON without the identity code and without the fields at their defaults, ~150 bytes instead of a
    dict of 15 entries. Field order and values are those of `state.to_json()` minus `person_id` and
    its defaults, built without the intermediate dict. The identity code is not kept: every change
    carries it, and `decode_state` takes it from there."""
    d = state.__dict__
    out = {}
    for name in _STORED_FIELDS:
        v = d[name]
        if name in _DEFAULT_VALUES:
            default = _DEFAULT_VALUES[name]
            if type(v) is type(default) and v == default:  # False is not None: guardian_in_finland
                continue
        if isinstance(v, (tuple, list)):
            v = list(v)
        elif isinstance(v, dt.date):
            v = v.isoformat()
        out[name] = v
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def decode_state(value: str | dict | None, person_id: str | None = None) -> PersonState | None:
    """A stored state: `encode_state` text, or the dict form `PersonState.to_json` gives, as the state
    of `person_id` (the identity code of the change being applied: the stored form has none)."""
    if not value:
        return None
    d = json.loads(value) if isinstance(value, str) else dict(value)
    if person_id is not None:
        d["person_id"] = person_id
    return PersonState.from_json(d)


def newcomer_record(ev: NewcomerEvent, person_key: str, recorded_at: dt.datetime, source: str = "hub:newcomer-detection") -> dict:
    """The Newcomer event (Avro record) for a detection; its event id is derived, so a replay repeats it."""
    s = ev.state
    return {
        "event_id": str(uuid.uuid5(NEWCOMER_NAMESPACE, f"{ev.detected_from}:{ev.change}")),
        "occurred_at": ev.occurred_at,
        "recorded_at": recorded_at,
        "source": source,
        "schema_version": 1,
        "person_key": person_key,
        "person_id": s.person_id,
        "change": ev.change,
        "municipality_code": s.municipality_code,
        "previous_municipality_code": ev.previous_municipality_code,
        "birth_date": s.birth_date,
        "arrival_date": s.arrival_date,
        "residence_basis": ev.residence_basis,
        "labour_force_status": "unknown",
        "guardian_in_finland": s.guardian_in_finland,
        "service_needs": [],
        "mother_tongue": s.mother_tongue,
        "contact_language": s.contact_language,
        "nationalities": list(s.nationalities),
        "turvakielto": s.turvakielto,
        "detected_from": ev.detected_from,
        "previous_person_key": ev.previous_person_key,
    }
