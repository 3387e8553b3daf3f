"""Plan requests and notices numbered per recipient and stream, on the real broker and the real
PostgreSQL: a recipient's two plan requests and its notice arrive numbered 1, 2 and 1 through the
outbox relay of a running worker; a lost plan request is a gap that `hub gaps` finds on the
recipient's own topic and `hub resend --stream plan-requests` fills; a plan request withdrawn before
it was sent takes no number (`hub gaps` finds no gap), and one numbered by a failed send and
withdrawn then gives its number back or passes it on; concurrent relays never give one number twice
nor leave one unused."""

import asyncio
import threading

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.adapters import database, outbox
from hub.adapters.consent_uow import SqlConsentUnits
from hub.adapters.resend import gaps, read_sequences
from hub.cli import main
from hub.consent import records
from hub.domain.clock import utcnow
from hub.schemas import topics
from hub.services.consent import ConsentRegistry
from hub.streams import consent_agents
from hub.streams.runner import running, wait_for
from tests.integration.test_consent_propagation import DATA_KEY, SECRET, Collector, assessment, consent, make_hub, new_person

pytestmark = pytest.mark.integration

RECIPIENT = "employment_authority:27"


def grant(reg, pid, key, recipient):
    reg.record_consent(records.consent_from_avro(consent(pid, f"c-{key[:8]}", "granted", [recipient], ["education"])))


def assess(reg, pid, recipient, assessment_id):
    rec = assessment(pid, recipient, assessment_id)
    out = reg.handle_assessment(records.assessment_from_avro(rec), reg.codec.encode("AssessmentCompleted", rec))
    assert out.disclosed, out


def cli(args, kafka_url, database_url):
    env = {"HUB_KAFKA_URL": kafka_url, "HUB_DATABASE_URL": database_url, "HUB_DATA_KEYS": DATA_KEY, "HUB_PERSON_KEY_SECRET": SECRET,
           "HUB_STARTUP_TIMEOUT": "20"}
    return CliRunner().invoke(main, args, env=env)


