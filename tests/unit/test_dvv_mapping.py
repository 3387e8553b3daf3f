"""The mapping of DVV data groups into PopulationChange records (pure)."""

import datetime as dt
from pathlib import Path

import pytest

from hub.adapters.dvv.mapping import MalformedMuutos, map_muutos
from hub.domain.hetu import make
from hub.schemas.codec import default_codec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dvv"
NOW = dt.datetime(2026, 5, 20, 12, 0, tzinfo=dt.timezone.utc)
ADULT = make(dt.date(1990, 3, 4), 911)
CHILD = make(dt.date(2015, 7, 1), 922)
GUARDIAN = make(dt.date(1985, 1, 2), 933)


def d(text):
    return {"arvo": text, "tarkkuus": "PAIVA"}


def muutos(*groups, person=ADULT, when="2026-05-11T05:12:31.418Z"):
    return {"henkilotunnus": person, "muutospv": when, "tietoryhmat": list(groups)}


def run(m, **kw):
    return map_muutos(m, secret="test-secret", recorded_at=NOW, batch_ref="42", **kw)


def kotikunta(code="091", on="2026-05-04", attr="LISATTY"):
    return {"tietoryhma": "KOTIKUNTA", "muutosattribuutti": attr, "kuntakoodi": code, "kuntaanMuuttopv": d(on), "kuntaanMuuttoPv": d(on)}


