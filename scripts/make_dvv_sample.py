"""Generate the synthetic DVV day shipped in hub/adapters/dvv/sample/ (test identity codes only).

Run from the repository root: `python scripts/make_dvv_sample.py`. The output is deterministic.
Every identity code has individual number 900-999 (a test code); three records are bad on purpose.
"""

import datetime as dt
import json
from pathlib import Path

from hub.domain.clock import iso_utc
from hub.domain.hetu import make

OUT = Path("hub/adapters/dvv/sample")
DAY = dt.date(2026, 11, 16)
_serial = iter(range(900, 1000))
_t = [0]


def hetu(born: str, sign: str | None = None) -> str:
    return make(dt.date.fromisoformat(born), next(_serial), sign)


def d(text: str) -> dict:
    return {"arvo": text, "tarkkuus": "PAIVA"}


def when() -> str:
    _t[0] += 1
    t = dt.datetime(2026, 11, 16, 5, 0, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=11 * _t[0], milliseconds=137 * _t[0])
    return iso_utc(t, "milliseconds")


def change(person: str, *groups) -> dict:
    return {"henkilotunnus": person, "tietoryhmat": list(groups), "muutospv": when()}


def kotikunta(code: str, on: str) -> dict:
    return {"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": code, "kuntaanMuuttopv": d(on), "kuntaanMuuttoPv": d(on)}