def test_a_recipients_plan_requests_and_notices_are_numbered_and_a_gap_is_found_and_resent(fresh_kafka_url, own_database_url):
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    sessions = database.session_factory(engine)
    reg = ConsentRegistry(SqlConsentUnits(sessions), legal_bases=(), person_key_secret=SECRET)
    plans, notices = topics.plan_request_topic(RECIPIENT), topics.notice_topic(RECIPIENT)
    (pid, key), (pid2, key2) = new_person(), new_person()

    async def relay_until(n_plans, n_notices, before=None, between=None):
        """Run a worker (its outbox relay) until the recipient's topics hold this many records;
        `before()` runs once it is up, `between()` once the plan requests are there."""
        hub = make_hub(fresh_kafka_url, "seq")
        consent_agents.register(hub, sessions, legal_bases=(), relay_interval=0.2)
        got = Collector(hub, plans, notices)
        async with running(hub):
            if before is not None:
                before()
            await wait_for(lambda: len(got.on[plans]) >= n_plans, 60, "the plan requests")
            if between is not None:
                between()
            await wait_for(lambda: len(got.on[notices]) >= n_notices, 60, "the notices")
            await asyncio.sleep(1.0)  # a relay tick more: nothing else arrives
        return got

    def two_plan_requests():
        grant(reg, pid, key, RECIPIENT)
        assess(reg, pid, RECIPIENT, "as-1")
        assess(reg, pid, RECIPIENT, "as-2")

    def revocation():  # after the plan requests went out (before, the relay would withdraw them)
        reg.record_consent(records.consent_from_avro(consent(pid, f"c-{key[:8]}", "revoked")))

    # two plan requests and a notice (the revocation) for one recipient
    got = asyncio.run(relay_until(2, 1, two_plan_requests, revocation))
    assert [(r["assessment_id"], r["sequence"]) for r in got.on[plans]] == [("as-1", 1), ("as-2", 2)]
    [notice] = got.on[notices]
    assert notice["notice_type"] == "consent_revoked" and notice["sequence"] == 1 and notice["to"] == RECIPIENT

    # a plan request lost after the broker acknowledged it (a topic restored from an older backup,
    # say): the relay numbered it and never sends it again, the recipient sees 1, 2, 4
    grant(reg, pid2, key2, RECIPIENT)
    assess(reg, pid2, RECIPIENT, "as-3")
    with sessions.begin() as s:
        [lost] = s.scalars(sa.select(outbox.OutboxMessage).where(outbox.OutboxMessage.stream == "plan-requests", outbox.OutboxMessage.sent_at.is_(None)))
        assert lost.sequence is None  # the relay numbers a row when it sends it
        renumber = lambda value, n: reg.codec.encode("PlanRequest", {**reg.codec.decode(value).record, "sequence": n})  # noqa: E731 - as the relay does
        assert outbox.number(s, lost.id, RECIPIENT, "plan-requests", renumber)[0] == 3
        outbox.mark_sent(s, [lost.id], lost.created_at)
        lost_id = lost.id
    assess(reg, pid2, RECIPIENT, "as-4")
    got = asyncio.run(relay_until(3, 1))
    assert [r["sequence"] for r in got.on[plans]] == [1, 2, 4]

    sequences, unnumbered, trimmed = asyncio.run(read_sequences(fresh_kafka_url, plans))
    assert gaps(sequences) == [(3, 3)] and unnumbered == 0 and not trimmed

    found = cli(["gaps", "--recipient", RECIPIENT], fresh_kafka_url, own_database_url)
    assert found.exit_code == 1, found.output
    assert "plan-requests: hub.plan-requests.employment_authority.27.v1: 3 record(s), sequence 1-4; missing 3" in found.output
    assert f"hub resend --recipient {RECIPIENT} --stream plan-requests --from 3 --to 3" in found.output
    assert "notices: hub.notices.employment_authority.27.v1: 1 record(s), sequence 1-1; no gap from 1" in found.output
    assert "referrals: hub.referrals.employment_authority.27.v1: no such topic" in found.output

    resent = cli(["resend", "--recipient", RECIPIENT, "--stream", "plan-requests", "--from", "3", "--to", "3"], fresh_kafka_url, own_database_url)
    assert resent.exit_code == 0, resent.output
    assert f"resent 1 record(s) to {plans} (sequence 3-3)" in resent.output
    sequences, _, _ = asyncio.run(read_sequences(fresh_kafka_url, plans))
    assert sorted(sequences) == [1, 2, 3, 4] and gaps(sequences) == []
    assert cli(["gaps", "--recipient", RECIPIENT, "--stream", "plan-requests"], fresh_kafka_url, own_database_url).exit_code == 0

    # the resent plan request is the one the outbox kept: same event id and content as the lost row
    with sessions() as s:
        kept = reg.codec.decode(s.get(outbox.OutboxMessage, lost_id).value).record
    received = [reg.codec.decode(m.value).record for m in asyncio.run(_read(fresh_kafka_url, plans))]
    [again] = [r for r in received if r["sequence"] == 3]
    assert again["event_id"] == kept["event_id"] and again["assessment_id"] == "as-3" and again["person_key"] == key2

    # notices resend alike; a plan request whose consent has ended since is not disclosed again
    resent = cli(["resend", "--recipient", RECIPIENT, "--stream", "notices", "--from", "1"], fresh_kafka_url, own_database_url)
    assert resent.exit_code == 0 and f"resent 1 record(s) to {notices} (sequence 1-1)" in resent.output
    resent = cli(["resend", "--recipient", RECIPIENT, "--stream", "plan-requests", "--from", "1", "--to", "2"], fresh_kafka_url, own_database_url)
    assert resent.exit_code == 0 and "resent 0 record(s)" in resent.output
    assert "sequence 1 not sent again: not disclosed again: its consent or legal basis no longer holds" in resent.output
    engine.dispose()


async def _read(kafka_url, topic):
    from tests.kafka_helpers import read_topic

    return await read_topic(kafka_url, topic, min_count=1)


def test_a_plan_request_withdrawn_before_it_was_sent_leaves_no_gap(fresh_kafka_url, own_database_url):
    """The consent of a committed plan request is revoked before the relay sends it: the relay
    withdraws it, and the recipient's next plan request takes the number it would have had."""
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    sessions = database.session_factory(engine)
    reg = ConsentRegistry(SqlConsentUnits(sessions), legal_bases=(), person_key_secret=SECRET)
    recipient = "employment_authority:26"
    plans = topics.plan_request_topic(recipient)
    pid, key = new_person()
    grant(reg, pid, key, recipient)
    assess(reg, pid, recipient, "as-withdrawn")
    reg.record_consent(records.consent_from_avro(consent(pid, f"c-{key[:8]}", "revoked")))  # before the relay sent it
    reg.record_consent(records.consent_from_avro(consent(pid, f"c2-{key[:8]}", "granted", [recipient], ["education"])))
    assess(reg, pid, recipient, "as-sent")

    async def relay():
        hub = make_hub(fresh_kafka_url, "seqgap")
        consent_agents.register(hub, sessions, legal_bases=(), relay_interval=0.2)
        got = Collector(hub, plans)
        async with running(hub):
            await wait_for(lambda: len(got.on[plans]) >= 1, 60, "the plan request")
            await asyncio.sleep(1.0)  # a relay tick more: nothing else arrives
        return got

    got = asyncio.run(relay())
    assert [(r["assessment_id"], r["sequence"]) for r in got.on[plans]] == [("as-sent", 1)]
    with sessions() as s:
        rows = {r.event_id: r for r in s.scalars(sa.select(outbox.OutboxMessage).where(outbox.OutboxMessage.stream == "plan-requests"))}
        withdrawn = [r for r in rows.values() if r.parked_at is not None]
        assert len(rows) == 2 and len(withdrawn) == 1 and withdrawn[0].sequence is None and withdrawn[0].sent_at is None
        assert outbox.last_sequence(s, recipient, "plan-requests") == 1
    found = cli(["gaps", "--recipient", recipient, "--stream", "plan-requests"], fresh_kafka_url, own_database_url)
    assert found.exit_code == 0, found.output
    assert f"plan-requests: {plans}: 1 record(s), sequence 1-1; no gap from 1" in found.output
    engine.dispose()


