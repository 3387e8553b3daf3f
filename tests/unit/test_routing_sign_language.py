"""Sign language (DVV 98) and unknown mother tongue (DVV 99) through the real path: a PopulationChange
with that mother tongue -> detection's Newcomer -> the codec -> the routing use case -> the ledger ->
`hub report`'s indicators. Every such newcomer is routed (never dead-lettered); the outreach says an
interpreter is needed or that the language is asked at first contact; the report counts them."""

import asyncio
import datetime as dt
import json

import pytest

from hub.commands.routing import route_line
from hub.domain import hetu
from hub.reporting import ledger_query
from hub.reporting.indicators import compute
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules
from hub.schemas.codec import default_codec
from hub.schemas.envelope import envelope
from hub.services.detection import Detection
from hub.services.ports import Consumed
from hub.services.routing import Routing
from tests.fakes import FAILURES, Clock, FakeDeadLetters, FakePublisher, JournalLedger, MemoryStates

codec = default_codec()
NOW = dt.datetime(2025, 3, 2, 9, tzinfo=dt.timezone.utc)
SIGN = "sign language user (DVV language code 98): a sign language interpreter is needed for contact and services"
UNKNOWN = "mother tongue unknown: ask the person's language at first contact and arrange an interpreter"


def change(pid: str, tongue: str | None, contact: str | None = None) -> dict:
    rec = envelope("dvv:test", dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc))
    rec.update(person_id=pid, change_type="immigration", municipality_code="091", previous_country="SY", nationalities=["SY"],
               mother_tongue=tongue, contact_language=contact, move_date=dt.date(2025, 2, 20))
    return codec.decode(codec.encode("PopulationChange", rec)).record


def detect_and_route(changes: list[dict]):
    journal: list = []
    detection = Detection(MemoryStates(journal), FakePublisher(journal), FAILURES, person_key_secret="s", clock=Clock(NOW), skew=dt.timedelta(minutes=5))
    published = detection.publisher
    dead_in_detection = FakeDeadLetters(journal)
    asyncio.run(detection.detect([Consumed(f"c{i}", c) for i, c in enumerate(changes)], dead_in_detection))
    assert dead_in_detection.sent == []
    # the Newcomers as the routing consumer reads them: encoded and decoded by the codec
    newcomers = [codec.decode(codec.encode(name, rec)).record for _, name, rec, _ in published.sent]
    ledger = JournalLedger(journal)
    routing = Routing(ledger, FakePublisher(journal), clock=Clock(NOW), skew=dt.timedelta(minutes=5), topic_for=lambda a: f"referrals.{a}")
    dead = FakeDeadLetters(journal)
    out = asyncio.run(routing.route_batch([Consumed(f"n{i}", n) for i, n in enumerate(newcomers)], dead))
    return newcomers, out, dead, ledger


def outreach_reasons(out, person_key: str) -> list[str]:
    [rec] = [r for r in out.created if r["person_key"] == person_key and r["purpose"] == "outreach"]
    return list(rec["reasons"])


def test_sign_language_and_unknown_tongue_are_routed_with_outreach_that_says_how_to_reach_them_and_counted_in_the_report():
    sign, unknown, absent, arabic = (hetu.make(dt.date(1990, 2, 3), 951 + i) for i in range(4))
    newcomers, out, dead, ledger = detect_and_route([change(sign, "98"), change(unknown, "99"), change(absent, None), change(arabic, "ar")])
    assert dead.sent == []  # never invalid_field
    assert out.routed == 4
    keys = {n["person_id"]: n["person_key"] for n in newcomers}
    assert [n["mother_tongue"] for n in newcomers] == ["98", "99", None, "ar"]  # detection keeps DVV's codes

    assert SIGN in outreach_reasons(out, keys[sign])
    assert not any("address the person in 98" in r for r in outreach_reasons(out, keys[sign]))
    assert UNKNOWN in outreach_reasons(out, keys[unknown]) and UNKNOWN in outreach_reasons(out, keys[absent])
    assert "address the person in ar (mother tongue; no contact language recorded)" in outreach_reasons(out, keys[arabic])
    assert not any(r in (SIGN, UNKNOWN) for r in outreach_reasons(out, keys[arabic]))

    # hub report's indicators read the ledger the routing wrote: all four are newcomers of the period
    rows = ledger_query.load(ledger.ledger.engine, "091", dt.date(2025, 3, 1), dt.date(2025, 3, 31), ["municipality:091"])
    ind = compute("091", dt.date(2025, 3, 1), dt.date(2025, 3, 31), dt.date(2025, 4, 1), rows.newcomers, rows.referrals, rows.statuses, rows.steps)
    assert ind.newcomers == 4
    assert ind.by_mother_tongue["98"] == 1 and ind.by_mother_tongue["unknown"] == 2 and ind.by_mother_tongue["ar"] == 1
    assert ind.by_mother_tongue_group == {"sign language": 1, "unknown": 2, "foreign language": 1}  # 98 is no foreign language


def test_a_sign_language_user_with_a_contact_language_is_addressed_in_it_and_still_gets_an_interpreter():
    person = hetu.make(dt.date(1985, 5, 6), 960)
    newcomers, out, dead, _ = detect_and_route([change(person, "98", contact="fi")])
    reasons = outreach_reasons(out, newcomers[0]["person_key"])
    assert "address the person in fi (contact language)" in reasons and SIGN in reasons


@pytest.mark.parametrize("fields, expected", [
    ({"mother_tongue": "98"}, [SIGN]), ({"mother_tongue": "99"}, [UNKNOWN]), ({}, [UNKNOWN]),
    ({"contact_language": "98", "mother_tongue": "99"}, [SIGN]),
    ({"contact_language": "98", "mother_tongue": "ar"}, ["address the person in ar (mother tongue)", SIGN])])
def test_hub_route_gives_the_same_outreach_reasons(fields, expected):
    line = json.dumps({"event_id": "e-1", "occurred_at": "2025-03-02T09:00:00Z", "municipality_code": "091", **fields})
    out = route_line(line, default_rules(), default_reference())
    assert "error" not in out
    [outreach] = [d for d in out["decisions"] if d["purpose"] == "outreach"]
    assert outreach["reasons"][1:] == expected
