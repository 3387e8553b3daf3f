"""`hub resend` and `hub gaps` for every per-recipient stream: an id that is no recipient is refused
(exit 2) naming the known ids nearest to it, before any connection; what the outbox resends of
plan requests and notices (sent rows, in sequence order) and why it leaves the others."""

import datetime as dt
import uuid

import pytest
from click.testing import CliRunner

from hub.adapters import outbox
from hub.adapters.resend import NOT_SENT_YET, outbox_to_resend
from hub.cli import main
from hub.domain import hetu
from hub.schemas import topics
from hub.schemas.codec import default_codec
from hub.schemas.envelope import cloudevent_headers

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
EMPLOY = "employment_authority:08"


@pytest.mark.parametrize("args", [
    ["resend", "--recipient", "municipality:999", "--from", "1"],
    ["resend", "--recipient", "municipality:999", "--stream", "plan-requests", "--from-seq", "1"],
    ["resend", "--recipient", "municipality:999", "--stream", "notices", "--from", "1", "--to", "3"],
    ["gaps", "--recipient", "municipality:999"],
    ["gaps", "--recipient", "municipality:999", "--stream", "notices"],
])
def test_an_unknown_recipient_is_refused_naming_the_known_ids(args):
    out = CliRunner().invoke(main, args, env={"HUB_KAFKA_URL": "kafka://127.0.0.1:1"})
    assert out.exit_code == 2, out.output
    assert "unknown recipient municipality:999" in out.output
    assert "municipality:992" in out.output and "374 recipients" in out.output  # the nearest known id, and how many there are
    assert "Traceback" not in out.output


def test_a_malformed_id_and_an_unknown_stream_are_usage_errors():
    for args in (["gaps", "--recipient", "nobody"], ["resend", "--recipient", "nobody", "--from", "1"],
                 ["resend", "--recipient", EMPLOY, "--stream", "referral-status", "--from", "1"],
                 ["resend", "--recipient", EMPLOY, "--stream", "notices", "--from", "4", "--to", "2"]):
        out = CliRunner().invoke(main, args)
        assert out.exit_code == 2, (args, out.output)
        assert "Traceback" not in out.output


def test_a_known_recipient_passes_on_to_the_broker_settings():
    """A known id is not refused: without HUB_KAFKA_URL the commands stop at that (exit 2), not at the id."""
    for args in (["gaps", "--recipient", EMPLOY, "--stream", "plan-requests"], ["resend", "--recipient", EMPLOY, "--stream", "notices", "--from", "1"]):
        out = CliRunner().invoke(main, args, env={"HUB_KAFKA_URL": ""})
        assert out.exit_code == 2 and "HUB_KAFKA_URL" in out.output and "unknown recipient" not in out.output


def test_the_commands_are_registered_with_every_stream():
    for command in ("gaps", "resend"):
        out = CliRunner().invoke(main, [command, "--help"])
        assert out.exit_code == 0 and "plan-requests" in out.output and "notices" in out.output


def plan_request_record(n, person_key):
    return {"event_id": str(uuid.UUID(int=n)), "occurred_at": T0, "recorded_at": T0, "source": "integration-hub", "request_id": f"pr-{n}",
            "to": EMPLOY, "assessment_id": f"as-{n}", "assessor": "municipality:091", "person_key": person_key,
            "person_id": hetu.make(dt.date(1990, 5, 17), 941), "sequence": n}


def add(s, n, *, sent=True, parked=None, person_key="pk-1"):
    record = plan_request_record(n, person_key)
    value = default_codec().encode("PlanRequest", record)
    row = outbox.enqueue(s, topics.plan_request_topic(EMPLOY), "PlanRequest", record["event_id"], value, person_key,
                         cloudevent_headers("PlanRequest", record), T0, recipient=EMPLOY, stream="plan-requests", sequence=n)
    if sent:
        outbox.mark_sent(s, [row.id], T0)
    if parked:
        outbox.park(s, row.id, parked, None, T0)
    return row


def test_the_outbox_resends_sent_rows_in_order_and_says_why_not_the_others(sessions):
    with sessions.begin() as s:
        add(s, 1)
        add(s, 2, sent=False, parked="consent_revoked")  # withdrawn before it was sent
        add(s, 3)
        add(s, 4, person_key="pk-gone")  # sent; its consent has ended since
        add(s, 5, sent=False, parked=outbox.RECORD_TOO_LARGE)
        add(s, 6, sent=False)  # the relay has not sent it yet
        add(s, 7)

    def why_not(plan):
        return "consent_revoked" if plan["person_key"] == "pk-gone" else None

    rows, skipped = outbox_to_resend(sessions, EMPLOY, "plan-requests", 1, why_not=why_not)
    assert [r.sequence for r in rows] == [1, 3, 7]
    assert sorted(skipped) == [2, 4, 5, 6]
    assert "withdrawn before it was sent" in skipped[2] and "no longer holds" in skipped[4]
    assert "hub outbox retry" in skipped[5] and skipped[6] == NOT_SENT_YET
    rows, skipped = outbox_to_resend(sessions, EMPLOY, "plan-requests", 3, 4, why_not=why_not)
    assert [r.sequence for r in rows] == [3] and list(skipped) == [4]
    assert outbox_to_resend(sessions, EMPLOY, "notices", 1) == ([], {})  # another stream of the recipient
    assert outbox_to_resend(sessions, "employment_authority:09", "plan-requests", 1) == ([], {})
