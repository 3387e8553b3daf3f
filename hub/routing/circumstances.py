"""A person's circumstances as the authorities that hold them report them, and what they change in
routing. Pure: no I/O.

Three kinds of fact reach the hub on input topics of their own (`hub.schemas.topics`), each from its
real publisher, and travel on to routing as one RoutingFact keyed by the pseudonymous person key:

- jobseeker status (the employment authority): registration as an unemployed jobseeker began or ended;
- residence permit (Migri): the residence basis and the date of the first permit or registration,
  where the integration period (kotoutumisaika) starts;
- service needs (a municipality or a wellbeing area): the needs one identifier has found, as a whole set.

Per person, routing keeps a `Circumstances` value (the latest fact of each kind, the needs per
identifier) next to the person's last Newcomer. `apply` is order-free: a fact replaces what is kept
only when it is later (by its own date, then its `occurred_at`, then its event id), so facts read
out of order, twice, or again after a crash give the same value. `merge` lays the circumstances over
a Newcomer's facts before the rules see them.

`fact_record` makes the RoutingFact of an input record (`hub.services.facts`); `check_input` holds
the checks an input record passes before it becomes one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from dataclasses import dataclass

from hub.domain import hetu
from hub.domain.clock import iso_utc
from hub.routing.model import (RESIDENCE_BASES, SERVICE_NEEDS, UNKNOWN, InputError, RoutingInput, date_field, finnish_day, text_field,
                               timestamp_field)
from hub.schemas import facts as contract

# uuid5 namespaces of the derived event ids (fixed forever: a replay must derive the same ids)
FACT_NAMESPACE = uuid.UUID("0f3b6f5e-2a7d-4c1e-9d58-6b1c2e4a7f90")  # RoutingFact from its input record
CIRCUMSTANCES_NAMESPACE = uuid.UUID("8c2d41a6-5e93-4b0f-a7e1-3f6d9b2c5a18")  # the routing input a fact makes

JOBSEEKER_STATUS = "jobseeker_status"
RESIDENCE_PERMIT = "residence_permit"
SERVICE_NEEDS_KIND = "service_needs"
KINDS = (JOBSEEKER_STATUS, RESIDENCE_PERMIT, SERVICE_NEEDS_KIND)
# input schema -> the kind of RoutingFact it makes
SCHEMA_KINDS = contract.KIND_OF_SCHEMA

REGISTERED, ENDED = "registered", "ended"
JOBSEEKER_STATUSES = (REGISTERED, ENDED)
UNEMPLOYED = "unemployed_job_seeker"
# every need a ServiceNeeds record may name; routing sees those its rules know (`hub.routing.model.SERVICE_NEEDS`)
NEEDS = ("health", "social", "disability", "child_welfare", "literacy", "mental_health", "other")

Rank = tuple[str, ...]  # what "later" means between two facts of one kind: compared as a tuple of ISO texts


# -- one fact -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fact:
    """One RoutingFact as routing reads it (no identity code: the referral takes it from the record)."""

    event_id: str
    kind: str
    person_key: str
    occurred_at: dt.datetime
    source: str = ""
    jobseeker_status: str | None = None
    status_date: dt.date | None = None
    employment_area: str | None = None
    residence_basis: str | None = None
    first_permit_date: dt.date | None = None
    service_needs: tuple[str, ...] = ()
    identified_by: str | None = None
    identified_on: dt.date | None = None

    @classmethod
    def from_record(cls, obj: object) -> "Fact":
        """From a decoded RoutingFact (Avro dict, or its JSON form). Raises InputError naming the field."""
        if not isinstance(obj, dict):
            raise InputError("invalid_input", f"a RoutingFact must be an object, got {type(obj).__name__}")
        kind = obj.get("kind")
        if kind not in KINDS:
            raise InputError("invalid_field", f"RoutingFact kind must be one of {', '.join(KINDS)}")
        event_id = None if obj.get("event_id") is None else str(obj["event_id"]).strip() or None  # a uuid.UUID when decoded from Avro
        key = _text(obj, "person_key")
        if event_id is None:
            raise InputError("invalid_field", "RoutingFact event_id is empty; the fact intake derives it from the input's event id")
        if key is None:
            raise InputError("missing_person_key", "the RoutingFact has an empty person_key; the fact intake must set the pseudonymous key")
        occurred = _timestamp(obj, "occurred_at")
        if occurred is None:
            raise InputError("invalid_date", "RoutingFact occurred_at is missing; it must be the input record's occurred_at")
        fact = cls(event_id=event_id, kind=kind, person_key=key, occurred_at=occurred, source=_text(obj, "source") or "",
                   jobseeker_status=_text(obj, "jobseeker_status"), status_date=_date(obj, "status_date"),
                   employment_area=_text(obj, "employment_area"), residence_basis=_text(obj, "residence_basis"),
                   first_permit_date=_date(obj, "first_permit_date"), service_needs=tuple(dict.fromkeys(obj.get("service_needs") or ())),
                   identified_by=_text(obj, "identified_by"), identified_on=_date(obj, "identified_on"))
        fact._check()
        return fact

    def _check(self) -> None:
        if self.kind == JOBSEEKER_STATUS:
            if self.jobseeker_status not in JOBSEEKER_STATUSES or self.status_date is None:
                raise InputError("invalid_field", "a jobseeker_status fact needs jobseeker_status (registered or ended) and status_date")
        elif self.kind == RESIDENCE_PERMIT:
            if self.residence_basis not in RESIDENCE_BASES:
                raise InputError("invalid_field", f"a residence_permit fact needs residence_basis, one of {', '.join(RESIDENCE_BASES)}")
        else:
            if self.identified_by is None or self.identified_on is None:
                raise InputError("invalid_field", "a service_needs fact needs identified_by and identified_on")
            bad = [n for n in self.service_needs if n not in NEEDS]
            if bad:
                raise InputError("invalid_field", f"service_needs may contain only {', '.join(NEEDS)}")

    @property
    def rank(self) -> Rank:
        """Later facts of one kind rank higher: by the fact's own date (status date, identification
        date; a residence permit by when it was decided), then `occurred_at`, then the event id."""
        own = self.status_date if self.kind == JOBSEEKER_STATUS else self.identified_on if self.kind == SERVICE_NEEDS_KIND else None
        return (own.isoformat() if own else "", iso_utc(self.occurred_at), self.event_id)


# -- what is kept per person ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Jobseeker:
    status: str  # registered | ended
    since: dt.date
    employment_area: str | None
    rank: Rank


@dataclass(frozen=True, slots=True)
class Residence:
    basis: str  # routing's vocabulary
    first_permit_date: dt.date | None
    rank: Rank


@dataclass(frozen=True, slots=True)
class IdentifiedNeeds:
    identified_by: str  # authority id
    needs: tuple[str, ...]  # the identifier's current set; empty: withdrawn
    identified_on: dt.date
    rank: Rank


@dataclass(frozen=True, slots=True)
class Circumstances:
    """A person's circumstances: the latest jobseeker status, the latest residence permit, and each
    identifier's latest set of service needs (sorted by identifier)."""

    jobseeker: Jobseeker | None = None
    residence: Residence | None = None
    needs: tuple[IdentifiedNeeds, ...] = ()

    @property
    def empty(self) -> bool:
        return self.jobseeker is None and self.residence is None and not self.needs

    @property
    def service_needs(self) -> tuple[str, ...]:
        """Every need any identifier has found, each once (in the order of `NEEDS`)."""
        found = {n for item in self.needs for n in item.needs}
        return tuple(n for n in NEEDS if n in found)


