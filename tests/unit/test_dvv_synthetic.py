"""The synthetic day generator: deterministic, valid pages, only test identity codes, a few bad records."""

import datetime as dt
import json

from hub.adapters.dvv.ingest import process_page
from hub.adapters.dvv.page import parse_page
from hub.adapters.dvv.synthetic import generate_pages
from hub.domain import hetu

NOW = dt.datetime(2026, 11, 17, tzinfo=dt.timezone.utc)


def test_deterministic_and_paged():
    a, b = generate_pages(1200, seed=7), generate_pages(1200, seed=7)
    assert a == b and len(a) == 3
    assert [json.loads(p)["ajanTasalla"] for p in a] == [False, False, True]


def test_every_valid_code_is_a_test_code_and_bad_records_are_caught():
    bad = good = 0
    for n, text in enumerate(generate_pages(2000, seed=3)):
        outcome = process_page(parse_page(text, f"p{n}"), secret="s", now=NOW)
        bad += len(outcome.bad)
        for record, _key in outcome.events:
            good += 1
            assert int(record["person_id"][7:10]) >= 900
            assert hetu.is_valid(record["person_id"])
    assert good > 1500 and 0 < bad < 60
