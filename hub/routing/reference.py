"""Reference data of the routing: municipalities 2025 and who is responsible for what in each.

Authority ids are `<kind>:<code>` (the form every topic and record uses): `municipality:091`, `wellbeing_area:05`,
`employment_authority:08`. The data (Statistics Finland 2025 classifications, see data/README.md)
is read once per process by `default_reference()`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
VALID_FROM = "2025-01-01"
SOURCE = "Statistics Finland classifications 2025 (kunta_1_20250101 and its wellbeing-area and employment-area correspondences)"

MUNICIPALITY = "municipality"
WELLBEING_AREA = "wellbeing_area"
EMPLOYMENT_AUTHORITY = "employment_authority"
KINDS = (MUNICIPALITY, WELLBEING_AREA, EMPLOYMENT_AUTHORITY)

# Pseudo-areas of the wellbeing-area correspondence (see data/README.md).
HELSINKI_AREA = "90"  # Helsinki arranges social and health services itself
ALAND_AREA = "91"  # Åland: outside the wellbeing-services and TE-service reforms
ALAND_REASON = (
    "Åland is outside the wellbeing-services reform and the employment-services reform: social and health "
    "care (ÅHS) and employment services (AMS) are arranged under Åland's own legislation"
)


def authority_id(kind: str, code: str) -> str:
    return f"{kind}:{code}"


@dataclass(frozen=True, slots=True)
class Municipality:
    code: str
    name_fi: str
    name_sv: str


@dataclass(frozen=True, slots=True)
class Responsible:
    """Who holds one role for a municipality: an authority id, or None and why there is none."""

    role: str  # one of KINDS
    authority: str | None
    name: str | None
    note: str  # how the authority was found, or why there is none

    def as_dict(self) -> dict:
        return {"role": self.role, "authority": self.authority, "name": self.name, "note": self.note}


@dataclass(frozen=True, slots=True)
class Authorities:
    """The responsible authorities of one municipality, by role."""

    municipality: Municipality
    roles: dict[str, Responsible]

    def __getitem__(self, role: str) -> Responsible:
        return self.roles[role]


class UnknownMunicipality(KeyError):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return (
            f"municipality code {self.code!r} is not in the 2025 classification of Statistics Finland "
            "(308 municipalities, 3 digits, e.g. 091); check for a merged municipality or a missing leading zero"
        )


@dataclass(frozen=True)
class Reference:
    """Municipalities and their wellbeing area and employment area (codes and names)."""

    municipalities: dict[str, Municipality]
    wellbeing_area: dict[str, tuple[str, str]]  # municipality code -> (area code, area name)
    employment_area: dict[str, tuple[str, str]]
    valid_from: str = VALID_FROM
    source: str = SOURCE

    def municipality(self, code: str) -> Municipality:
        try:
            return self.municipalities[code]
        except (KeyError, TypeError):
            raise UnknownMunicipality(str(code)) from None

    def authorities(self, code: str) -> Authorities:
        """Who is responsible in municipality `code`. Raises UnknownMunicipality."""
        muni = self.municipality(code)
        own = Responsible(MUNICIPALITY, authority_id(MUNICIPALITY, code), muni.name_fi, "the municipality of residence")
        return Authorities(muni, {MUNICIPALITY: own, WELLBEING_AREA: self._wellbeing(muni), EMPLOYMENT_AUTHORITY: self._employment(muni)})

    def _wellbeing(self, muni: Municipality) -> Responsible:
        area = self.wellbeing_area.get(muni.code)
        if area is None:
            return Responsible(WELLBEING_AREA, None, None, f"{muni.name_fi} is not in the wellbeing-area classification")
        code, name = area
        if code == HELSINKI_AREA:
            return Responsible(
                WELLBEING_AREA,
                authority_id(MUNICIPALITY, muni.code),
                muni.name_fi,
                "Helsinki belongs to no wellbeing services county: the city arranges social and health services itself",
            )
        if code == ALAND_AREA:
            return Responsible(WELLBEING_AREA, None, None, f"no wellbeing area: {ALAND_REASON}")
        return Responsible(WELLBEING_AREA, authority_id(WELLBEING_AREA, code), name, f"{muni.name_fi} belongs to {name} ({code})")

    def _employment(self, muni: Municipality) -> Responsible:
        area = self.employment_area.get(muni.code)
        if area is None:
            if self.wellbeing_area.get(muni.code, ("",))[0] == ALAND_AREA:
                return Responsible(EMPLOYMENT_AUTHORITY, None, None, f"no employment area: {ALAND_REASON}")
            return Responsible(EMPLOYMENT_AUTHORITY, None, None, f"{muni.name_fi} is in no employment area of the 2025 classification")
        code, name = area
        return Responsible(
            EMPLOYMENT_AUTHORITY,
            authority_id(EMPLOYMENT_AUTHORITY, code),
            name,
            f"{muni.name_fi} belongs to the employment area {name} ({code}) since 1.1.2025",
        )

    def authority_ids(self) -> frozenset[str]:
        """Every authority id that exists: each municipality, each wellbeing area (not Helsinki's,
        which the city itself is, nor Åland's), each employment area."""
        ids = {authority_id(MUNICIPALITY, code) for code in self.municipalities}
        ids |= {authority_id(WELLBEING_AREA, code) for code, _ in self.wellbeing_area.values() if code not in (HELSINKI_AREA, ALAND_AREA)}
        ids |= {authority_id(EMPLOYMENT_AUTHORITY, code) for code, _ in self.employment_area.values()}
        return frozenset(ids)

    def describe(self, authority: str) -> str | None:
        """A human name for an authority id (None when unknown)."""
        kind, _, code = authority.partition(":")
        if kind == MUNICIPALITY and code in self.municipalities:
            return self.municipalities[code].name_fi
        table = self.wellbeing_area if kind == WELLBEING_AREA else self.employment_area if kind == EMPLOYMENT_AUTHORITY else {}
        for area_code, name in table.values():
            if area_code == code:
                return name
        return None


def _rows(path: Path, columns: list[str]) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != columns:
            raise ValueError(f"{path.name}: expected columns {columns}, got {reader.fieldnames}")
        return list(reader)


def load_reference(data_dir: Path = DATA_DIR) -> Reference:
    munis = {r["code"]: Municipality(r["code"], r["name_fi"], r["name_sv"]) for r in _rows(data_dir / "municipalities_2025.csv", ["code", "name_fi", "name_sv"])}
    wellbeing = {
        r["municipality_code"]: (r["wellbeing_area_code"], r["wellbeing_area_name_fi"])
        for r in _rows(data_dir / "wellbeing_areas_2025.csv", ["municipality_code", "wellbeing_area_code", "wellbeing_area_name_fi"])
    }
    employment = {
        r["municipality_code"]: (r["employment_area_code"], r["employment_area_name_fi"])
        for r in _rows(data_dir / "employment_areas_2025.csv", ["municipality_code", "employment_area_code", "employment_area_name_fi"])
    }
    unknown = (set(wellbeing) | set(employment)) - set(munis)
    if unknown:
        raise ValueError(f"reference data maps municipality codes that do not exist: {sorted(unknown)}")
    return Reference(munis, wellbeing, employment)


@lru_cache(maxsize=1)
def default_reference() -> Reference:
    """The reference data shipped in the package, read once per process."""
    return load_reference()


@lru_cache(maxsize=1)
def known_authority_ids() -> frozenset[str]:
    """The authority ids of the shipped reference data (an assessor, a consent's recipient, ...)."""
    return default_reference().authority_ids()


@lru_cache(maxsize=1)
def municipality_codes() -> frozenset[str]:
    """The 2025 municipality codes of the shipped reference data (what a PopulationChange's
    municipality codes are validated against: `hub.domain.population_change.validate`)."""
    return frozenset(default_reference().municipalities)