def apply(circumstances: Circumstances, fact: Fact) -> Circumstances:
    """`circumstances` with `fact` taken in: it replaces what it is about only when it is later
    (`Fact.rank`), so the order facts arrive in, and repeats, do not change the result."""
    rank = fact.rank
    if fact.kind == JOBSEEKER_STATUS:
        old = circumstances.jobseeker
        if old is not None and old.rank >= rank:
            return circumstances
        return dataclasses.replace(circumstances, jobseeker=Jobseeker(fact.jobseeker_status, fact.status_date, fact.employment_area, rank))
    if fact.kind == RESIDENCE_PERMIT:
        old = circumstances.residence
        if old is not None and old.rank >= rank:
            return circumstances
        return dataclasses.replace(circumstances, residence=Residence(fact.residence_basis, fact.first_permit_date, rank))
    by = {item.identified_by: item for item in circumstances.needs}
    old = by.get(fact.identified_by)
    if old is not None and old.rank >= rank:
        return circumstances
    by[fact.identified_by] = IdentifiedNeeds(fact.identified_by, fact.service_needs, fact.identified_on, rank)
    return dataclasses.replace(circumstances, needs=tuple(by[k] for k in sorted(by)))


def merge(newcomer: RoutingInput, circumstances: Circumstances) -> RoutingInput:
    """The newcomer's facts with the circumstances laid over them:

    - jobseeker registered: labour force status `unemployed_job_seeker`; ended: what the newcomer
      said, unless that was `unemployed_job_seeker` (then unknown);
    - residence permit: its residence basis, and the integration period starts at its first permit date;
    - service needs: the newcomer's and every identifier's, each once, those the rules know."""
    changes: dict = {}
    job = circumstances.jobseeker
    if job is not None:
        if job.status == REGISTERED:
            changes["labour_force_status"] = UNEMPLOYED
        elif newcomer.labour_force_status == UNEMPLOYED:
            changes["labour_force_status"] = UNKNOWN
    residence = circumstances.residence
    if residence is not None:
        changes["residence_basis"] = residence.basis
        if residence.first_permit_date is not None:
            changes["integration_start"] = residence.first_permit_date
    if circumstances.needs:
        both = dict.fromkeys(newcomer.service_needs + circumstances.service_needs)
        changes["service_needs"] = tuple(n for n in both if n in SERVICE_NEEDS)
    return dataclasses.replace(newcomer, **changes) if changes else newcomer


