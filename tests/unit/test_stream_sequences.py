"""Plan requests and notices are numbered per recipient and stream by the outbox relay, right before
it sends them: the use cases write the rows with recipient and stream (on SQLite through the real
unit of work, in memory through the fake one), the relay puts the number into the record and the
row, a plan request withdrawn before it was sent takes no number (no gap for the recipient), and
`outbox.number` gives each row one number, once, in the order asked."""

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa

from hub.adapters import outbox
from hub.adapters.resend import gaps, outbox_to_resend
from hub.consent import model, records
from hub.domain import hetu
from hub.schemas import topics
from hub.schemas.codec import default_codec
from hub.services.consent import ConsentRegistry
from hub.streams.outbox_relay import OutboxRelay
from tests.fakes import MemoryConsentUnits, Outage
from tests.unit.test_outbox_parking import Consents, FakePublisher

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
SECRET = "s"
PERSON = hetu.make(dt.date(1990, 5, 17), 941)
KEY = hetu.person_key(PERSON, SECRET)
EMPLOY, MUNI = "employment_authority:08", "municipality:091"
CODEC = default_codec()


def grant(cid="c-1"):
    return model.ConsentRecord(event_id=f"g-{cid}", consent_id=cid, person_id=PERSON, action=model.GRANTED, recorded_by=MUNI, recorded_at=T0,
                               data_categories=frozenset({"education"}), recipients=frozenset({EMPLOY}))


def revoke(cid="c-1"):
    return model.ConsentRecord(event_id=f"r-{cid}", consent_id=cid, person_id=PERSON, action=model.REVOKED, recorded_by=MUNI, recorded_at=T0)


def assess(registry, n):
    rec = {"event_id": f"00000000-0000-4000-8000-{n:012d}", "occurred_at": T0, "recorded_at": T0, "source": MUNI, "schema_version": 1,
           "assessment_id": f"as-{n}", "person_key": KEY, "person_id": PERSON, "assessor": MUNI, "plan_authority": EMPLOY, "referral_id": None,
           "education": "university", "work_history": None, "language_skills": [], "literacy": None, "recommended_path": None, "service_needs": []}
    return registry.handle_assessment(records.assessment_from_avro(rec), CODEC.encode("AssessmentCompleted", rec))


def numbered(values):
    """(schema name, to, sequence) of each encoded plan request and notice, in outbox order."""
    out = []
    for value in values:
        decoded = CODEC.decode(value)
        if decoded.name in ("PlanRequest", "Notice"):
            out.append((decoded.name, decoded.record["to"], decoded.record["sequence"]))
    return out


def story(registry):
    """Two assessments held (two notices to the assessor), a grant releasing both (two plan requests
    in one transaction), a revocation (a notice to the plan requests' recipient)."""
    assess(registry, 1)
    assess(registry, 2)
    registry.record_consent(grant())
    registry.record_consent(revoke())


EXPECTED = [
    ("Notice", MUNI, 1), ("Notice", MUNI, 2),  # consent required, to the assessor
    ("PlanRequest", EMPLOY, 1), ("PlanRequest", EMPLOY, 2),  # released by the grant
    ("Notice", EMPLOY, 1),  # the revocation, to the earlier recipient: its own notice numbering
]


def relay(sessions):
    """A relay with a fake producer; what it sent: (topic, value) in send order."""
    publisher = FakePublisher()
    return OutboxRelay(publisher, sessions, consents=Consents()), publisher.producer.sent


def test_the_relay_numbers_each_recipients_plan_requests_and_notices_apart_when_it_sends_them(registry):
    story(registry)
    sessions = registry.units.sessions
    with sessions() as s:
        rows = list(s.scalars(sa.select(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id)))
        # written with recipient and stream, not numbered yet
        assert [(r.recipient, r.stream, r.sequence) for r in rows] == [
            (MUNI, "notices", None), (MUNI, "notices", None), (EMPLOY, "plan-requests", None), (EMPLOY, "plan-requests", None),
            (EMPLOY, "notices", None)]
        assert outbox.last_sequence(s, MUNI, "notices") == 0
    # the revocation came before the relay looked: both plan requests are withdrawn, unnumbered
    rel, sent = relay(sessions)
    assert asyncio.run(rel.flush()) == 3
    assert numbered(v for _, v in sent) == [("Notice", MUNI, 1), ("Notice", MUNI, 2), ("Notice", EMPLOY, 1)]
    with sessions() as s:
        rows = list(s.scalars(sa.select(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id)))
        # the row keeps what the record says: what `hub resend` finds it by
        assert [(r.recipient, r.stream, r.sequence) for r in rows] == [
            (MUNI, "notices", 1), (MUNI, "notices", 2), (EMPLOY, "plan-requests", None), (EMPLOY, "plan-requests", None), (EMPLOY, "notices", 1)]
        assert numbered(r.value for r in rows if r.sequence) == [("Notice", MUNI, 1), ("Notice", MUNI, 2), ("Notice", EMPLOY, 1)]
        assert [r.topic for r in rows] == [topics.notice_topic(MUNI)] * 2 + [topics.plan_request_topic(EMPLOY)] * 2 + [topics.notice_topic(EMPLOY)]
        assert [r.parked_reason is not None for r in rows] == [False, False, True, True, False]
        assert outbox.last_sequence(s, EMPLOY, "plan-requests") == 0 and outbox.last_sequence(s, MUNI, "notices") == 2
        assert [r.sequence for r in outbox.sent_in_stream(s, MUNI, "notices", 2)] == [2]
        assert [r.sequence for r in outbox.sent_in_stream(s, MUNI, "notices", 1, 1)] == [1]
        # the audit rows point at the plan requests' outbox rows
        plan_rows = {r.id for r in rows if r.schema_name == "PlanRequest"}
        from hub.adapters.consent_store import Disclosure

        assert {d.outbox_id for d in s.scalars(sa.select(Disclosure))} == plan_rows


