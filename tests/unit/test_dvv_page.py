"""Parsing saved muutokset responses: original text and line of each change, precise errors."""

import json
from pathlib import Path

import pytest

from hub.adapters.dvv.page import MalformedPage, parse_page, read_pages

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dvv"


def test_pretty_printed_page_keeps_each_change_text_and_line():
    text = (FIXTURES / "page1.json").read_text()
    page = parse_page(text, "page1.json")
    assert page.next_key == 5446623512 and page.up_to_date is False and len(page.changes) == 7
    for change in page.changes:
        assert json.loads(change.text) == change.obj
        assert text.splitlines()[change.line - 1].strip() == "{"
    assert page.location(page.changes[1]) == f"page1.json:{page.changes[1].line}"


def test_json_lines_file_gives_one_page_per_line_with_its_line_number():
    p1 = json.loads((FIXTURES / "page1.json").read_text())
    p2 = json.loads((FIXTURES / "page2.json").read_text())
    text = json.dumps(p1) + "\n\n" + json.dumps(p2) + "\n"
    pages = read_pages(text, "day.jsonl")
    assert [p.next_key for p in pages] == [5446623512, 5446623600]
    assert {c.line for c in pages[1].changes} == {3}


def test_a_bad_line_in_json_lines_is_returned_in_place():
    p2 = json.dumps(json.loads((FIXTURES / "page2.json").read_text()))
    pages = read_pages(p2 + "\n{not json\n" + p2 + "\n", "day.jsonl")
    assert isinstance(pages[1], MalformedPage) and pages[1].location == "day.jsonl:2" and pages[1].raw == "{not json"
    assert not isinstance(pages[2], MalformedPage)


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty"),
        ("[]", "JSON object"),
        ('{"muutokset": [], "ajanTasalla": true}', "viimeisinKirjausavain"),
        ('{"viimeisinKirjausavain": 1, "ajanTasalla": true}', "muutokset"),
        ('{"viimeisinKirjausavain": 1, "muutokset": {}, "ajanTasalla": true}', "must be a list"),
        ('{"viimeisinKirjausavain": "x", "muutokset": [], "ajanTasalla": true}', "non-negative integer"),
        ('{"viimeisinKirjausavain": 1, "muutokset": [], "ajanTasalla": "yes"}', "true or false"),
        ('{"viimeisinKirjausavain": 1,\n "muutokset": [,]}', "not valid JSON"),
    ],
)
def test_malformed_page_errors_are_precise(text, words):
    (result,) = read_pages(text, "f.json")
    assert isinstance(result, MalformedPage) and words in str(result) and result.location.startswith("f.json:")


def test_key_as_text_is_accepted():
    assert parse_page('{"viimeisinKirjausavain": "17", "muutokset": [], "ajanTasalla": true}').next_key == 17
