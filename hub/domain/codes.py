"""Reference code tables of the population data (country and language codes), loaded once.

- `countries_iso3166.csv`: ISO 3166-1 numeric -> alpha-2 (DVV sends numeric `valtiokoodi` and
  `kansalaisuuskoodi`), generated from Debian's iso-codes 4.15.0.
- `languages_iso639_1.txt`: the ISO 639-1 codes (DVV's `kielikoodi`), same source.
The municipality codes are the routing's reference data (`hub.routing.reference`): validation takes
them as an argument.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

# Codes DVV still uses for states that no longer exist (OPH maps the same ones); ISO 3166-3 keeps
# their former alpha-2 codes. 998 is DVV's "unknown / stateless"; XX is the user-assigned alpha-2
# code the hub uses for it (ISO 3166-1 reserves XA-XZ for such use).
LEGACY_COUNTRIES = {
    "736": "SD",  # Sudan before 2011 -> Sudan (729)
    "230": "ET",  # Ethiopia before 1993 -> Ethiopia (231)
    "810": "SU",  # USSR
    "890": "YU",  # Yugoslavia
    "891": "CS",  # Serbia and Montenegro
    "200": "CS",  # Czechoslovakia
    "278": "DD",  # German Democratic Republic
    "280": "DE",  # Federal Republic of Germany before 1990
    "720": "YE",  # Democratic Yemen
    "886": "YE",  # Yemen Arab Republic
}
UNKNOWN_COUNTRY_NUMERIC = "998"
UNKNOWN_COUNTRY = "XX"
FORMER_ALPHA2 = frozenset({"SU", "YU", "CS", "DD", UNKNOWN_COUNTRY})

# DVV's own language codes beside ISO 639-1: 98 = Finnish sign language (suomalainen viittomakieli),
# 99 = unknown. Deprecated ISO 639-1 codes are mapped to their successors as OPH does.
SPECIAL_LANGUAGES = frozenset({"98", "99"})
LEGACY_LANGUAGES = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro"}


def _lines(name: str) -> list[str]:
    return [ln.strip() for ln in (DATA / name).read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]


@lru_cache(maxsize=1)
def numeric_to_alpha2() -> dict[str, str]:
    rows = csv.DictReader(_lines("countries_iso3166.csv"))
    return {**LEGACY_COUNTRIES, **{r["numeric"]: r["alpha_2"] for r in rows}, UNKNOWN_COUNTRY_NUMERIC: UNKNOWN_COUNTRY}


@lru_cache(maxsize=1)
def alpha2_countries() -> frozenset[str]:
    return frozenset(numeric_to_alpha2().values()) | FORMER_ALPHA2


@lru_cache(maxsize=1)
def languages() -> frozenset[str]:
    return frozenset(_lines("languages_iso639_1.txt")) | SPECIAL_LANGUAGES


def country_alpha2(code: object) -> str | None:
    """ISO 3166-1 alpha-2 for DVV's numeric country code; the code unchanged when unknown
    (validation then rejects it); None when absent."""
    if code is None or code == "":
        return None
    text = str(code).strip()
    if text.isdigit():
        text = text.zfill(3)
    return numeric_to_alpha2().get(text, text)


def language(code: object) -> str | None:
    """DVV's `kielikoodi` in the hub's form (lower case, legacy codes mapped); None when absent."""
    if code is None or code == "":
        return None
    text = str(code).strip().lower()
    return LEGACY_LANGUAGES.get(text, text)