def test_arrival_from_abroad_is_immigration_with_language_nationality_and_previous_country():
    m = muutos(
        kotikunta("091"),
        {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": "ar", "alkupv": d("2026-05-04")},
        {"tietoryhma": "KANSALAISUUS", "muutosattribuutti": "LISATTY", "henkilonKansalaisuudet": [{"kansalaisuuskoodi": "760", "voimassaolo": "AKTIIVI"}]},
        {"tietoryhma": "VAKINAINEN_ULKOMAINEN_OSOITE", "muutosattribuutti": "MUUTETTU", "valtiokoodi": "760", "loppupv": d("2026-05-03")},
        {"tietoryhma": "SUOMEEN_MUUTTOPAIVA", "muutosattribuutti": "LISATTY", "suomeenMuuttopv": d("2026-05-04")},
    )
    out = run(m)
    assert [e["change_type"] for e in out.events] == ["immigration", "language", "nationality"]
    home = out.events[0]
    assert home["municipality_code"] == "091" and home["move_date"] == dt.date(2026, 5, 4)
    assert home["previous_municipality_code"] is None and home["previous_country"] == "SY"
    # the person's other attributes of the same muutos travel on the home-municipality event
    assert home["mother_tongue"] == "ar" and home["nationalities"] == ["SY"] and home["birth_date"] == dt.date(1990, 3, 4)
    assert home["data_group"] == "KOTIKUNTA" and home["dvv_batch_ref"] == "42" and home["source"] == "dvv:muutosrajapinta"
    assert home["occurred_at"] == dt.datetime(2026, 5, 11, 5, 12, 31, 418000, tzinfo=dt.timezone.utc)
    for e in out.events:
        default_codec().encode("PopulationChange", e)


def test_first_home_municipality_without_previous_one_is_immigration():
    (event,) = run(muutos(kotikunta("837"))).events
    assert event["change_type"] == "immigration" and event["municipality_code"] == "837"


def test_move_between_finnish_municipalities_is_move_in_with_previous_municipality():
    m = muutos(
        kotikunta("049", "2026-05-01"),
        {"tietoryhma": "EDELLINEN_KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": "91", "kunnastaPoisMuuttopv": d("2026-04-30")},
        {"tietoryhma": "VAESTOKIRJANPITOKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": "049"},
    )
    (event,) = run(m).events
    assert event["change_type"] == "move_in"
    assert (event["municipality_code"], event["previous_municipality_code"]) == ("049", "091")


def test_date_of_moving_to_finland_travels_on_every_event_of_the_muutos_and_is_never_guessed():
    moving = muutos(
        kotikunta("049", "2025-02-20"),
        {"tietoryhma": "EDELLINEN_KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": "091", "kunnastaPoisMuuttopv": d("2025-02-19")},
        {"tietoryhma": "SUOMEEN_MUUTTOPAIVA", "muutosattribuutti": "LISATIETO", "suomeenMuuttopv": d("2024-03-01")},
        {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": "ar"},
    )
    events = run(moving).events
    assert [e["change_type"] for e in events] == ["move_in", "language"]  # the group makes no event of its own
    assert {e["arrived_in_finland"] for e in events} == {dt.date(2024, 3, 1)}
    default_codec().encode("PopulationChange", events[0])
    (plain,) = run(muutos(kotikunta("049"), {"tietoryhma": "EDELLINEN_KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": "091"})).events
    assert plain["arrived_in_finland"] is None
    bad = muutos(kotikunta("049"), {"tietoryhma": "SUOMEEN_MUUTTOPAIVA", "muutosattribuutti": "LISATTY", "suomeenMuuttopv": d("2024-13-01")})
    with pytest.raises(MalformedMuutos, match="suomeenMuuttopv"):
        run(bad)


def test_mother_tongue_change_takes_the_new_value_not_the_removed_one():
    m = muutos(
        {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": "SV", "alkupv": d("2026-05-07")},
        {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "POISTETTU", "kielikoodi": "fi", "loppupv": d("2026-05-07"), "voimassaolevatTiedot": [{"kielikoodi": "sv"}]},
    )
    (event,) = run(m).events
    assert event["change_type"] == "language" and event["mother_tongue"] == "sv"


def test_legacy_language_code_is_mapped():
    (event,) = run(muutos({"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": "iw"})).events
    assert event["mother_tongue"] == "he"


def test_nationalities_drop_passive_ones_and_map_numeric_codes_to_alpha2():
    g = {
        "tietoryhma": "KANSALAISUUS",
        "muutosattribuutti": "MUUTETTU",
        "henkilonKansalaisuudet": [
            {"kansalaisuuskoodi": "804", "voimassaolo": "AKTIIVI"},
            {"kansalaisuuskoodi": "643", "voimassaolo": "PASSIIVI"},
            {"kansalaisuuskoodi": "246", "voimassaolo": "AKTIIVI"},
            {"kansalaisuuskoodi": "998", "voimassaolo": "AKTIIVI"},
            {"kansalaisuuskoodi": "736", "voimassaolo": "AKTIIVI"},
        ],
    }
    (event,) = run(muutos(g)).events
    assert event["change_type"] == "nationality" and event["nationalities"] == ["UA", "FI", "XX", "SD"]


def test_unknown_numeric_country_is_kept_for_validation_to_reject():
    g = {"tietoryhma": "KANSALAISUUS", "muutosattribuutti": "LISATTY", "henkilonKansalaisuudet": [{"kansalaisuuskoodi": "999"}]}
    (event,) = run(muutos(g)).events
    assert event["nationalities"] == ["999"]


def test_new_permanent_address_abroad_is_emigration():
    g = {"tietoryhma": "VAKINAINEN_ULKOMAINEN_OSOITE", "muutosattribuutti": "LISATTY", "valtiokoodi": "752", "alkupv": d("2026-05-01")}
    (event,) = run(muutos(g)).events
    assert event["change_type"] == "emigration" and event["destination_country"] == "SE"


def test_closed_permanent_address_abroad_alone_is_an_arrival_from_abroad():
    g = {"tietoryhma": "VAKINAINEN_ULKOMAINEN_OSOITE", "muutosattribuutti": "MUUTETTU", "valtiokoodi": "233", "loppupv": d("2026-05-03")}
    (event,) = run(muutos(g)).events
    assert event["change_type"] == "immigration" and event["previous_country"] == "EE" and event["municipality_code"] is None


def test_temporary_address_abroad_is_neither_emigration_nor_arrival():
    g = {"tietoryhma": "TILAPAINEN_ULKOMAINEN_OSOITE", "muutosattribuutti": "LISATTY", "valtiokoodi": "752", "loppupv": d("2026-12-31")}
    (event,) = run(muutos(g)).events
    assert event["change_type"] == "other" and event["destination_country"] == "SE"
    g = dict(g, muutosattribuutti="MUUTETTU", loppupv=d("2026-05-01"))
    (event,) = run(muutos(g)).events
    assert event["change_type"] == "other" and event["previous_country"] == "SE"


def test_death_and_revoked_death():
    (event,) = run(muutos({"tietoryhma": "KUOLINPAIVA", "muutosattribuutti": "LISATTY", "kuollut": True, "kuolinpv": d("2026-05-09")})).events
    assert event["change_type"] == "death" and event["death_date"] == dt.date(2026, 5, 9)
    revoked = muutos(
        {"tietoryhma": "KUOLINPAIVA", "muutosattribuutti": "KORJATTAVA", "kuollut": True, "kuolinpv": d("2026-05-09")},
        {"tietoryhma": "KUOLINPAIVA", "muutosattribuutti": "KORJATTU", "kuollut": False},
    )
    (event,) = run(revoked).events
    assert event["change_type"] == "other" and event["data_group"] == "KUOLINPAIVA"


def guardian(code=GUARDIAN, end=None):
    g = {"tietoryhma": "HUOLTAJA_SUPPEA", "muutosattribuutti": "LISATTY", "huoltaja": {"etunimet": "Testi", "sukunimi": "Huoltaja"}, "huoltosuhteenAlkupv": d("2015-07-01")}
    if code:
        g["huoltaja"]["henkilotunnus"] = code
    if end:
        g["huoltosuhteenLoppupv"] = d(end)
    return g


def test_guardian_with_a_finnish_identity_code_is_in_finland():
    out = run(muutos(kotikunta("092"), guardian(), person=CHILD))
    assert [e["change_type"] for e in out.events] == ["immigration", "guardian"]
    assert all(e["guardian_in_finland"] is True for e in out.events)


def test_guardian_without_a_finnish_identity_code_is_not_in_finland():
    out = run(muutos(kotikunta("092"), guardian(code=None), person=CHILD))
    assert all(e["guardian_in_finland"] is False for e in out.events)


def test_any_guardian_in_finland_counts_and_no_guardian_group_is_unknown():
    out = run(muutos(guardian(code=None), guardian(), person=CHILD))
    assert all(e["guardian_in_finland"] is True for e in out.events)
    (event,) = run(muutos(kotikunta("092"), person=CHILD)).events
    assert event["guardian_in_finland"] is None


def test_ended_guardianship_says_nothing():
    (event,) = run(muutos(guardian(end="2026-01-01"), person=CHILD)).events
    assert event["change_type"] == "guardian" and event["guardian_in_finland"] is None


def test_identity_correction_names_new_and_old_code_once():
    old, new = make(dt.date(1990, 5, 1), 961), make(dt.date(1990, 6, 1), 961)
    m = muutos(
        {"tietoryhma": "HENKILOTUNNUS_KORJAUS", "voimassaolo": "AKTIIVI", "muutosattribuutti": "LISATTY", "muutettuHenkilotunnus": new, "aktiivinenHenkilotunnus": new, "edellisetHenkilotunnukset": [old]},
        {"tietoryhma": "HENKILOTUNNUS_KORJAUS", "voimassaolo": "PASSIIVI", "muutosattribuutti": "MUUTETTU", "muutettuHenkilotunnus": old, "aktiivinenHenkilotunnus": new, "edellisetHenkilotunnukset": [old]},
        {"tietoryhma": "SYNTYMAPAIVA", "muutosattribuutti": "MUUTETTU", "syntymapv": d("1990-06-01")},
        person=old,
    )
    (event,) = run(m).events
    assert event["change_type"] == "identity_correction"
    assert (event["person_id"], event["previous_person_id"]) == (new, old)
    assert event["birth_date"] == dt.date(1990, 6, 1)


def test_identity_correction_when_the_top_level_code_is_already_the_new_one():
    old, new = make(dt.date(1990, 5, 1), 961), make(dt.date(1990, 6, 1), 961)
    g = {"tietoryhma": "HENKILOTUNNUS_KORJAUS", "voimassaolo": "AKTIIVI", "muutosattribuutti": "LISATTY", "aktiivinenHenkilotunnus": new, "edellisetHenkilotunnukset": [old]}
    (event,) = run(muutos(g, person=new)).events
    assert (event["person_id"], event["previous_person_id"]) == (new, old)


def test_identity_correction_birth_date_comes_from_the_new_code():
    old, new = make(dt.date(1990, 5, 1), 962), make(dt.date(1990, 6, 1), 962)
    g = {"tietoryhma": "HENKILOTUNNUS_KORJAUS", "voimassaolo": "AKTIIVI", "muutosattribuutti": "LISATTY", "aktiivinenHenkilotunnus": new, "edellisetHenkilotunnukset": [old]}
    (event,) = run(muutos(g, person=old)).events
    assert event["birth_date"] == dt.date(1990, 6, 1)


def test_turvakielto_marks_every_event_of_the_muutos():
    m = muutos(
        kotikunta("091"),
        {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": "fa"},
        {"tietoryhma": "TURVAKIELTO", "muutosattribuutti": "LISATTY", "turvakieltoAktiivinen": True, "turvaLoppuPv": d("2031-05-12")},
    )
    out = run(m)
    assert [e["change_type"] for e in out.events] == ["immigration", "language", "non_disclosure"]
    assert all(e["turvakielto"] is True for e in out.events)


def test_lifted_or_expired_turvakielto_is_not_active():
    lifted = {"tietoryhma": "TURVAKIELTO", "muutosattribuutti": "MUUTETTU", "turvakieltoAktiivinen": False, "turvaLoppuPv": d("2026-05-11")}
    (event,) = run(muutos(lifted)).events
    assert event["change_type"] == "non_disclosure" and event["turvakielto"] is False
    expired = {"tietoryhma": "TURVAKIELTO", "muutosattribuutti": "MUUTETTU", "turvakieltoAktiivinen": True, "turvaLoppuPv": d("2026-01-01")}
    (event,) = run(muutos(expired)).events
    assert event["turvakielto"] is False


def test_masked_groups_mark_turvakielto_and_carry_no_values():
    m = muutos({"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "turvakiellonAlaisetKentat": ["kuntakoodi", "kuntaanMuuttopv"]})
    (event,) = run(m).events
    assert event["change_type"] == "other" and event["turvakielto"] is True and event["municipality_code"] is None


def test_unknown_group_is_kept_as_other_and_reported_by_name():
    out = run(muutos({"tietoryhma": "JOKU_UUSI_TIETORYHMA", "muutosattribuutti": "LISATTY", "uusiKentta": "x"}))
    (event,) = out.events
    assert event["change_type"] == "other" and event["data_group"] == "JOKU_UUSI_TIETORYHMA"
    assert out.unknown_groups == ("JOKU_UUSI_TIETORYHMA",)


def test_context_only_groups_make_no_event():
    m = muutos({"tietoryhma": "HENKILON_NIMI", "muutosattribuutti": "MUUTETTU", "etunimi": "X", "sukunimi": "Y"})
    out = run(m)
    assert out.events == () and out.unknown_groups == ()


def test_event_ids_are_deterministic_and_distinct():
    m = muutos(kotikunta("091"), {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": "ar"})
    first = [e["event_id"] for e in run(m).events]
    again = [e["event_id"] for e in map_muutos(m, secret="test-secret", recorded_at=NOW + dt.timedelta(hours=1), batch_ref="other page").events]
    assert first == again and len(set(first)) == 2
    other_person = [e["event_id"] for e in run(dict(m, henkilotunnus=make(dt.date(1990, 3, 4), 912))).events]
    other_time = [e["event_id"] for e in run(dict(m, muutospv="2026-05-11T05:12:31.419Z")).events]
    assert not set(first) & set(other_person) and not set(first) & set(other_time)


def test_event_id_does_not_depend_on_the_raw_identity_code_alone():
    m = muutos(kotikunta("091"))
    assert run(m).events[0]["event_id"] != map_muutos(m, secret="another", recorded_at=NOW).events[0]["event_id"]


@pytest.mark.parametrize(
    "bad, field",
    [
        ([], "JSON object"),
        ({"muutospv": "2026-05-11T05:12:31.418Z", "tietoryhmat": []}, "henkilotunnus"),
        ({"henkilotunnus": ADULT, "tietoryhmat": []}, "muutospv"),
        ({"henkilotunnus": ADULT, "muutospv": "yesterday", "tietoryhmat": []}, "muutospv"),
        ({"henkilotunnus": ADULT, "muutospv": "2026-05-11T05:12:31.418Z", "tietoryhmat": {}}, "tietoryhmat"),
        ({"henkilotunnus": ADULT, "muutospv": "2026-05-11T05:12:31.418Z", "tietoryhmat": [{"x": 1}]}, "tietoryhmat[0]"),
        (muutos(kotikunta(on="2026-13-40")), "kuntaanMuuttopv"),
        (muutos({"tietoryhma": "TURVAKIELTO", "muutosattribuutti": "LISATTY"}), "turvakieltoAktiivinen"),
        (muutos({"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY"}), "kuntakoodi"),
    ],
)
def test_malformed_muutos_names_the_field_and_never_the_code(bad, field):
    with pytest.raises(MalformedMuutos) as err:
        run(bad)
    assert field in str(err.value) and ADULT not in str(err.value)


def test_fixture_pages_map_without_errors():
    from hub.adapters.dvv.page import parse_page

    types = []
    for name in ("page1.json", "page2.json"):
        page = parse_page((FIXTURES / name).read_text(), name)
        for change in page.changes:
            types += [e["change_type"] for e in run(change.obj).events]
    assert {"immigration", "move_in", "language", "nationality", "guardian", "identity_correction", "non_disclosure", "death", "other"} <= set(types)
