"""Plan requests and notices are numbered per recipient and stream in the transaction that writes
their outbox rows: on SQLite through the real unit of work (the outbox rows keep recipient, stream
and sequence), in memory through the fake one (a rolled-back transaction gives no number away), and
`outbox.reserve_sequences` takes consecutive numbers per (recipient, stream)."""

import datetime as dt

import sqlalchemy as sa

from hub.adapters import outbox
from hub.consent import model, records
from hub.domain import hetu
from hub.schemas import topics
from hub.schemas.codec import default_codec
from hub.services.consent import ConsentRegistry
from tests.fakes import MemoryConsentUnits, Outage

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


def test_each_recipients_plan_requests_and_notices_are_numbered_apart_from_one(registry):
    story(registry)
    with registry.units.sessions() as s:
        rows = list(s.scalars(sa.select(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id)))
        assert numbered(r.value for r in rows) == EXPECTED
        # the row keeps what the record says: what `hub resend` finds it by
        assert [(r.recipient, r.stream, r.sequence) for r in rows] == [
            (MUNI, "notices", 1), (MUNI, "notices", 2), (EMPLOY, "plan-requests", 1), (EMPLOY, "plan-requests", 2), (EMPLOY, "notices", 1)]
        assert [r.topic for r in rows] == [topics.notice_topic(MUNI)] * 2 + [topics.plan_request_topic(EMPLOY)] * 2 + [topics.notice_topic(EMPLOY)]
        assert outbox.last_sequence(s, EMPLOY, "plan-requests") == 2 and outbox.last_sequence(s, MUNI, "notices") == 2
        assert outbox.last_sequence(s, MUNI, "plan-requests") == 0
        assert [r.sequence for r in outbox.sent_in_stream(s, EMPLOY, "plan-requests", 2)] == [2]
        assert [r.sequence for r in outbox.sent_in_stream(s, MUNI, "notices", 1, 1)] == [1]
        # the audit rows point at the plan requests' outbox rows
        plan_rows = {r.id for r in rows if r.schema_name == "PlanRequest"}
        from hub.adapters.consent_store import Disclosure

        assert {d.outbox_id for d in s.scalars(sa.select(Disclosure))} == plan_rows


def test_the_fake_unit_of_work_numbers_alike_and_a_rolled_back_transaction_gives_no_number_away():
    units = MemoryConsentUnits()
    registry = ConsentRegistry(units, person_key_secret=SECRET, codec=CODEC, clock=lambda: T0)
    assess(registry, 1)
    units.fails = Outage("database down")
    try:
        assess(registry, 2)
    except Outage:
        pass
    units.fails = None
    assess(registry, 2)  # redelivered after the outage: the number the failed transaction had is given again
    registry.record_consent(grant())
    registry.record_consent(revoke())
    assert numbered(value for _, _, _, value, _ in units.state.outbox) == EXPECTED
    assert units.state.sequences == {(MUNI, "notices"): 2, (EMPLOY, "plan-requests"): 2, (EMPLOY, "notices"): 1}


def test_reserve_sequences_takes_consecutive_numbers_per_recipient_and_stream(sessions):
    with sessions.begin() as s:
        assert outbox.reserve_sequences(s, {(MUNI, "notices"): 2, (EMPLOY, "notices"): 1, (MUNI, "plan-requests"): 0}) == {
            (EMPLOY, "notices"): 1, (MUNI, "notices"): 1}
    with sessions.begin() as s:
        assert outbox.reserve_sequences(s, {(MUNI, "notices"): 3}) == {(MUNI, "notices"): 3}
        assert outbox.reserve_sequences(s, {(MUNI, "notices"): 1}) == {(MUNI, "notices"): 6}
    with sessions() as s:
        assert outbox.last_sequence(s, MUNI, "notices") == 6 and outbox.last_sequence(s, EMPLOY, "notices") == 1