def test_a_plan_request_withdrawn_before_it_was_sent_leaves_no_gap(registry):
    sessions = registry.units.sessions
    rel, sent = relay(sessions)
    registry.record_consent(grant("c-1"))
    assess(registry, 1)
    assert asyncio.run(rel.flush()) == 1  # plan request 1 goes out
    assess(registry, 2)
    registry.record_consent(revoke("c-1"))  # before the relay sent plan request 2: it is withdrawn
    registry.record_consent(grant("c-2"))
    assess(registry, 3)
    asyncio.run(rel.flush())
    plans = [(to, n) for name, to, n in numbered(v for _, v in sent) if name == "PlanRequest"]
    assert plans == [(EMPLOY, 1), (EMPLOY, 2)]  # as-1 and as-3: the withdrawn one took no number
    assert [CODEC.decode(v).record["assessment_id"] for _, v in sent if CODEC.decode(v).name == "PlanRequest"] == ["as-1", "as-3"]
    assert gaps(n for _, n in plans) == []
    rows, skipped = outbox_to_resend(sessions, EMPLOY, "plan-requests", 1)
    assert [r.sequence for r in rows] == [1, 2] and skipped == {}
    with sessions() as s:
        assert outbox.last_sequence(s, EMPLOY, "plan-requests") == 2
        [withdrawn] = [r for r in s.scalars(sa.select(outbox.OutboxMessage)) if r.parked_reason is not None]
        assert withdrawn.sequence is None and withdrawn.value == b""


def test_the_fake_unit_of_work_writes_alike_and_a_rolled_back_transaction_writes_nothing():
    units = MemoryConsentUnits()
    registry = ConsentRegistry(units, person_key_secret=SECRET, codec=CODEC, clock=lambda: T0)
    assess(registry, 1)
    units.fails = Outage("database down")
    try:
        assess(registry, 2)
    except Outage:
        pass
    units.fails = None
    assess(registry, 2)  # redelivered after the outage
    registry.record_consent(grant())
    registry.record_consent(revoke())
    assert numbered(value for _, _, _, value, _ in units.state.outbox) == [(name, to, 0) for name, to, _ in EXPECTED]  # the relay numbers them
    assert list(units.state.numbered.values()) == [(MUNI, "notices"), (MUNI, "notices"), (EMPLOY, "plan-requests"), (EMPLOY, "plan-requests"),
                                                   (EMPLOY, "notices")]


def _row(sessions, recipient, stream):
    with sessions.begin() as s:
        return outbox.enqueue(s, topics.notice_topic(recipient), "Notice", "e", b"v", None, [], T0, recipient=recipient, stream=stream).id


def test_number_gives_each_row_its_streams_next_number_once(sessions):
    a, b, c, d = _row(sessions, MUNI, "notices"), _row(sessions, EMPLOY, "notices"), _row(sessions, MUNI, "notices"), _row(sessions, MUNI, "notices")
    with_n = lambda value, n: value + str(n).encode()  # noqa: E731 - stands for re-encoding the record with its number
    for row_id, recipient in ((c, MUNI), (b, EMPLOY), (a, MUNI)):
        with sessions.begin() as s:
            outbox.number(s, row_id, recipient, "notices", with_n)
    with sessions.begin() as s:
        assert outbox.number(s, c, MUNI, "notices", with_n) == (1, b"v1")  # numbered already: keeps its number
        outbox.park(s, d, outbox.RECORD_TOO_LARGE, None, T0)
    with sessions.begin() as s:
        assert outbox.number(s, d, MUNI, "notices", with_n) is None  # parked meanwhile: takes none
    e = _row(sessions, EMPLOY, "notices")
    with pytest.raises(ZeroDivisionError):  # a record that cannot be re-encoded: the transaction rolls back, no number is taken
        with sessions.begin() as s:
            assert outbox.number(s, e + 99, EMPLOY, "notices", with_n) is None  # no such row
            outbox.number(s, e, EMPLOY, "notices", lambda value, n: 1 / 0)
    with sessions() as s:
        assert {r.id: r.sequence for r in s.scalars(sa.select(outbox.OutboxMessage))} == {a: 2, b: 1, c: 1, d: None, e: None}
        assert outbox.last_sequence(s, MUNI, "notices") == 2 and outbox.last_sequence(s, EMPLOY, "notices") == 1
