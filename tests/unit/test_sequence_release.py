"""`outbox.release_number`: the number of a numbered row that is withdrawn before it was sent is
given back when it is its stream's last one (and with it the numbers below that withdrawn rows kept),
else passed to the stream's oldest unsent, unnumbered row, else kept (the only case that leaves the
recipient a gap, named by `hub resend`); a row sent or parked meanwhile keeps its number."""

import datetime as dt

import sqlalchemy as sa

from hub.adapters import outbox
from hub.adapters.resend import outbox_to_resend
from hub.schemas import topics

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
TO = "employment_authority:08"


def with_n(schema_name, value, n):  # stands for re-encoding the record with its number
    return value.split(b"#")[0] + b"#" + str(n).encode()


def row(sessions, stream="plan-requests", recipient=TO):
    with sessions.begin() as s:
        return outbox.enqueue(s, topics.plan_request_topic(recipient), "PlanRequest", "e", b"v", None, [], T0, recipient=recipient, stream=stream).id


def number(sessions, row_id, stream="plan-requests", recipient=TO):
    with sessions.begin() as s:
        return outbox.number(s, row_id, recipient, stream, lambda value, n: with_n("PlanRequest", value, n))[0]


def withdraw(sessions, row_id):
    """As the relay withdraws a plan request: the number first, then parked and its value dropped."""
    with sessions.begin() as s:
        released = outbox.release_number(s, row_id, with_n)
        outbox.park(s, row_id, "consent_revoked", None, T0)
        outbox.drop_value(s, row_id)
    return released


def state(sessions, stream="plan-requests"):
    with sessions() as s:
        rows = {r.id: (r.sequence, r.value) for r in s.scalars(sa.select(outbox.OutboxMessage).where(outbox.OutboxMessage.stream == stream))}
        return rows, outbox.last_sequence(s, TO, stream)


def test_the_last_number_is_given_back_and_the_next_row_takes_it(sessions):
    a, b = row(sessions), row(sessions)
    assert (number(sessions, a), number(sessions, b)) == (1, 2)
    with sessions.begin() as s:
        outbox.mark_sent(s, [a], T0)  # b's send failed
    assert withdraw(sessions, b) == outbox.RETURNED
    rows, last = state(sessions)
    assert rows[b] == (None, b"") and last == 1
    c = row(sessions)
    assert number(sessions, c) == 2
    assert withdraw(sessions, a) is None  # sent: keeps its number


def test_a_number_below_the_last_passes_to_the_oldest_unsent_row_or_is_kept(sessions):
    a, b = row(sessions), row(sessions)
    assert (number(sessions, a), number(sessions, b)) == (1, 2)
    with sessions.begin() as s:
        outbox.mark_sent(s, [b], T0)  # a was parked meanwhile, then queued again
    other_stream, c, d = row(sessions, "notices"), row(sessions), row(sessions)
    assert withdraw(sessions, a) == outbox.PASSED
    rows, last = state(sessions)
    assert rows[a] == (None, b"") and rows[c] == (1, b"v#1") and rows[d] == (None, b"v") and last == 2
    assert state(sessions, "notices")[0][other_stream] == (None, b"v")  # another stream's rows are not touched
    assert number(sessions, c) == 1 and number(sessions, d) == 3

    # nothing unsent to take it: the number stays with the withdrawn row, and `hub resend` says why
    e, f = row(sessions), row(sessions)
    assert (number(sessions, e), number(sessions, f)) == (4, 5)
    with sessions.begin() as s:
        outbox.mark_sent(s, [c, d, f], T0)
    assert withdraw(sessions, e) == outbox.KEPT
    rows, last = state(sessions)
    assert rows[e] == (4, b"") and last == 5
    _, skipped = outbox_to_resend(sessions, TO, "plan-requests", 4, 4)
    assert skipped[4].startswith("withdrawn before it was sent (consent_revoked)")

    # once 5 is given back, 4 (kept by a withdrawn row) is the last: given back too
    with sessions.begin() as s:
        s.execute(sa.update(outbox.OutboxMessage).where(outbox.OutboxMessage.id == f).values(sent_at=None))  # as if 5's send had failed
    assert withdraw(sessions, f) == outbox.RETURNED
    rows, last = state(sessions)
    assert rows[e] == (None, b"") and rows[f] == (None, b"") and last == 3
    assert number(sessions, row(sessions)) == 4


def test_a_row_sent_or_parked_meanwhile_or_never_numbered_keeps_what_it_has(sessions):
    a, b, c = row(sessions), row(sessions), row(sessions)
    number(sessions, a)
    number(sessions, b)
    with sessions.begin() as s:
        outbox.park(s, b, outbox.RECORD_TOO_LARGE, None, T0)
        assert outbox.release_number(s, b, with_n) is None  # parked by another worker meanwhile
        assert outbox.release_number(s, c, with_n) is None  # no number
        assert outbox.release_number(s, c + 99, with_n) is None  # no such row
    rows, last = state(sessions)
    assert rows[a][0] == 1 and rows[b][0] == 2 and last == 2