def test_concurrent_relays_number_each_row_once_in_row_order(own_database_url):
    """Eight threads, each numbering every row in row order in its own transactions (as relays of
    several workers do): each row gets one number, every (recipient, stream) ends with 1..n in row
    order, and all threads agree on each row's number."""
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url, pool_size=10)
    sessions = database.session_factory(engine)
    keys = [("municipality:091", "notices"), ("employment_authority:08", "plan-requests"), ("employment_authority:08", "notices")]
    with sessions.begin() as s:
        rows = [(outbox.enqueue(s, "t", "Notice", f"e-{i}", b"v", None, [], utcnow(), recipient=k[0], stream=k[1]).id, k)
                for i in range(30) for k in [keys[(i * 7) % 3]]]
    got: list[dict[int, int]] = [{} for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(i):
        try:
            start.wait()
            for row_id, (recipient, stream) in rows:
                with sessions.begin() as s:
                    numbered = outbox.number(s, row_id, recipient, stream, lambda value, n: value + str(n).encode())
                got[i][row_id] = numbered[0]
                assert numbered[1] == b"v" + str(numbered[0]).encode()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert all(g == got[0] for g in got)
    for k in keys:
        numbers = [got[0][row_id] for row_id, key in rows if key == k]
        assert numbers == list(range(1, len(numbers) + 1)), k  # each once, no hole, in row order
        with sessions() as s:
            assert outbox.last_sequence(s, *k) == len(numbers)
    engine.dispose()


class FailingSends:
    """The hub's producer, except that the sends of the plan requests of some assessments fail with
    `errors[assessment_id]()` (once each), as the broker reports them."""

    def __init__(self, producer, codec):
        self.producer, self.codec = producer, codec
        self.errors: dict[str, object] = {}

    async def send_and_wait(self, topic, value, key=None, headers=None):
        record = self.codec.decode(value).record
        error = self.errors.pop(record.get("assessment_id"), None)
        if error is not None:
            raise error()
        return await self.producer.send_and_wait(topic, value, key, headers=headers)


def test_a_plan_request_numbered_and_withdrawn_after_a_failed_send_leaves_no_gap(fresh_kafka_url, own_database_url):
    """A plan request is numbered, its send fails (the broker does not answer), then its consent is
    revoked: the relay withdraws it (never sent, its personal data dropped) and gives its number back
    (it was the last one given), so the recipient's next plan request takes it. A numbered plan
    request parked (too large), later ones numbered and sent, then queued again after its consent
    ended: withdrawn, it passes its number to the stream's next unsent plan request. The recipient's
    topic has no gap (`hub gaps`), and `hub resend` sends what the numbers now stand for."""
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    sessions = database.session_factory(engine)
    reg = ConsentRegistry(SqlConsentUnits(sessions), legal_bases=(), person_key_secret=SECRET)
    recipient = "employment_authority:25"
    plans = topics.plan_request_topic(recipient)
    (pid, key), (pid2, key2), (pid3, key3) = new_person(), new_person(), new_person()

    def revoke(p, k):
        reg.record_consent(records.consent_from_avro(consent(p, f"c-{k[:8]}", "revoked")))

    def row_of(assessment_id):
        with sessions() as s:
            [row] = [r for r in s.scalars(sa.select(outbox.OutboxMessage).where(outbox.OutboxMessage.stream == "plan-requests"))
                     if r.value and reg.codec.decode(r.value).record["assessment_id"] == assessment_id
                     or not r.value and r.event_id == events[assessment_id]]
            return row

    events: dict[str, str] = {}

    def assess_and_note(p, assessment_id):
        assess(reg, p, recipient, assessment_id)
        with sessions() as s:
            newest = s.scalars(sa.select(outbox.OutboxMessage).where(outbox.OutboxMessage.stream == "plan-requests")
                               .order_by(outbox.OutboxMessage.id.desc()).limit(1)).one()
            events[assessment_id] = newest.event_id

    async def scenario():
        hub = make_hub(fresh_kafka_url, "seqback")
        wiring = consent_agents.register(hub, sessions, legal_bases=(), relay=False)  # the test flushes the relay itself
        hub.app.service(wiring.relay.consents)
        got = Collector(hub, plans)
        async with running(hub):
            real = hub.publisher.producer_here()
            failing = FailingSends(real, hub.codec)
            hub.publisher.producer_here = lambda: failing
            flush = wiring.relay.flush_or_log

            grant(reg, pid, key, recipient)
            assess_and_note(pid, "as-1")
            await flush()  # as-1 is 1
            # as-2 is numbered 2, its send fails: the flush stops there, the row stays unsent
            assess_and_note(pid, "as-2")
            failing.errors["as-2"] = lambda: KafkaConnectionError("the broker does not answer")
            await flush()
            assert row_of("as-2").sequence == 2 and row_of("as-2").sent_at is None
            # its consent is revoked before the next flush; another person's plan request follows
            revoke(pid, key)
            grant(reg, pid2, key2, recipient)
            assess_and_note(pid2, "as-3")
            await flush()
            await wait_for(lambda: len(got.on[plans]) >= 2, 60, "as-1 and as-3")
            assert [(r["assessment_id"], r["sequence"]) for r in got.on[plans]] == [("as-1", 1), ("as-3", 2)]  # as-3 took 2: no gap

            # as-4 is numbered 3 and parked (too large); as-5 goes out as 4
            grant(reg, pid3, key3, recipient)
            assess_and_note(pid3, "as-4")
            failing.errors["as-4"] = lambda: MessageSizeTooLargeError("over max_request_size")
            assess_and_note(pid2, "as-5")
            await flush()
            parked = row_of("as-4")
            assert parked.sequence == 3 and parked.parked_reason == outbox.RECORD_TOO_LARGE
            # queued again after its consent ended: withdrawn, its number goes to as-6, the next unsent one
            with sessions.begin() as s:
                assert outbox.unpark(s, parked.id) is not None
            revoke(pid3, key3)
            assess_and_note(pid2, "as-6")
            await flush()
            await wait_for(lambda: len(got.on[plans]) >= 4, 60, "as-5 and as-6")
            await asyncio.sleep(1.0)  # nothing else arrives
        return got

    got = asyncio.run(scenario())
    assert [(r["assessment_id"], r["sequence"]) for r in got.on[plans]] == [("as-1", 1), ("as-3", 2), ("as-5", 4), ("as-6", 3)]
    for withdrawn in (row_of("as-2"), row_of("as-4")):
        assert withdrawn.parked_reason == "consent_revoked" and withdrawn.sent_at is None
        assert withdrawn.sequence is None and withdrawn.value == b""  # no number, no personal data
    with sessions() as s:
        assert outbox.last_sequence(s, recipient, "plan-requests") == 4
    sequences, unnumbered, _ = asyncio.run(read_sequences(fresh_kafka_url, plans))
    assert sorted(sequences) == [1, 2, 3, 4] and unnumbered == 0

    found = cli(["gaps", "--recipient", recipient, "--stream", "plan-requests"], fresh_kafka_url, own_database_url)
    assert found.exit_code == 0, found.output
    assert f"plan-requests: {plans}: 4 record(s), sequence 1-4; no gap from 1" in found.output
    # `hub resend` sends what each number stands for now (as-1's consent was revoked: not again)
    resent = cli(["resend", "--recipient", recipient, "--stream", "plan-requests", "--from", "1"], fresh_kafka_url, own_database_url)
    assert resent.exit_code == 0, resent.output
    assert f"resent 3 record(s) to {plans} (sequence 2-4)" in resent.output
    assert "sequence 1 not sent again: not disclosed again" in resent.output
    received = [reg.codec.decode(m.value).record for m in asyncio.run(_read(fresh_kafka_url, plans))]
    assert sorted((r["sequence"], r["assessment_id"]) for r in received) == [
        (1, "as-1"), (2, "as-3"), (2, "as-3"), (3, "as-6"), (3, "as-6"), (4, "as-5"), (4, "as-5")]
    engine.dispose()
