"""Reference data 2025: counts, authority ids, Helsinki, Åland, unknown codes."""

import re

import pytest

from hub.routing.reference import UnknownMunicipality, default_reference, load_reference

ALAND = {"035", "043", "060", "062", "065", "076", "170", "295", "318", "417", "438", "478", "736", "766", "771", "941"}
ID = re.compile(r"^(municipality:\d{3}|wellbeing_area:\d{2}|employment_authority:\d{2})$")


@pytest.fixture(scope="module")
def ref():
    return default_reference()


def test_counts_match_the_2025_classifications(ref):
    assert len(ref.municipalities) == 308
    assert len(ref.wellbeing_area) == 308
    assert len(ref.employment_area) == 292
    assert len({code for code, _ in ref.employment_area.values()}) == 45
    real_areas = {code for code, _ in ref.wellbeing_area.values()} - {"90", "91"}
    assert real_areas == {f"{i:02d}" for i in range(1, 22)}
    assert set(ref.municipalities) - set(ref.employment_area) == ALAND


def test_loaded_once_per_process(ref):
    assert default_reference() is ref
    assert load_reference().municipalities == ref.municipalities


def test_every_mainland_municipality_has_three_authority_ids(ref):
    for code in set(ref.municipalities) - ALAND:
        auth = ref.authorities(code)
        ids = [r.authority for r in auth.roles.values()]
        assert all(i is not None and ID.match(i) for i in ids), (code, ids)
        assert auth["municipality"].authority == f"municipality:{code}"


def test_espoo(ref):
    auth = ref.authorities("049")
    assert auth["wellbeing_area"].authority == "wellbeing_area:03"
    assert auth["employment_authority"].authority == "employment_authority:01"
    assert auth.municipality.name_sv == "Esbo"


def test_helsinki_arranges_wellbeing_services_itself(ref):
    auth = ref.authorities("091")
    assert auth["wellbeing_area"].authority == "municipality:091"
    assert "itself" in auth["wellbeing_area"].note
    assert auth["employment_authority"].authority == "employment_authority:08"


@pytest.mark.parametrize("code", sorted(ALAND))
def test_aland_has_no_mainland_wellbeing_or_employment_area(ref, code):
    auth = ref.authorities(code)
    assert auth["municipality"].authority == f"municipality:{code}"
    for role in ("wellbeing_area", "employment_authority"):
        assert auth[role].authority is None
        assert "Åland" in auth[role].note


@pytest.mark.parametrize("code", ["999", "588", "91", "", None])
def test_unknown_municipality_code_is_a_clear_error(ref, code):
    with pytest.raises(UnknownMunicipality) as info:
        ref.authorities(code)
    assert "2025 classification" in str(info.value)


def test_describe_names_authorities(ref):
    assert ref.describe("municipality:091") == "Helsinki"
    assert ref.describe("wellbeing_area:05") == "Varsinais-Suomen hyvinvointialue"
    assert ref.describe("employment_authority:99") is None
