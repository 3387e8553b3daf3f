"""Whatever DVV sends, a page never crashes the ingest: every change is published or dead-lettered,
and every published record encodes."""

import datetime as dt
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.adapters.dvv.ingest import process_page
from hub.adapters.dvv.mapping import CONTEXT_GROUPS, MAPPED_GROUPS
from hub.adapters.dvv.page import parse_page
from hub.domain.hetu import make
from hub.schemas.codec import default_codec

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
FIELDS = [
    "kuntakoodi", "kuntaanMuuttopv", "kielikoodi", "henkilonKansalaisuudet", "valtiokoodi", "loppupv", "kuollut", "kuolinpv",
    "huoltaja", "huoltosuhteenLoppupv", "voimassaolo", "aktiivinenHenkilotunnus", "muutettuHenkilotunnus", "edellisetHenkilotunnukset",
    "turvakieltoAktiivinen", "turvaLoppuPv", "syntymapv", "voimassaolevatTiedot", "turvakiellonAlaisetKentat",
]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 1000), st.sampled_from(["091", "2026-05-01", "", "x", "760", "ar", "010190-900R"]))
values = st.recursive(
    scalars | st.fixed_dictionaries({"arvo": st.sampled_from(["2026-05-01", "2026-13-01", "", "2099-01-01"])}),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["arvo", "henkilotunnus", "kansalaisuuskoodi", "voimassaolo", "kielikoodi", "kuntakoodi"]), inner, max_size=3),
    max_leaves=6,
)
groups = st.fixed_dictionaries(
    {"tietoryhma": st.sampled_from(sorted(MAPPED_GROUPS | CONTEXT_GROUPS) + ["UUSI", "0101"]), "muutosattribuutti": st.sampled_from(["LISATTY", "MUUTETTU", "KORJATTU", "KORJATTAVA", "POISTETTU", "LISATIETO", None])},
    optional={f: values for f in FIELDS},
)
muutokset = st.fixed_dictionaries(
    {"henkilotunnus": st.sampled_from([make(dt.date(1990, 1, 1), 900), "010190-900X", "x"]), "muutospv": st.sampled_from(["2026-05-11T05:12:31.418Z", "bad"]), "tietoryhmat": st.lists(groups, max_size=4)}
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(muutokset, min_size=1, max_size=3))
def test_any_page_is_published_or_dead_lettered(changes):
    page = parse_page(json.dumps({"viimeisinKirjausavain": 1, "muutokset": changes, "ajanTasalla": True}), "fuzz.json")
    outcome = process_page(page, secret="s", now=NOW)
    dead = {b.location for b in outcome.bad}
    assert len(dead) == len(outcome.bad)
    for record, _ in outcome.events:
        default_codec().encode("PopulationChange", record)
    for bad in outcome.bad:
        assert "010190-900X" not in bad.message and make(dt.date(1990, 1, 1), 900) not in bad.message