def combine(a: Circumstances, b: Circumstances) -> Circumstances:
    """Both persons' facts as one (an identity-code correction joins the old code's facts to the
    new code's): of each kind the later, as `apply` would keep it."""
    out = a
    if b.jobseeker is not None and (a.jobseeker is None or b.jobseeker.rank > a.jobseeker.rank):
        out = dataclasses.replace(out, jobseeker=b.jobseeker)
    if b.residence is not None and (a.residence is None or b.residence.rank > a.residence.rank):
        out = dataclasses.replace(out, residence=b.residence)
    by = {item.identified_by: item for item in a.needs}
    for item in b.needs:
        if item.identified_by not in by or item.rank > by[item.identified_by].rank:
            by[item.identified_by] = item
    needs = tuple(by[k] for k in sorted(by))
    return out if needs == out.needs else dataclasses.replace(out, needs=needs)


def describe(fact: Fact) -> str:
    """What changed, in words for the recipients of a referral the new routing withdraws (no identity code)."""
    if fact.kind == JOBSEEKER_STATUS:
        return ("registered as an unemployed jobseeker" if fact.jobseeker_status == REGISTERED
                else "registration as an unemployed jobseeker ended") + f" (reported by {fact.source or 'the employment authority'})"
    if fact.kind == RESIDENCE_PERMIT:
        return f"residence basis reported by {fact.source or 'Migri'}: {fact.residence_basis}"
    return f"service needs identified by {fact.identified_by} changed"


def circumstances_input(newcomer: RoutingInput, circumstances: Circumstances, fact: Fact) -> RoutingInput:
    """What routing runs again when `fact` changed the circumstances of a person whose Newcomer
    (`newcomer`, as detection sent it) is known: change `circumstances`, an event id derived from
    the fact's (a replay routes the same event), at the later of the two event times. It is no
    identity-code correction (the snapshot's `previous_person_key` is not carried on), and its
    `change_reason` says what changed."""
    occurred = newcomer.occurred_at if newcomer.occurred_at is not None and newcomer.occurred_at > fact.occurred_at else fact.occurred_at
    again = dataclasses.replace(newcomer, change="circumstances", event_id=str(uuid.uuid5(CIRCUMSTANCES_NAMESPACE, fact.event_id)),
                                occurred_at=occurred, previous_municipality_code=None, previous_person_key=None, change_reason=describe(fact))
    return merge(again, circumstances)


# -- storage form: compact JSON ---------------------------------------------------------------------
def encode(circumstances: Circumstances) -> str:
    """The stored form of `circumstances` (compact JSON, no identity code)."""
    out: dict = {"v": 1}
    if (job := circumstances.jobseeker) is not None:
        out["job"] = {"status": job.status, "since": job.since.isoformat(), "area": job.employment_area, "rank": list(job.rank)}
    if (res := circumstances.residence) is not None:
        out["res"] = {"basis": res.basis, "first": res.first_permit_date.isoformat() if res.first_permit_date else None, "rank": list(res.rank)}
    if circumstances.needs:
        out["needs"] = [{"by": n.identified_by, "needs": list(n.needs), "on": n.identified_on.isoformat(), "rank": list(n.rank)} for n in circumstances.needs]
    return json.dumps(out, separators=(",", ":"), sort_keys=True)


def decode(text: str | None) -> Circumstances:
    """The value `encode` stored (None or empty: no circumstances)."""
    if not text:
        return Circumstances()
    obj = json.loads(text)
    job = obj.get("job")
    res = obj.get("res")
    return Circumstances(
        jobseeker=None if job is None else Jobseeker(job["status"], dt.date.fromisoformat(job["since"]), job.get("area"), tuple(job["rank"])),
        residence=None if res is None else Residence(res["basis"], dt.date.fromisoformat(res["first"]) if res.get("first") else None, tuple(res["rank"])),
        needs=tuple(IdentifiedNeeds(n["by"], tuple(n["needs"]), dt.date.fromisoformat(n["on"]), tuple(n["rank"])) for n in obj.get("needs", ())),
    )


_SNAPSHOT_FIELDS = tuple(f.name for f in dataclasses.fields(RoutingInput))


