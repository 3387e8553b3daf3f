"""JSON lines of DVV responses are split at "\\n" only (found by tests/e2e/test_fuzz_cli_inputs.py)."""

import json

from hub.adapters.dvv.page import Page, read_pages


def test_a_line_separator_inside_a_json_string_does_not_split_the_page():
    # JSON allows U+2028, U+2029 and U+0085 unescaped inside strings; str.splitlines() splits at them
    first = json.dumps({"viimeisinKirjausavain": 1, "muutokset": [{"etunimi": "A\u2028B\u2029C\x85D"}], "ajanTasalla": False}, ensure_ascii=False)
    second = json.dumps({"viimeisinKirjausavain": 2, "muutokset": [], "ajanTasalla": True})
    pages = read_pages(first + "\r\n" + second + "\n", "f.jsonl")
    assert [type(p) for p in pages] == [Page, Page]
    assert [p.next_key for p in pages] == [1, 2]
    assert pages[0].changes[0].obj == {"etunimi": "A\u2028B\u2029C\x85D"} and pages[1].changes == ()
