"""The legal-basis file: each entry names who discloses to whom, the purpose, the categories and its
section; the old form (recipient kind only) is refused with the fix; health data is never a legal
basis's; the shipped file has none in force and the catalogue of candidates stays valid."""

import pytest

from hub.consent import legal_bases
from hub.consent.legal_bases import LegalBasisFileError, parse
from hub.consent.model import Assessment, Disclose, Hold, decide

ENTRY = """
legal_bases:
  - name: "681/2023 § 99 municipality -> employment authority"
    section: "681/2023 § 99"
    purpose: integration_plan
    discloser_kinds: [municipality]
    recipient_kinds: [employment_authority]
    data_categories: [education, language_skills]
"""


def test_an_entry_names_discloser_recipient_purpose_categories_and_section():
    [b] = parse(ENTRY)
    assert b.name == "681/2023 § 99 municipality -> employment authority" and b.section == "681/2023 § 99"
    assert b.discloser_kinds == {"municipality"} and b.recipient_kinds == {"employment_authority"}
    assert b.covers("integration_plan", "municipality:091", "employment_authority:08")
    assert not b.covers("integration_plan", "wellbeing_area:01", "employment_authority:08")


def test_a_loaded_basis_for_municipality_to_employment_authority_does_not_cover_a_wellbeing_area():
    bases = parse(ENTRY)

    def assessment(assessor):
        return Assessment("e1", "as-1", "010190-900P", "k" * 32, assessor, "employment_authority:08", None, {"education": "x"})

    assert isinstance(decide(assessment("municipality:091"), [], bases), Disclose)
    assert isinstance(decide(assessment("wellbeing_area:01"), [], bases), Hold)


def test_an_old_form_entry_is_refused_with_the_fix():
    old = 'legal_bases:\n  - {name: "681/2023 § 80", purpose: integration_plan, recipient_kinds: [employment_authority], data_categories: [education]}\n'
    with pytest.raises(LegalBasisFileError) as err:
        parse(old, "bases.yaml")
    message = str(err.value)
    assert message.startswith("bases.yaml: legal_bases entry 1 (681/2023 § 80) is in the old form")
    assert "add `discloser_kinds`" in message and "`section`" in message and "keep `name`" in message


@pytest.mark.parametrize("change, expected", [
    ({"data_categories": "[education, service_needs]"}, "service_needs may hold health data"),
    ({"discloser_kinds": "[]"}, "discloser_kinds must be a non-empty list"),
    ({"recipient_kinds": "[ministry]"}, "recipient_kinds must be a non-empty list"),
    ({"section": '""'}, "section is empty"),
    ({"purpose": "marketing"}, "purpose must be one of"),
    ({"data_categories": "[hobbies]"}, "unknown hobbies"),
])
def test_a_bad_entry_names_the_entry_and_the_fix(change, expected):
    text = ENTRY
    for key, value in change.items():
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{key}:"))
        text = text.replace(line, f"{line.split(':')[0]}: {value}")
    with pytest.raises(LegalBasisFileError, match=expected):
        parse(text)


def test_unknown_keys_missing_keys_and_duplicate_names_are_refused():
    with pytest.raises(LegalBasisFileError, match="unknown key"):
        parse(ENTRY + "    recipient: x\n")
    with pytest.raises(LegalBasisFileError, match="needs section"):
        parse(ENTRY.replace('    section: "681/2023 § 99"\n', ""))
    with pytest.raises(LegalBasisFileError, match="used by an earlier entry"):
        parse(ENTRY + ENTRY.split("legal_bases:\n")[1])


def test_an_unconfirmed_citation_is_not_in_force():
    text = ENTRY + "    confidence: unconfirmed\n"
    with pytest.raises(LegalBasisFileError, match="set `confidence: confirmed`"):
        parse(text)
    assert len(parse(text, allow_unconfirmed=True)) == 1


def test_the_shipped_file_has_no_basis_in_force():
    assert legal_bases.load() == ()


def test_the_catalogue_of_candidates_stays_valid_and_is_not_in_force():
    with pytest.raises(LegalBasisFileError, match="unconfirmed"):
        legal_bases.load(legal_bases.CATALOGUE_FILE)
    catalogue = legal_bases.load(legal_bases.CATALOGUE_FILE, allow_unconfirmed=True)
    assert catalogue and all(b.section.startswith("681/2023") for b in catalogue)
    assert all("service_needs" not in b.data_categories for b in catalogue)
    assert all("wellbeing_area" not in b.discloser_kinds | b.recipient_kinds for b in catalogue)
    assert all(b.discloser_kinds.isdisjoint(b.recipient_kinds) for b in catalogue)
