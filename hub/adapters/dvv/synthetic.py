"""A synthetic day of DVV change data of any size, for the demo and the benchmarks.

Deterministic for a seed; saved-`muutokset` pages in the documented format; test identity codes
only (individual numbers 900-999). The mix: arrivals from abroad (adults, children with and
without a guardian in Finland, the elderly), moves between municipalities, name and address
changes, deaths, emigration, long-time foreign residents moving, and a few bad records.
"""

from __future__ import annotations

import datetime as dt
import json
import random

from hub.domain.clock import iso_utc
from hub.domain.hetu import make

# (municipality code, weight): big cities receive most arrivals
MUNICIPALITIES = [("091", 30), ("049", 14), ("092", 12), ("837", 8), ("853", 7), ("564", 5), ("179", 4), ("398", 3), ("297", 3), ("743", 2),
                  ("109", 2), ("405", 2), ("905", 2), ("478", 1), ("005", 1), ("698", 1)]
# (ISO 3166 numeric, language, weight) of arrivals
ORIGINS = [("804", "uk", 20), ("643", "ru", 8), ("368", "ar", 8), ("760", "ar", 5), ("004", "fa", 6), ("706", "so", 6), ("356", "hi", 5),
           ("608", "tl", 4), ("704", "vi", 4), ("156", "zh", 4), ("233", "et", 5), ("752", "sv", 3), ("566", "en", 3), ("076", "pt", 2),
           ("524", "ne", 3), ("050", "bn", 3), ("231", "am", 2), ("792", "tr", 3)]


def _pick(rng: random.Random, table):
    return rng.choices(table, weights=[row[-1] for row in table])[0]


def _d(day: dt.date) -> dict:
    return {"arvo": day.isoformat(), "tarkkuus": "PAIVA"}


class _Codes:
    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set()

    def new(self, born: dt.date) -> str:
        while True:
            code = make(born, self.rng.randint(900, 999))
            if code not in self.used:
                self.used.add(code)
                return code
            born += dt.timedelta(days=1)


def generate_pages(changes: int = 3000, seed: int = 2025, day: dt.date = dt.date(2026, 11, 16), page_size: int = 500, first_key: int = 7_000_000) -> list[str]:
    """`changes` changes as JSON texts of `muutokset` pages (the last one `ajanTasalla`)."""
    rng = random.Random(seed)
    codes = _Codes(rng)
    start = dt.datetime.combine(day, dt.time(4, 0), dt.timezone.utc)
    out: list[dict] = []

    def born(lo: int, hi: int) -> dt.date:
        return day - dt.timedelta(days=rng.randint(lo * 365, hi * 365))

    for i in range(changes):
        when = iso_utc(start + dt.timedelta(seconds=i * 50400 // max(changes, 1)), "milliseconds")
        moved_on = day - dt.timedelta(days=rng.randint(1, 20))
        municipality = _pick(rng, MUNICIPALITIES)[0]
        r = rng.random()
        if r < 0.004:  # bad on purpose: a broken check character
            good = codes.new(born(20, 60))
            person = good[:-1] + ("X" if good[-1] != "X" else "Y")
            groups = [{"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": municipality, "kuntaanMuuttopv": _d(moved_on)}]
        elif r < 0.007:  # bad on purpose: a municipality code that does not exist
            person = codes.new(born(20, 60))
            groups = [{"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": "999", "kuntaanMuuttopv": _d(moved_on)}]
        elif r < 0.15:  # arrival from abroad
            country, language, _ = _pick(rng, ORIGINS)
            age = rng.choices([(0, 17), (18, 29), (30, 64), (65, 85)], weights=[18, 35, 40, 7])[0]
            person = codes.new(born(*age))
            groups = [
                {"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": municipality, "kuntaanMuuttopv": _d(moved_on)},
                {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": language, "alkupv": _d(moved_on)},
                {"tietoryhma": "KANSALAISUUS", "muutosattribuutti": "LISATTY",
                 "henkilonKansalaisuudet": [{"kansalaisuuskoodi": country, "voimassaolo": "AKTIIVI"}]},
                {"tietoryhma": "VAKINAINEN_ULKOMAINEN_OSOITE", "muutosattribuutti": "MUUTETTU", "valtiokoodi": country,
                 "loppupv": _d(moved_on - dt.timedelta(days=1))},
            ]
            if age == (0, 17):
                with_guardian = rng.random() < 0.9
                groups.append({"tietoryhma": "HUOLTAJA_SUPPEA", "muutosattribuutti": "LISATTY", "huoltajanLaji": "LAKISAATEINEN",
                               "huoltaja": {"henkilotunnus": codes.new(born(30, 50))} if with_guardian else {"etunimet": "Test", "sukunimi": "Abroad"},
                               "huoltosuhteenAlkupv": _d(moved_on)})
        elif r < 0.55:  # a Finn moving between municipalities
            old = _pick(rng, MUNICIPALITIES)[0]
            person = codes.new(born(0, 90))
            groups = [
                {"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": municipality, "kuntaanMuuttopv": _d(moved_on)},
                {"tietoryhma": "EDELLINEN_KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": old, "kunnastaPoisMuuttopv": _d(moved_on)},
                {"tietoryhma": "KANSALAISUUS", "muutosattribuutti": "LISATIETO", "henkilonKansalaisuudet": [{"kansalaisuuskoodi": "246", "voimassaolo": "AKTIIVI"}]},
            ]
        elif r < 0.60:  # a foreign national who has lived here for years, moving
            country, language, _ = _pick(rng, ORIGINS)
            person = codes.new(born(25, 70))
            groups = [
                {"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": municipality, "kuntaanMuuttopv": _d(moved_on)},
                {"tietoryhma": "EDELLINEN_KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": _pick(rng, MUNICIPALITIES)[0], "kunnastaPoisMuuttopv": _d(moved_on)},
                {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATIETO", "kielikoodi": language},
            ]
        elif r < 0.72:
            person = codes.new(born(18, 80))
            groups = [{"tietoryhma": "HENKILON_NIMI", "muutosattribuutti": "MUUTETTU", "etunimi": "Testi", "sukunimi": "Testinen"}]
        elif r < 0.77:
            person = codes.new(born(60, 100))
            groups = [{"tietoryhma": "KUOLINPAIVA", "muutosattribuutti": "LISATTY", "kuollut": True, "kuolinpv": _d(day - dt.timedelta(days=rng.randint(1, 5)))}]
        elif r < 0.80:
            person = codes.new(born(20, 60))
            groups = [{"tietoryhma": "VAKINAINEN_ULKOMAINEN_OSOITE", "muutosattribuutti": "LISATTY", "valtiokoodi": _pick(rng, ORIGINS)[0], "alkupv": _d(moved_on)}]
        else:
            person = codes.new(born(18, 90))
            groups = [{"tietoryhma": "VAKINAINEN_KOTIMAINEN_OSOITE", "muutosattribuutti": "MUUTETTU", "katunimi": {"fi": "Testitie"}, "postinumero": "00100"}]
        out.append({"henkilotunnus": person, "muutospv": when, "tietoryhmat": groups})

    pages = []
    for n, lo in enumerate(range(0, len(out), page_size)):
        chunk = out[lo:lo + page_size]
        last = lo + page_size >= len(out)
        pages.append(json.dumps({"viimeisinKirjausavain": first_key + (n + 1) * page_size, "muutokset": chunk, "ajanTasalla": last}, ensure_ascii=False, indent=1))
    return pages