def encode_newcomer(newcomer: RoutingInput) -> str:
    """The stored snapshot of a Newcomer as routing read it (RoutingInput holds no identity code):
    its JSON form, which `RoutingInput.from_record` reads back."""
    out = {}
    for name in _SNAPSHOT_FIELDS:
        value = getattr(newcomer, name)
        if isinstance(value, dt.datetime):
            value = iso_utc(value)
        elif isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        if value is not None:
            out[name] = value
    return json.dumps(out, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def decode_newcomer(text: str) -> RoutingInput:
    return RoutingInput.from_record(json.loads(text))


# -- the fact intake: input record -> RoutingFact -----------------------------------------------------
def check_input(name: str, record: dict) -> None:
    """The checks an input record (JobseekerStatus, ResidencePermit, ServiceNeeds, decoded) passes
    before it becomes a RoutingFact, beyond its schema and bounds. Raises InputError naming the field
    and the fix, never the identity code."""
    if name not in SCHEMA_KINDS:
        raise InputError("unexpected_schema", f"{name} is not a fact the hub takes in ({', '.join(SCHEMA_KINDS)})")
    person_id = record.get("person_id")
    try:
        hetu.validate(person_id)
        born = hetu.birth_date(person_id)
    except (hetu.InvalidHetu, TypeError, ValueError):
        raise InputError("invalid_person_id", f"{name}: person_id is not a valid henkilötunnus (checksum, date or shape); fix it") from None
    day = _finnish_day(record.get("occurred_at"))
    for field in ("status_date", "first_permit_date", "identified_on"):
        value = record.get(field)
        if not isinstance(value, dt.date):
            continue
        value = value.date() if isinstance(value, dt.datetime) else value
        if day is not None and value > day:
            raise InputError("invalid_field", f"{name}: {field} {value.isoformat()} is after occurred_at ({day.isoformat()}); "
                                              "report the fact when it has happened, or fix the date")
        if value < born:
            raise InputError("invalid_field", f"{name}: {field} {value.isoformat()} is before the person's birth date; fix the date")
    if name == "JobseekerStatus" and not (record.get("employment_area") or "").strip():
        raise InputError("invalid_field", "JobseekerStatus: employment_area is empty; it must be the reporting employment area's code")
    if name == "ResidencePermit" and record.get("basis") not in contract.PERMIT_BASES:
        raise InputError("invalid_field", f"ResidencePermit: basis must be one of {', '.join(contract.PERMIT_BASES)}")
    if name == "ServiceNeeds":
        if not (record.get("identified_by") or "").strip():
            raise InputError("invalid_field", "ServiceNeeds: identified_by is empty; it must be the identifying authority's id")
        bad = [n for n in record.get("needs") or () if n not in NEEDS]
        if bad:
            raise InputError("invalid_field", f"ServiceNeeds: needs may contain only {', '.join(NEEDS)}")


def fact_event_id(name: str, record: dict) -> str:
    """The RoutingFact's event id, derived from the input's (a replay of the input derives the same)."""
    return str(uuid.uuid5(FACT_NAMESPACE, f"{name}|{record.get('source')}|{record['event_id']}"))


def fact_record(name: str, record: dict, person_key: str, recorded_at: dt.datetime) -> dict:
    """The RoutingFact (Avro record dict) of a checked input record (`check_input`); its `source`
    stays the original publisher's."""
    kind = SCHEMA_KINDS[name]
    out = {
        "event_id": fact_event_id(name, record),
        "occurred_at": record["occurred_at"],
        "recorded_at": recorded_at,
        "source": record["source"],
        "schema_version": 1,
        "person_key": person_key,
        "person_id": record["person_id"],
        "kind": kind,
        "jobseeker_status": None, "status_date": None, "employment_area": None,
        "residence_basis": None, "first_permit_date": None,
        "service_needs": None, "identified_by": None, "identified_on": None,
    }
    if kind == JOBSEEKER_STATUS:
        out.update(jobseeker_status=record["status"], status_date=record["status_date"], employment_area=record["employment_area"])
    elif kind == RESIDENCE_PERMIT:
        out.update(residence_basis=contract.routing_residence_basis(record["basis"]), first_permit_date=record.get("first_permit_date"))
    else:
        out.update(service_needs=list(dict.fromkeys(record.get("needs") or ())), identified_by=record["identified_by"], identified_on=record["identified_on"])
    return out


# -- field readers: the routing model's, naming the record ------------------------------------------
def _text(obj: dict, name: str) -> str | None:
    return text_field(obj, name, "RoutingFact ")


def _date(obj: dict, name: str) -> dt.date | None:
    return date_field(obj, name, "RoutingFact ")


def _timestamp(obj: dict, name: str) -> dt.datetime | None:
    return timestamp_field(obj, name, "RoutingFact ")


def _finnish_day(value: object) -> dt.date | None:
    """The Finnish day of an input record's occurred_at; None when it is no datetime or out of range."""
    if not isinstance(value, dt.datetime):
        return None
    try:
        return finnish_day(value)
    except OverflowError:
        return None
