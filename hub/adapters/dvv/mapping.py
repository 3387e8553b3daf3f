"""Pure mapping of one DVV change (`muutos`: `muutospv`, `henkilotunnus`, `tietoryhmat`) into
PopulationChange records (dicts in the shape of hub/schemas/population_change.avsc).

Decisions (docs/domain.md, "Population-register changes from DVV", gives the reasons):
- One event per *mapped* data group (tietoryhmä) of the muutos. Each event also carries the
  person's other attributes known from the same muutos (home municipality, move date, previous
  municipality/country, mother tongue, nationalities, birth date, contact language, guardian in
  Finland, turvakielto), so that detection sees them together; `change_type` and `data_group`
  say what changed.
- Only current-data changes (`muutosattribuutti` LISATTY, MUUTETTU, KORJATTU) make events.
  KORJATTAVA (the wrong value of a correction pair), POISTETTU and LISATIETO give context only.
- KOTIKUNTA (home municipality): `move_in` when the same muutos names a previous Finnish home
  municipality (EDELLINEN_KOTIKUNTA), else `immigration` (the first Finnish home municipality:
  an arrival from abroad; previous_country from the closed permanent foreign address).
- SUOMEEN_MUUTTOPAIVA (the date the person moved to Finland) gives no event of its own; when the
  muutos has it, every event carries it as `arrived_in_finland` (detection's integration period
  for a person first seen on a move between municipalities). Absent: null, never guessed.
- Groups the hub deliberately does not carry (names, domestic addresses, ...) are CONTEXT_GROUPS:
  no event (data minimisation). Every other group is unknown: an `other` event with data_group.
- A group masked for turvakielto (`turvakiellonAlaisetKentat`) gives an `other` event with no
  values, and marks every event of the muutos turvakielto=true, like an active TURVAKIELTO.
- event_id = uuid5(namespace, "muutospv|person key|group|index in the muutos"). The page's record
  key is not part of it: DVV does not promise the same page boundaries on a re-read, and a re-read
  must give the same ids. The pseudonymous person key, not the code, goes into the name so that
  the id cannot be brute-forced back to the identity code.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

from hub.domain import codes
from hub.domain import hetu
from hub.domain.errors import Rejected
from hub.schemas import bounds

SOURCE = "dvv:muutosrajapinta"
NAMESPACE = uuid.UUID("6f1c3a52-8d0e-5b7e-9a43-2f5d1c0b7e91")

UPDATE = frozenset({"LISATTY", "MUUTETTU", "KORJATTU"})
MASK = "turvakiellonAlaisetKentat"

KOTIKUNTA = "KOTIKUNTA"
MAPPED_GROUPS = frozenset(
    {
        KOTIKUNTA,
        "AIDINKIELI",
        "KANSALAISUUS",
        "VAKINAINEN_ULKOMAINEN_OSOITE",
        "TILAPAINEN_ULKOMAINEN_OSOITE",
        "KUOLINPAIVA",
        "KUOLLEEKSIJULISTAMISPAIVA",
        "HUOLTAJA_SUPPEA",
        "HUOLTAJA",
        "HENKILOTUNNUS_KORJAUS",
        "TURVAKIELTO",
    }
)
# Known groups that only give context (or that the hub deliberately does not carry): no event.
CONTEXT_GROUPS = frozenset(
    {
        "EDELLINEN_KOTIKUNTA",
        "VAESTOKIRJANPITOKUNTA",
        "SUOMEEN_MUUTTOPAIVA",
        "SYNTYMAPAIVA",
        "ASIOINTIKIELI",
        "SUKUPUOLI",
        "HENKILON_NIMI",
        "NIMENMUUTOS",
        "NIMENMUUTOS_LAAJA",
        "KUTSUMANIMI",
        "VAKINAINEN_KOTIMAINEN_OSOITE",
        "TILAPAINEN_KOTIMAINEN_OSOITE",
        "KOTIMAINEN_POSTIOSOITE",
        "ULKOMAINEN_POSTIOSOITE",
        "VAKINAINEN_ASUINPAIKKATUNNUS",
        "TILAPAINEN_ASUINPAIKKATUNNUS",
        "VAKINAINEN_ULKOMAILLA_ASUMINEN",
        "VALTIO_JOHON_MUUTTANUT",
        "POISSAOLO",
        "SAHKOPOSTIOSOITE",
        "HUOLLETTAVA_SUPPEA",
        "HUOLLETTAVA",
        "LAPSI_SUPPEA",
        "LAPSI",
    }
)


_GROUP_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def group_label(name: object) -> str:
    """A data-group name safe for metric labels, logs and messages (an identity code never
    matches: it starts with a digit); anything else is 'invalid_name'."""
    return name if isinstance(name, str) and _GROUP_NAME.match(name) else "invalid_name"


class MalformedMuutos(Rejected):
    """The muutos does not have the documented shape. The message names the field, never a value."""

    def __init__(self, message: str):
        super().__init__("malformed_record", message)


@dataclass(frozen=True)
class MappedMuutos:
    """The events of one muutos, and the names of the data groups the hub does not know."""

    events: tuple[dict, ...]
    unknown_groups: tuple[str, ...]
    person_id: str


# -- value helpers ------------------------------------------------------------------------------
def parse_instant(value: object, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise MalformedMuutos(f"{where} must be an ISO-8601 timestamp such as 2026-05-11T05:12:31.418Z")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise MalformedMuutos(f"{where} is not an ISO-8601 timestamp (expected e.g. 2026-05-11T05:12:31.418Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def parse_date(value: object, where: str) -> dt.date | None:
    """DVV's Paivamaara `{"arvo": "YYYY-MM-DD", "tarkkuus": ...}` (a plain string is accepted too).

    Month- or year-precision dates come with day/month filled with 01 and are kept as such.
    """
    if value is None:
        return None
    arvo = value.get("arvo") if isinstance(value, dict) else value
    if arvo is None:
        return None
    if not isinstance(arvo, str):
        raise MalformedMuutos(f"{where} must be a date object {{arvo: YYYY-MM-DD}}")
    try:
        return dt.date.fromisoformat(arvo[:10])
    except ValueError:
        raise MalformedMuutos(f"{where} is not a date YYYY-MM-DD") from None


def _code(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MalformedMuutos(f"{where} must be a code (text)")
    return str(value)


def _municipality(value: object, where: str) -> str | None:
    code = _code(value, where)
    return code.zfill(3) if code is not None and code.isdigit() else code


def event_id(muutospv: str, person_key: str, group: str, index: int) -> str:
    """The deterministic id of the event made from group `index` of a muutos."""
    return str(uuid.uuid5(NAMESPACE, f"dvv|{muutospv}|{person_key}|{group}|{index}"))


def _ended(group: dict, on: dt.date, where: str) -> bool:
    end = parse_date(group.get("loppupv"), f"{where}.loppupv")
    return end is not None and end <= on


# -- the person's attributes known from the muutos ---------------------------------------------
@dataclass
class _Person:
    municipality_code: str | None = None
    move_date: dt.date | None = None
    previous_municipality_code: str | None = None
    previous_country: str | None = None
    destination_country: str | None = None
    mother_tongue: str | None = None
    contact_language: str | None = None
    nationalities: list | None = None
    birth_date: dt.date | None = None
    guardian_in_finland: bool | None = None
    turvakielto: bool = False
    arrived_in_finland: dt.date | None = None


def _nationalities(group: dict, where: str) -> list[str]:
    items = group.get("henkilonKansalaisuudet")
    if items is None:
        return []
    if not isinstance(items, list):
        raise MalformedMuutos(f"{where}.henkilonKansalaisuudet must be a list")
    out: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedMuutos(f"{where}.henkilonKansalaisuudet[{i}] must be an object")
        if item.get("voimassaolo", "AKTIIVI") == "PASSIIVI" or item.get("menetyspv"):
            continue
        code = codes.country_alpha2(_code(item.get("kansalaisuuskoodi"), f"{where}.henkilonKansalaisuudet[{i}].kansalaisuuskoodi"))
        if code and code not in out:
            out.append(code)
    return out


def _guardian_in_finland(group: dict, on: dt.date, where: str) -> bool | None:
    """Interpretation: a guardian who has a Finnish identity code is registered in the Finnish
    population register, and the hub takes that as "guardian in Finland"; a guardian without one
    (a foreign guardian the register knows only by name) is not. An ended guardianship says
    nothing (None). DVV's limited guardian group has no residence data, so a guardian with a code
    who lives abroad is counted as in Finland: routing should treat `true` as "probably"."""
    guardian = group.get("huoltaja")
    if guardian is None:
        return None
    if not isinstance(guardian, dict):
        raise MalformedMuutos(f"{where}.huoltaja must be an object")
    end = parse_date(group.get("huoltosuhteenLoppupv"), f"{where}.huoltosuhteenLoppupv")
    if end is not None and end <= on:
        return None
    return bool(guardian.get("henkilotunnus"))


def _collect(groups: list, person_id: str, on: dt.date) -> _Person:
    p = _Person()
    if hetu.is_valid(person_id):
        p.birth_date = hetu.birth_date(person_id)
    guardians: list[bool] = []
    for i, g in enumerate(groups):
        name, attr, where = g["tietoryhma"], g.get("muutosattribuutti"), f"tietoryhmat[{i}] {group_label(g['tietoryhma'])}"
        if MASK in g:
            p.turvakielto = True
            continue
        if name == KOTIKUNTA and attr in UPDATE | {"LISATIETO"}:
            p.municipality_code = _municipality(g.get("kuntakoodi"), f"{where}.kuntakoodi") or p.municipality_code
            p.move_date = parse_date(g.get("kuntaanMuuttopv", g.get("kuntaanMuuttoPv")), f"{where}.kuntaanMuuttopv") or p.move_date
        elif name == KOTIKUNTA and attr == "POISTETTU" and p.municipality_code is None:
            still = g.get("voimassaolevatTiedot") or []
            if isinstance(still, list) and still and isinstance(still[0], dict):
                p.municipality_code = _municipality(still[0].get("kuntakoodi"), f"{where}.voimassaolevatTiedot[0].kuntakoodi")
        elif name == "EDELLINEN_KOTIKUNTA":
            p.previous_municipality_code = _municipality(g.get("kuntakoodi"), f"{where}.kuntakoodi")
        elif name == "VAKINAINEN_ULKOMAINEN_OSOITE" and attr in UPDATE:
            country = codes.country_alpha2(_code(g.get("valtiokoodi"), f"{where}.valtiokoodi"))
            if _ended(g, on, where):
                p.previous_country = country
            else:
                p.destination_country = country
        elif name == "VALTIO_JOHON_MUUTTANUT":
            p.destination_country = codes.country_alpha2(_code(g.get("valtiokoodi"), f"{where}.valtiokoodi")) or p.destination_country
        elif name == "AIDINKIELI":
            if attr in UPDATE | {"LISATIETO"} and not _ended(g, on, where):
                p.mother_tongue = codes.language(_code(g.get("kielikoodi"), f"{where}.kielikoodi")) or p.mother_tongue
            elif attr == "POISTETTU" and p.mother_tongue is None:
                still = g.get("voimassaolevatTiedot") or []
                if isinstance(still, list) and still and isinstance(still[0], dict):
                    p.mother_tongue = codes.language(_code(still[0].get("kielikoodi"), f"{where}.voimassaolevatTiedot[0].kielikoodi"))
        elif name == "ASIOINTIKIELI" and attr in UPDATE | {"LISATIETO"}:
            p.contact_language = codes.language(_code(g.get("kielikoodi"), f"{where}.kielikoodi"))
        elif name == "KANSALAISUUS" and attr not in ("KORJATTAVA",):
            p.nationalities = _nationalities(g, where)
        elif name == "SUOMEEN_MUUTTOPAIVA" and attr in UPDATE | {"LISATIETO"}:
            p.arrived_in_finland = parse_date(g.get("suomeenMuuttopv"), f"{where}.suomeenMuuttopv") or p.arrived_in_finland
        elif name == "SYNTYMAPAIVA" and attr in UPDATE | {"LISATIETO"}:
            p.birth_date = parse_date(g.get("syntymapv"), f"{where}.syntymapv") or p.birth_date
        elif name in ("HUOLTAJA_SUPPEA", "HUOLTAJA") and attr in UPDATE | {"LISATIETO"}:
            found = _guardian_in_finland(g, on, where)
            if found is not None:
                guardians.append(found)
        elif name == "TURVAKIELTO" and attr in UPDATE | {"LISATIETO"}:
            active = g.get("turvakieltoAktiivinen")
            if not isinstance(active, bool):
                raise MalformedMuutos(f"{where}.turvakieltoAktiivinen must be true or false")
            end = parse_date(g.get("turvaLoppuPv"), f"{where}.turvaLoppuPv")
            p.turvakielto = p.turvakielto or (active and (end is None or end > on))
    if guardians:
        p.guardian_in_finland = any(guardians)
    return p


# -- the events ---------------------------------------------------------------------------------
def _event_for(g: dict, i: int, person_id: str, p: _Person, on: dt.date, has_kotikunta: bool) -> dict | None:
    """The change-specific fields of the event of group `g`, or None when it makes no event."""
    name, attr, where = g["tietoryhma"], g.get("muutosattribuutti"), f"tietoryhmat[{i}] {group_label(g['tietoryhma'])}"
    if name in CONTEXT_GROUPS:
        return None
    if name not in MAPPED_GROUPS:
        return {"change_type": "other"}
    if MASK in g:
        return {"change_type": "other"} if attr in UPDATE else None
    if name == KOTIKUNTA:
        if attr not in UPDATE:
            return {"change_type": "other"} if attr == "POISTETTU" else None
        if g.get("kuntakoodi") in (None, ""):
            raise MalformedMuutos(f"{where} has no kuntakoodi (and is not masked for turvakielto)")
        return {
            "change_type": "move_in" if p.previous_municipality_code else "immigration",
            "municipality_code": _municipality(g.get("kuntakoodi"), f"{where}.kuntakoodi"),
            "move_date": parse_date(g.get("kuntaanMuuttopv", g.get("kuntaanMuuttoPv")), f"{where}.kuntaanMuuttopv"),
        }
    if attr not in UPDATE and not (name == "KANSALAISUUS" and attr == "POISTETTU"):
        return None
    if name == "AIDINKIELI":
        if _ended(g, on, where):
            return None
        return {"change_type": "language", "mother_tongue": codes.language(_code(g.get("kielikoodi"), f"{where}.kielikoodi"))}
    if name == "KANSALAISUUS":
        return {"change_type": "nationality", "nationalities": _nationalities(g, where)}
    if name in ("VAKINAINEN_ULKOMAINEN_OSOITE", "TILAPAINEN_ULKOMAINEN_OSOITE"):
        country = codes.country_alpha2(_code(g.get("valtiokoodi"), f"{where}.valtiokoodi"))
        ended = _ended(g, on, where)
        if name == "TILAPAINEN_ULKOMAINEN_OSOITE":
            # a temporary stay abroad keeps the Finnish home municipality: neither emigration nor arrival
            return {"change_type": "other", "previous_country": country} if ended else {"change_type": "other", "destination_country": country}
        if ended:  # the permanent address abroad closed: arrival from abroad
            return None if has_kotikunta else {"change_type": "immigration", "previous_country": country}
        return {"change_type": "emigration", "destination_country": country}
    if name in ("KUOLINPAIVA", "KUOLLEEKSIJULISTAMISPAIVA"):
        field = "kuolinpv" if name == "KUOLINPAIVA" else "kuolleeksijulistamispv"
        if g.get("kuollut") is True:
            return {"change_type": "death", "death_date": parse_date(g.get(field), f"{where}.{field}")}
        return {"change_type": "other"}  # a death revoked (KORJATTU kuollut=false)
    if name in ("HUOLTAJA_SUPPEA", "HUOLTAJA"):
        # the field is about the person (any guardian in Finland), so every event carries the
        # aggregate of the muutos' guardian groups rather than this one guardian's answer
        _guardian_in_finland(g, on, where)
        return {"change_type": "guardian"}
    if name == "HENKILOTUNNUS_KORJAUS":
        if g.get("voimassaolo") == "PASSIIVI":
            return None  # the retired half of the correction pair
        new = g.get("aktiivinenHenkilotunnus") or g.get("muutettuHenkilotunnus")
        if not isinstance(new, str):
            raise MalformedMuutos(f"{where} has no aktiivinenHenkilotunnus / muutettuHenkilotunnus")
        earlier = g.get("edellisetHenkilotunnukset") or []
        if not isinstance(earlier, list):
            raise MalformedMuutos(f"{where}.edellisetHenkilotunnukset must be a list")
        # which code DVV puts at the top level (old or new) is not documented: take the other one
        previous = person_id if person_id != new else (earlier[-1] if earlier else None)
        if not isinstance(previous, str):
            raise MalformedMuutos(f"{where} names no previous identity code")
        born = hetu.birth_date(new) if hetu.is_valid(new) else None  # the old code may carry a wrong date
        return {"change_type": "identity_correction", "person_id": new, "previous_person_id": previous, "birth_date": born}
    if name == "TURVAKIELTO":
        return {"change_type": "non_disclosure"}
    return {"change_type": "other"}  # pragma: no cover - every mapped group is handled above


def map_muutos(muutos: object, *, secret: str, recorded_at: dt.datetime, batch_ref: str | None = None, source: str = SOURCE) -> MappedMuutos:
    """Map one muutos. Raises MalformedMuutos when it does not have the documented shape, and
    bounds.OutOfBounds when it has more data groups than hub/schemas/bounds.py allows.

    `secret` is the person-key secret (the event id is derived from the pseudonymous key).
    Values are not validated here (see hub/domain/population_change.py): a wrong code is carried as it came.
    """
    if not isinstance(muutos, dict):
        raise MalformedMuutos("a muutos must be a JSON object with henkilotunnus, muutospv and tietoryhmat")
    person_id = muutos.get("henkilotunnus")
    if not isinstance(person_id, str) or not person_id:
        raise MalformedMuutos("the muutos has no henkilotunnus (text)")
    raw_time = muutos.get("muutospv")
    occurred_at = parse_instant(raw_time, "muutospv")
    groups = muutos.get("tietoryhmat")
    if not isinstance(groups, list):
        raise MalformedMuutos("tietoryhmat must be a list of data groups")
    if len(groups) > bounds.MAX_DVV_DATA_GROUPS:  # each group may make an event
        raise bounds.OutOfBounds("tietoryhmat", f"tietoryhmat has {len(groups)} data groups; at most {bounds.MAX_DVV_DATA_GROUPS} are allowed")
    for i, g in enumerate(groups):
        if not isinstance(g, dict) or not isinstance(g.get("tietoryhma"), str) or not g["tietoryhma"]:
            raise MalformedMuutos(f"tietoryhmat[{i}] must be an object with a 'tietoryhma' name")
    on = occurred_at.date()
    person = _collect(groups, person_id, on)
    has_kotikunta = any(g["tietoryhma"] == KOTIKUNTA and g.get("muutosattribuutti") in UPDATE and MASK not in g for g in groups)
    key = hetu.person_key(person_id, secret)
    events: list[dict] = []
    unknown: list[str] = []
    for i, g in enumerate(groups):
        name = g["tietoryhma"]
        if name not in MAPPED_GROUPS and name not in CONTEXT_GROUPS:
            unknown.append(group_label(name))
        specific = _event_for(g, i, person_id, person, on, has_kotikunta)
        if specific is None:
            continue
        record = {
            "event_id": event_id(raw_time, key, name, i),
            "occurred_at": occurred_at,
            "recorded_at": recorded_at,
            "source": source,
            "schema_version": 1,
            "person_id": person_id,
            "municipality_code": person.municipality_code,
            "previous_municipality_code": person.previous_municipality_code,
            "previous_country": person.previous_country,
            "destination_country": person.destination_country,
            "nationalities": list(person.nationalities or []),
            "mother_tongue": person.mother_tongue,
            "birth_date": person.birth_date,
            "move_date": person.move_date,
            "contact_language": person.contact_language,
            "dvv_batch_ref": batch_ref,
            "previous_person_id": None,
            "guardian_in_finland": person.guardian_in_finland,
            "turvakielto": person.turvakielto,
            "data_group": name,
            "death_date": None,
            "arrived_in_finland": person.arrived_in_finland,
        }
        record.update({k: v for k, v in specific.items() if v is not None or k in ("municipality_code", "move_date")})
        if specific["change_type"] == "nationality":
            record["nationalities"] = specific["nationalities"]
        if record["change_type"] == "immigration":
            record["previous_municipality_code"] = None
        events.append(record)
    return MappedMuutos(events=tuple(events), unknown_groups=tuple(unknown), person_id=person_id)
