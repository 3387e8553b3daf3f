import datetime as dt

import pytest
from hypothesis import given, strategies as st

from hub.domain import hetu

signs = st.sampled_from(sorted(hetu.CENTURIES))


@st.composite
def valid_codes(draw):
    sign = draw(signs)
    century = hetu.CENTURIES[sign]
    born = draw(st.dates(dt.date(century, 1, 1), dt.date(century + 99, 12, 31)))
    return hetu.make(born, draw(st.integers(2, 999)), sign)


@given(valid_codes())
def test_every_generated_code_is_valid(code):
    assert hetu.validate(code) == code
    assert hetu.birth_date(code).strftime("%d%m%y") == code[:6]


@given(valid_codes(), st.data())
def test_every_single_character_corruption_fails(code, data):
    i = data.draw(st.integers(0, len(code) - 1))
    alphabet = "0123456789-+ABCDEFHJKLMNPRSTUVWXY"
    new = data.draw(st.sampled_from([c for c in alphabet if c != code[i]]))
    corrupted = code[:i] + new + code[i + 1 :]
    if i == 6 and new in hetu.CENTURIES:
        # the check character does not cover the century sign: another sign is a well-formed code
        # (same century: the 2023 letters; other century: a different birth date), by design
        if hetu.is_valid(corrupted):
            assert hetu.birth_date(corrupted).strftime("%d%m%y") == hetu.birth_date(code).strftime("%d%m%y")
        return
    assert not hetu.is_valid(corrupted)


def test_known_codes_and_the_2023_letters():
    assert hetu.is_valid("131052-308T")
    assert hetu.is_valid("010594Y9032") and hetu.is_valid("010594Y9021")  # DVV's examples of the new signs
    assert hetu.is_valid("020502E902X") and hetu.birth_date("020502E902X") == dt.date(2002, 5, 2)


@pytest.mark.parametrize("bad", ["", "131052-308", "131052*308T", "311352-308T", "131052-308U", "131052-001X", None, 131052])
def test_invalid_codes_never_echo_the_code(bad):
    with pytest.raises(hetu.InvalidHetu) as err:
        hetu.validate(bad)
    assert err.value.reason == "invalid_person_id"
    assert "131052" not in str(err.value)


def test_person_key_is_keyed_and_stable():
    a = hetu.person_key("131052-308T", "s1")
    assert a == hetu.person_key("131052-308T", "s1") != hetu.person_key("131052-308T", "s2")
    assert "131052" not in a and len(a) == 32


def test_scrub():
    assert hetu.scrub("person 131052-308T moved") == "person <henkilötunnus> moved"


# Only the canonical spelling is a code: every other spelling of the same code would get another
# person key (the same person twice, or a revocation that applies to nobody).
CANONICAL = "010190-900P"
FULLWIDTH = CANONICAL.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
ARABIC_INDIC = CANONICAL.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
DEVANAGARI = CANONICAL.translate(str.maketrans("0123456789", "०१२३४५६७८९"))


def test_the_canonical_form_is_accepted():
    assert hetu.validate(CANONICAL) == CANONICAL
    assert hetu.birth_date(CANONICAL) == dt.date(1990, 1, 1)


@pytest.mark.parametrize("spelling", [
    CANONICAL + "\n", CANONICAL + "\r\n", "\n" + CANONICAL, " " + CANONICAL, CANONICAL + " ", CANONICAL + "\t", CANONICAL + "\u00a0",
    CANONICAL + "\u2028", CANONICAL + "\x00", "\u200b" + CANONICAL, FULLWIDTH, ARABIC_INDIC, DEVANAGARI,
    CANONICAL[:3] + "０" + CANONICAL[4:], CANONICAL.replace("-", "\u2010"), CANONICAL.replace("-", "－"), CANONICAL.lower(),
], ids=["newline", "crlf", "leading-newline", "leading-space", "trailing-space", "tab", "nbsp", "line-separator", "nul",
        "zero-width-space", "fullwidth", "arabic-indic", "devanagari", "one-fullwidth-digit", "unicode-hyphen", "fullwidth-hyphen", "lowercase"])
def test_other_spellings_of_a_code_are_refused_without_echoing_it(spelling):
    with pytest.raises(hetu.InvalidHetu) as err:
        hetu.validate(spelling)
    assert err.value.reason == "invalid_person_id"
    assert CANONICAL not in str(err.value) and spelling.strip() not in str(err.value)
    assert not hetu.is_valid(spelling)


def test_a_non_ascii_spelling_is_told_apart_in_the_message():
    with pytest.raises(hetu.InvalidHetu, match="ASCII"):
        hetu.validate(FULLWIDTH)
    with pytest.raises(hetu.InvalidHetu, match="white space or a line break"):
        hetu.validate(CANONICAL + "\n")