def arrival(person, municipality, on, language, nationalities, country, *extra) -> dict:
    groups = [
        kotikunta(municipality, on),
        {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": language, "alkupv": d(on)},
        {
            "tietoryhma": "KANSALAISUUS",
            "muutosattribuutti": "LISATTY",
            "henkilonKansalaisuudet": [{"kansalaisuuskoodi": n, "voimassaolo": "AKTIIVI"} for n in nationalities],
            "lisatytKansalaisuudet": [{"kansalaisuuskoodi": n, "voimassaolo": "AKTIIVI"} for n in nationalities],
        },
        {"tietoryhma": "SUOMEEN_MUUTTOPAIVA", "muutosattribuutti": "LISATTY", "suomeenMuuttopv": d(on)},
        {
            "tietoryhma": "VAKINAINEN_ULKOMAINEN_OSOITE",
            "muutosattribuutti": "MUUTETTU",
            "lahiosoite": "Test Street 1",
            "paikkakunta": "TEST CITY",
            "valtiokoodi": country,
            "loppupv": d((dt.date.fromisoformat(on) - dt.timedelta(days=1)).isoformat()),
        },
    ]
    return change(person, *groups, *extra)


def guardian(code: str | None, born: str, role: str = "AITI") -> dict:
    who = {"etunimet": "Testi", "sukunimi": "Huoltaja Tes", "syntymapv": d(born), "sukupuoli": "NAINEN" if role == "AITI" else "MIES"}
    if code:
        who["henkilotunnus"] = code
    return {
        "tietoryhma": "HUOLTAJA_SUPPEA",
        "muutosattribuutti": "LISATTY",
        "huoltaja": who,
        "huoltajanLaji": "LAKISAATEINEN_HUOLTAJA",
        "huoltajanRooli": role,
        "huoltosuhteenAlkupv": d("2026-11-03"),
        "oikeudet": [],
        "huoltosuhteenMuutos": False,
        "huollonOikeudenMuutos": False,
        "huollonAsumisenMuutos": False,
    }


def move(person, new, old, on, old_since="2024-02-01") -> dict:
    return change(
        person,
        kotikunta(new, on),
        {"tietoryhma": "EDELLINEN_KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": old, "kuntaanMuuttopv": d(old_since), "kunnastaPoisMuuttopv": d(on)},
        {"tietoryhma": "VAESTOKIRJANPITOKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": new, "kuntaanMuuttopv": d(on)},
    )


def main() -> None:
    ua_mother = hetu("1991-04-12")
    ua_son = hetu("2014-09-03")
    ua_baby = hetu("2025-06-20")
    sy_father = hetu("1984-01-30")
    ir_mother = hetu("1993-08-08", "Y")  # a 2023-style century sign
    page1 = [
        arrival(ua_mother, "091", "2026-11-03", "uk", ["804"], "804"),
        arrival(ua_son, "091", "2026-11-03", "uk", ["804"], "804", guardian(ua_mother, "1991-04-12")),
        arrival(ua_baby, "091", "2026-11-03", "uk", ["804"], "804", guardian(ua_mother, "1991-04-12")),
        arrival(sy_father, "049", "2026-11-04", "ar", ["760"], "760"),
        # a 16-year-old whose only guardian is abroad (no Finnish identity code): unaccompanied
        arrival(hetu("2010-05-17"), "049", "2026-11-04", "ar", ["760"], "760", guardian(None, "1975-02-02", "ISA")),
        # a minor with no guardian data at all
        arrival(hetu("2011-12-01"), "092", "2026-11-05", "fa", ["004"], "364"),
        arrival(hetu("1988-03-21"), "092", "2026-11-05", "ar", ["368"], "368"),
        arrival(hetu("1979-07-07"), "837", "2026-11-06", "so", ["706"], "706"),
        arrival(hetu("1995-10-10"), "853", "2026-11-06", "ru", ["643"], "643"),
        arrival(hetu("1990-02-14"), "091", "2026-11-06", "et", ["233"], "233"),
        arrival(hetu("1992-11-30"), "049", "2026-11-09", "hi", ["356"], "356"),
        arrival(hetu("1987-06-05"), "564", "2026-11-09", "zh", ["156"], "156"),
        arrival(hetu("1996-01-19"), "837", "2026-11-09", "tl", ["608"], "608"),
        arrival(hetu("1985-09-09"), "478", "2026-11-10", "sv", ["752"], "752"),  # to Mariehamn, Åland
        arrival(ir_mother, "853", "2026-11-10", "fa", ["364"], "364"),
        move(hetu("1983-04-04"), "049", "091", "2026-11-02", "2023-09-01"),
        move(hetu("1990-12-12"), "091", "837", "2026-11-03", "2024-05-15"),
    ]
    page2 = [
        arrival(hetu("1993-05-25"), "091", "2026-11-10", "tr", ["792"], "792"),
        arrival(hetu("1989-08-18"), "564", "2026-11-10", "en", ["566"], "566"),
        arrival(hetu("1994-04-02"), "049", "2026-11-11", "pt", ["076"], "076"),
        arrival(hetu("1980-03-03"), "091", "2026-11-11", "ku", ["998"], "368"),  # stateless
        arrival(hetu("1986-10-31"), "092", "2026-11-11", "ku", ["368", "752"], "752"),  # dual nationality
        arrival(hetu("1978-12-24"), "837", "2026-11-12", "fi", ["246"], "840"),  # a Finnish citizen returning
        arrival(hetu("1997-07-15"), "853", "2026-11-12", "vi", ["704"], "704"),
        arrival(hetu("2009-02-28"), "091", "2026-11-12", "so", ["706"], "706", guardian(None, "1970-01-01", "AITI")),
        # arrival of a person with turvakielto: every event of the change is marked
        arrival(
            hetu("1990-06-06"), "091", "2026-11-12", "uk", ["804"], "804",
            {"tietoryhma": "TURVAKIELTO", "muutosattribuutti": "LISATTY", "turvakieltoAktiivinen": True, "turvaLoppuPv": d("2031-11-12")},
        ),
        move(hetu("1991-09-19"), "853", "092", "2026-11-04", "2025-01-10"),
        move(hetu("1988-08-28"), "837", "564", "2026-11-05", "2024-11-01"),
        move(sy_father, "092", "049", "2026-11-13", "2026-11-04"),  # an arrival of this week moves on
        change(
            hetu("1975-05-05"),
            {"tietoryhma": "TURVAKIELTO", "muutosattribuutti": "LISATTY", "turvakieltoAktiivinen": True, "turvaLoppuPv": d("2031-11-13")},
            {"tietoryhma": "VAKINAINEN_KOTIMAINEN_OSOITE", "muutosattribuutti": "MUUTETTU", "turvakiellonAlaisetKentat": ["katunimi", "katunumero", "postinumero"]},
            {"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "turvakiellonAlaisetKentat": ["kuntakoodi", "kuntaanMuuttopv"]},
        ),
        change(hetu("1940-01-15"), {"tietoryhma": "KUOLINPAIVA", "muutosattribuutti": "LISATTY", "kuollut": True, "kuolinpv": d("2026-11-13")}),
        change(
            hetu("1999-03-03"),
            {"tietoryhma": "VAKINAINEN_ULKOMAINEN_OSOITE", "muutosattribuutti": "LISATTY", "lahiosoite": "Teststrasse 5", "paikkakunta": "10115 BERLIN", "valtiokoodi": "276", "alkupv": d("2026-11-14")},
        ),
    ]
    old = hetu("1992-07-01")
    new = make(dt.date(1992, 8, 1), int(old[7:10]))
    bad_checksum = hetu("1994-02-02")
    bad_checksum = bad_checksum[:-1] + ("X" if bad_checksum[-1] != "X" else "Y")
    page3 = [
        arrival(hetu("1998-09-29"), "049", "2026-11-13", "ar", ["818"], "818"),
        arrival(hetu("2012-04-14"), "092", "2026-11-13", "ti", ["232"], "232", guardian(hetu("1982-10-10"), "1982-10-10")),
        arrival(hetu("1983-11-11"), "837", "2026-11-13", "th", ["764"], "764"),
        arrival(hetu("1991-01-01"), "853", "2026-11-16", "es", ["724"], "724"),
        change(
            old,
            {"tietoryhma": "HENKILOTUNNUS_KORJAUS", "voimassaolo": "AKTIIVI", "muutosattribuutti": "LISATTY", "muutettuHenkilotunnus": new, "aktiivinenHenkilotunnus": new, "edellisetHenkilotunnukset": [old]},
            {"tietoryhma": "HENKILOTUNNUS_KORJAUS", "voimassaolo": "PASSIIVI", "muutosattribuutti": "MUUTETTU", "muutettuHenkilotunnus": old, "aktiivinenHenkilotunnus": new, "edellisetHenkilotunnukset": [old]},
            {"tietoryhma": "SYNTYMAPAIVA", "muutosattribuutti": "MUUTETTU", "syntymapv": d("1992-08-01")},
        ),
        change(hetu("1987-02-02"), {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": "ru", "alkupv": d("2026-11-14")}),
        change(
            hetu("1984-04-24"),
            {"tietoryhma": "KANSALAISUUS", "muutosattribuutti": "MUUTETTU", "henkilonKansalaisuudet": [{"kansalaisuuskoodi": "643", "voimassaolo": "AKTIIVI"}, {"kansalaisuuskoodi": "246", "voimassaolo": "AKTIIVI"}]},
        ),
        change(hetu("1993-03-13"), {"tietoryhma": "HENKILON_NIMI", "muutosattribuutti": "MUUTETTU", "etunimi": "Testi", "sukunimi": "Uusinimi Tes"}),
        change(
            hetu("1996-06-16"),
            {"tietoryhma": "TILAPAINEN_ULKOMAINEN_OSOITE", "muutosattribuutti": "LISATTY", "lahiosoite": "Testgatan 4", "paikkakunta": "STOCKHOLM", "valtiokoodi": "752", "alkupv": d("2026-11-01"), "loppupv": d("2027-05-31")},
        ),
        change(hetu("1977-07-27"), {"tietoryhma": "JOKU_UUSI_TIETORYHMA", "muutosattribuutti": "LISATTY", "uusiKentta": "arvo"}),
        move(hetu("1990-10-20"), "564", "091", "2026-11-14", "2025-08-01"),
        # three bad records, on purpose
        arrival(bad_checksum, "091", "2026-11-13", "ar", ["760"], "760"),  # identity code check character wrong
        arrival(hetu("1995-05-05"), "099", "2026-11-13", "uk", ["804"], "804"),  # no municipality 099
        arrival(hetu("1989-09-09"), "092", "2099-01-01", "ar", ["368"], "368"),  # move date in the future
    ]
    keys = [7100000000, 7100000731, 7100001460, 7100002205]
    OUT.mkdir(parents=True, exist_ok=True)
    for n, changes in enumerate((page1, page2, page3)):
        body = {"viimeisinKirjausavain": keys[n + 1], "muutokset": changes, "ajanTasalla": n == 2}
        (OUT / f"day-{DAY.isoformat()}-page{n + 1}.json").write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (OUT / "kirjausavain.json").write_text(json.dumps({"viimeisinKirjausavain": keys[0]}) + "\n")
    print(f"{sum(map(len, (page1, page2, page3)))} changes in 3 pages; serials used up to {next(_serial) - 1}")


if __name__ == "__main__":
    main()
