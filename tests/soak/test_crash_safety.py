"""Crash safety: the full pipeline, a real `hub worker` process, the real broker and PostgreSQL, and the
worker killed with SIGKILL at random moments and restarted (the broker is never killed: Tansu keeps
nothing across its own restarts).

Input: realistic DVV change data (hub.adapters.dvv.synthetic, mapped and validated by the ingest
use case) on hub.population-changes.v1, a share of it delivered twice (a publisher's retry);
initial assessments on hub.assessments.v1 and consents on hub.consents.v1 (granted before the
assessment, granted after it, or never). The expected outcome is computed by an oracle: the same
pure functions the agents call (detection, routing, the consent decision's derived ids), applied to
the same records in the same order, without Kafka and without crashes.

Afterwards: every expected newcomer, referral and plan request exists exactly once by id (in the
ledger; on the topics possibly repeated with the same id, which is at-least-once delivery and is
counted as `wire_repeats`), nothing unexpected exists, the ledger agrees with the topics, every
assessment without a consent is still held, nothing went to dead letters. The counts are written
to `<tmp>/crash-safety-counts.json` and printed.

`make test` runs the short version (1 500 events, 2 kills); `make soak` the full one (100 000, 20).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import time
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from hub.adapters import database
from hub.adapters.dvv.ingest import process_page
from hub.adapters.dvv.page import parse_page
from hub.adapters.dvv.synthetic import generate_pages
from hub.adapters.idempotency import ProcessedEvent
from hub.adapters.kafka.admin import ensure_topics
from hub.adapters.outbox import OutboxMessage
from hub.adapters.referral_ledger import ROUTING_CONSUMER, ReferralRow, ReferralUpdateRow, ReferralWithdrawalRow
from hub.consent import records as consent_records
from hub.services.consent import CONSUMER_ASSESSMENTS, CONSUMER_CONSENTS
from hub.adapters.consent_store import Disclosure, HeldItem
from hub.domain import population_change
from hub.routing.reference import municipality_codes
from hub.newcomers.detection import DEFAULT_WINDOW_DAYS, newcomer_record, step
from hub.routing.engine import route
from hub.routing.model import InputError, RoutingInput
from hub.routing.reference import default_reference
from hub.routing.referrals import referral_id
from hub.routing.rules import default_rules
from hub.schemas.codec import default_codec
from hub.simulation import ALL_CATEGORIES
from hub.schemas import topics
from hub.schemas.envelope import cloudevent_headers, envelope
from tests.kafka_helpers import bootstrap, publish_all
from tests.soak.worker import WorkerProcess

pytestmark = pytest.mark.integration

# HUB_SOAK_EVENTS / HUB_SOAK_KILLS scale the soak run (e.g. a shorter run on a busy machine; report the size used)
SOAK_EVENTS = int(os.environ.get("HUB_SOAK_EVENTS", "100000"))
SOAK_KILLS = int(os.environ.get("HUB_SOAK_KILLS", "20"))
SIZES = [
    pytest.param(1_500, 2, id="short-1500-events-2-kills"),
    pytest.param(SOAK_EVENTS, SOAK_KILLS, id="soak", marks=pytest.mark.soak),
]
REPLAY_SHARE = 0.03  # population changes published a second time later (same bytes, same event id)
ASSESSMENT_SHARE = 0.09
STALL_TIMEOUT = 300.0  # seconds without reaching the next kill's progress mark: the pipeline is stuck
CONSUMERS = (ROUTING_CONSUMER, CONSUMER_ASSESSMENTS, CONSUMER_CONSENTS)


# -- a database of this test's own (the counts must be exact) ---------------------------------------
# -- the input ----------------------------------------------------------------------------------------
class Inputs:
    """The records to publish, in order, and what the pipeline must make of them."""

    def __init__(self, n_events: int, seed: int, secret: str, now: dt.datetime):
        self.codec = codec = default_codec()
        rng = random.Random(seed)
        pop_target = int(n_events * (1 - ASSESSMENT_SHARE * 1.7))
        fresh = int(pop_target / (1 + REPLAY_SHARE))
        # realistic DVV data: the ingest use case's own mapping and validation (bad changes are left out here)
        events: list[tuple[dict, str]] = []
        changes = max(50, fresh // 2)
        day = (now - dt.timedelta(days=2)).date()
        while len(events) < fresh:
            events = []
            for text in generate_pages(changes=changes, seed=seed, day=day):
                events.extend(process_page(parse_page(text), secret=secret, now=now).events)
            changes = int(changes * 1.5) + 10
        events = events[:fresh]
        pop = [(key.encode(), codec.encode("PopulationChange", rec), cloudevent_headers("PopulationChange", rec)) for rec, key in events]
        replays = rng.sample(range(len(pop)), int(len(pop) * REPLAY_SHARE))
        order = list(range(len(pop)))
        for i in replays:  # a later duplicate delivery of the same record
            order.insert(rng.randrange(i + 1, len(order) + 1), i)
        self.population = [pop[i] for i in order]
        self.replayed = len(replays)

        self._oracle_detection(secret, now)
        self._oracle_routing()
        self._assessments_and_consents(n_events - len(self.population), rng, secret, now)

    def _oracle_detection(self, secret: str, now: dt.datetime) -> None:
        people: dict[str, str] = {}
        self.newcomers: dict[str, dict] = {}
        self.invalid_population = 0
        for _key, value, _headers in self.population:  # what the detection agent does, without Kafka
            record = self.codec.decode(value, "PopulationChange").record
            if population_change.validate(record, now=now, municipalities=municipality_codes()):
                self.invalid_population += 1
                continue
            done = step(record, people.get, secret, DEFAULT_WINDOW_DAYS)
            for ev in done.found:
                rec = newcomer_record(ev, done.key, now)
                self.newcomers.setdefault(str(rec["event_id"]), rec)
            people[done.key] = done.state
            if done.old_key and people.get(done.old_key) is not None:
                del people[done.old_key]
        self.person_keys = {rec["person_key"] for rec in self.newcomers.values()}

    def _oracle_routing(self) -> None:
        rules, reference = default_rules(), default_reference()
        self.referrals: set[str] = set()
        self.routed: set[str] = set()
        self.unroutable: Counter = Counter()  # reason -> newcomers routing must dead-letter
        for event_id, rec in self.newcomers.items():
            decoded = self.codec.decode(self.codec.encode("Newcomer", rec), "Newcomer").record
            try:
                newcomer = RoutingInput.from_record(decoded)
                decisions = route(newcomer, rules, reference)
            except InputError as exc:
                self.unroutable[exc.reason] += 1
                continue
            self.routed.add(event_id)
            self.referrals.update(referral_id(newcomer.person_key, d) for d in decisions)

    def _assessments_and_consents(self, budget: int, rng: random.Random, secret: str, now: dt.datetime) -> None:
        arrived = sorted((rec["person_key"], rec["person_id"], rec["municipality_code"]) for rec in self.newcomers.values()
                         if rec["change"] == "arrived" and rec.get("municipality_code"))
        plans = {"before": 0.4, "after": 0.35, "none": 0.25}
        per_person: list[tuple[str, str, str, str]] = []  # (key, pid, municipality, plan)
        n_people = max(1, int(budget / 1.75))
        for key, pid, municipality in rng.sample(arrived, min(n_people, len(arrived))):
            per_person.append((key, pid, municipality, rng.choices(list(plans), weights=list(plans.values()))[0]))
        self.assessments: list[tuple[bytes, bytes, list]] = []
        self.consents_before: list[tuple[bytes, bytes, list]] = []
        self.consents_after: list[tuple[bytes, bytes, list]] = []
        self.plan_requests: set[str] = set()
        self.held: set[str] = set()  # assessment event ids that must stay held
        self.plan_topics: set[str] = set()
        n = 0
        while per_person and len(self.assessments) + len(self.consents_before) + len(self.consents_after) < budget:
            key, pid, municipality, plan = per_person[n % len(per_person)]
            n += 1
            authority = f"municipality:{municipality}"
            # another authority makes the plan: an assessor that makes it itself discloses nothing and is never held
            plan_maker = default_reference().authorities(municipality)["employment_authority"].authority or (
                "municipality:091" if municipality != "091" else "municipality:049")
            rec = envelope(authority, now)
            rec.update(assessment_id=f"A-{n}", person_key=key, person_id=pid, assessor=authority, plan_authority=plan_maker, referral_id=None,
                       education="secondary", work_history="3 years in nursing", language_skills=[{"language": "fi", "skill": "overall", "cefr_level": "A2"}],
                       literacy="literate", recommended_path="integration training", service_needs=[])
            self.assessments.append((key.encode(), self.codec.encode("AssessmentCompleted", rec), cloudevent_headers("AssessmentCompleted", rec)))
            if plan == "none":
                self.held.add(str(rec["event_id"]))
            else:
                self.plan_requests.add(consent_records.derived_id("plan-request", str(rec["event_id"]), plan_maker))
                self.plan_topics.add(topics.plan_request_topic(plan_maker))
            if n <= len(per_person) and plan != "none":  # one grant per person, covering the plan maker
                c = envelope(authority, now)
                c.update(consent_id=f"C-{key[:12]}", person_id=pid, action="granted", purpose="integration_plan", data_categories=ALL_CATEGORIES,
                         recipients=[plan_maker], valid_from=now - dt.timedelta(days=1), valid_until=now + dt.timedelta(days=365),
                         evidence="signed form", recorded_by=authority)
                item = (key.encode(), self.codec.encode("Consent", c), cloudevent_headers("Consent", c))
                (self.consents_before if plan == "before" else self.consents_after).append(item)

    @property
    def total(self) -> int:
        return len(self.population) + len(self.assessments) + len(self.consents_before) + len(self.consents_after)

    @property
    def expected_marks(self) -> int:
        """processed_events rows when everything is done (one per distinct event applied)."""
        return len(self.routed) + len(self.assessments) + len(self.consents_before) + len(self.consents_after)

    def schedule(self) -> list[tuple[str, bytes, bytes, list]]:
        """Every record in publishing order: consents granted 'before' go first, the assessments spread
        over the population changes, the late grants after everything else."""
        out = [(topics.CONSENTS, *c) for c in self.consents_before]
        every = max(1, len(self.population) // max(1, len(self.assessments)))
        a = iter(self.assessments)
        for i, item in enumerate(self.population):
            out.append((topics.POPULATION_CHANGES, *item))
            if i % every == every - 1:
                nxt = next(a, None)
                if nxt is not None:
                    out.append((topics.ASSESSMENTS, *nxt))
        out.extend((topics.ASSESSMENTS, *x) for x in a)
        out.extend((topics.CONSENTS, *c) for c in self.consents_after)
        return out


# -- Kafka I/O of the test (plain aiokafka, not the code under test) -----------------------------------

async def read_all(url: str, topic_filter) -> dict[str, list]:
    """Every record now in the topics whose names pass `topic_filter`, read up to the end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        names = sorted(t for t in await consumer.topics() if topic_filter(t))
        parts = [TopicPartition(t, p) for t in names for p in (consumer.partitions_for_topic(t) or ())]
        out: dict[str, list] = {t: [] for t in names}
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + 600
        async def behind() -> bool:
            for tp in parts:
                if await consumer.position(tp) < ends[tp]:
                    return True
            return False

        while await behind():
            if time.monotonic() > deadline:
                raise TimeoutError("timed out reading the topics back to their end offsets")
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, msgs in batch.items():
                out[tp.topic].extend(msgs)
        return out
    finally:
        await consumer.stop()


# -- the run ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_events,n_kills", SIZES)
def test_worker_killed_at_random_moments_loses_nothing_and_duplicates_nothing(n_events, n_kills, fresh_kafka_url, own_database_url, tmp_path):
    started = time.monotonic()
    seed = 681 + n_events
    rng = random.Random(seed)
    secret = f"soak-{uuid.uuid4().hex}"
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    inputs = Inputs(n_events, seed, secret, now)
    database.upgrade(own_database_url)
    # the topics exist before anyone publishes (as `hub topics --create` does in a deployment), with one
    # partition: a topic the broker auto-creates on the first produce gets its default partitions (4 on Tansu)
    ensure_topics(fresh_kafka_url, list(topics.FIXED_TOPICS), 1)
    engine = database.create_engine(own_database_url)
    counts: dict = {"events": inputs.total, "population_changes": len(inputs.population), "population_replays": inputs.replayed,
                    "assessments": len(inputs.assessments), "consents": len(inputs.consents_before) + len(inputs.consents_after),
                    "kills_planned": n_kills, "newcomers_unroutable_expected": dict(inputs.unroutable)}

    def db_count(q) -> int:
        with engine.connect() as conn:
            return conn.execute(q).scalar() or 0

    def marks() -> int:
        return db_count(sa.select(sa.func.count()).select_from(ProcessedEvent).where(ProcessedEvent.consumer.in_(CONSUMERS)))

    def done() -> bool:
        return (marks() >= inputs.expected_marks
                and db_count(sa.select(sa.func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))) == 0
                and db_count(sa.select(sa.func.count()).select_from(ReferralRow).where(ReferralRow.published_at.is_(None))) == 0)

    worker = WorkerProcess({"HUB_KAFKA_URL": fresh_kafka_url, "HUB_DATABASE_URL": own_database_url, "HUB_APP_ID": f"soak-{uuid.uuid4().hex[:8]}",
                            "HUB_PERSON_KEY_SECRET": secret, "HUB_DATA_DIR": str(tmp_path), "HUB_LOG_LEVEL": "WARNING",
                            "HUB_CONSENT_LEGAL_BASES": ""}, tmp_path)

    async def wait(condition, timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            if not worker.alive():  # a crash we did not cause: note it and carry on with a new worker
                worker.kill()
                worker.start()
            await asyncio.sleep(0.25)
        return True

    async def scenario() -> None:
        worker.start()
        producing = asyncio.ensure_future(publish_all(fresh_kafka_url, inputs.schedule()))
        try:
            thresholds = sorted((i + rng.random()) / (n_kills + 1) for i in range(n_kills))
            kill_marks = []
            for i, share in enumerate(thresholds):
                await asyncio.sleep(rng.uniform(0.5, 4.0))  # at least a little life after each (re)start
                target = int(share * inputs.expected_marks)
                if not await wait(lambda target=target: marks() >= target, STALL_TIMEOUT, f"progress to {share:.0%} of the expected marks before kill {i + 1}"):
                    counts["stalled"] = (f"no progress to {share:.0%} of the expected marks within {STALL_TIMEOUT:.0f} s after restart {worker.starts - 1} "
                                         f"(before kill {i + 1}; marks {marks()} of {inputs.expected_marks})")
                    break
                await asyncio.sleep(rng.uniform(0, 2.0))  # a random moment inside the processing
                kill_marks.append(marks())
                worker.kill()
                worker.start()
            counts["marks_at_kills"] = kill_marks
            await producing
            counts["finished"] = "stalled" not in counts and await wait(done, max(STALL_TIMEOUT, n_events / 20), "every expected event applied and every outbox row and referral published")
            await asyncio.sleep(3)  # relay ticks: nothing more should come
        finally:
            if not producing.done():
                producing.cancel()
                with contextlib.suppress(BaseException):
                    await producing
            worker.stop()

    try:
        asyncio.run(scenario())
    finally:
        worker.stop()
    counts["kills"] = worker.kills
    counts["unplanned_exits"] = worker.exits
    counts["worker_starts"] = worker.starts

    # -- what the topics hold ------------------------------------------------------------------------
    wire = asyncio.run(read_all(fresh_kafka_url, lambda t: t == topics.NEWCOMERS or t == topics.DEAD_LETTERS or t.startswith("hub.notices.")
                                or t.startswith("hub.referrals.") or t.startswith("hub.plan-requests.")))
    codec = default_codec()

    def records(pred, name: str | None = None) -> list[dict]:
        return [e.record for t, msgs in wire.items() if pred(t) for m in msgs for e in (codec.decode(m.value),) if name is None or e.name == name]

    ours = inputs.person_keys
    newcomers_wire = [r for r in records(lambda t: t == topics.NEWCOMERS) if r["person_key"] in ours]
    referrals_wire = [r for r in records(lambda t: t.startswith("hub.referrals."), "Referral") if r["person_key"] in ours]
    withdrawals_wire = [r for r in records(lambda t: t.startswith("hub.referrals."), "ReferralWithdrawn") if r["person_key"] in ours]
    plans_wire = [r for r in records(lambda t: t.startswith("hub.plan-requests.")) if r["person_key"] in ours]
    dead_letters = records(lambda t: t == topics.DEAD_LETTERS)
    notices = [r for r in records(lambda t: t.startswith("hub.notices.")) if r["person_key"] in ours]

    with engine.connect() as conn:
        ledger = conn.execute(sa.select(ReferralRow.referral_id, ReferralRow.authority, ReferralRow.sequence, ReferralRow.published_at)).all()
        withdrawn = conn.execute(sa.select(ReferralWithdrawalRow.referral_id, ReferralWithdrawalRow.authority, ReferralWithdrawalRow.sequence,
                                           ReferralWithdrawalRow.published_at)).all()
        updated = conn.execute(sa.select(ReferralUpdateRow.authority, ReferralUpdateRow.sequence, ReferralUpdateRow.published_at)).all()
        disclosures = conn.execute(sa.select(Disclosure.request_id)).scalars().all()
        held = conn.execute(sa.select(HeldItem.assessment_event_id, HeldItem.released_at, HeldItem.request_id)).all()
        unsent = conn.execute(sa.select(sa.func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))).scalar()
    engine.dispose()

    newcomer_ids = Counter(str(r["event_id"]) for r in newcomers_wire)
    referral_ids = Counter(r["referral_id"] for r in referrals_wire)
    referral_event_ids = Counter(str(r["event_id"]) for r in referrals_wire)
    plan_ids = Counter(r["request_id"] for r in plans_wire)
    ledger_ids = Counter(r.referral_id for r in ledger)
    sequences: dict[str, list[int]] = {}
    for r in [*ledger, *withdrawn, *updated]:  # one numbering per recipient: referrals, withdrawals and due-date updates
        sequences.setdefault(r.authority, []).append(r.sequence)
    unreleased = {h.assessment_event_id for h in held if h.released_at is None}
    released = [h for h in held if h.released_at is not None]

    counts.update(
        newcomers_expected=len(inputs.newcomers), newcomers_distinct_on_topic=len(newcomer_ids), newcomer_wire_repeats=sum(newcomer_ids.values()) - len(newcomer_ids),
        referrals_expected=len(inputs.referrals), referrals_in_ledger=len(ledger), referrals_distinct_on_topics=len(referral_ids),
        referral_wire_repeats=sum(referral_ids.values()) - len(referral_ids),
        plan_requests_expected=len(inputs.plan_requests), plan_requests_in_audit=len(disclosures), plan_requests_distinct_on_topics=len(plan_ids),
        plan_request_wire_repeats=sum(plan_ids.values()) - len(plan_ids),
        held_expected=len(inputs.held), held_unreleased=len(unreleased), held_released=len(released), outbox_unsent=unsent,
        notices=len(notices), dead_letters=len(dead_letters), dead_letter_reasons=dict(Counter(d["reason"] for d in dead_letters)),
        dead_letter_details=[f"{n} x {r} {t}: {m}" for (r, t, m), n in Counter((d["reason"], d["original_topic"], d["message"][:160]) for d in dead_letters).most_common(8)],
        duplicates_in_ledger=sum(c - 1 for c in ledger_ids.values()), duplicates_in_audit=len(disclosures) - len(set(disclosures)),
        seconds=round(time.monotonic() - started, 1),
    )
    report = json.dumps(counts, indent=1, sort_keys=True)
    (tmp_path / "crash-safety-counts.json").write_text(report)
    print(f"\ncrash safety ({n_events} events, {n_kills} kills): {tmp_path / 'crash-safety-counts.json'}\n{report}")

    assert counts["finished"], f"the pipeline did not finish after the kills: {report}"
    assert worker.kills == n_kills and worker.exits == [], f"kills or unexpected worker exits: {report}"
    # exactly once by id, nothing lost, nothing extra
    assert set(newcomer_ids) == set(inputs.newcomers), f"newcomers on the topic differ from the expected ones: {report}"
    assert set(ledger_ids) == inputs.referrals and counts["duplicates_in_ledger"] == 0, f"ledger referrals differ: {report}"
    assert set(referral_ids) == inputs.referrals, f"referrals on the recipients' topics differ from the expected ones: {report}"
    assert len(referral_event_ids) == len(referral_ids), "a referral was published under two event ids"
    assert all(r.published_at is not None for r in ledger), "a referral in the ledger is not marked published"
    assert all(r.published_at is not None for r in withdrawn), "a withdrawal in the ledger is not marked published"
    assert {r.referral_id for r in withdrawn} <= {r["referral_id"] for r in withdrawals_wire}, "a withdrawal is missing on its recipient's topic"
    for authority, seqs in sequences.items():  # the per-recipient numbering has no gaps and no repeats
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"sequence numbers of {authority} have gaps or repeats"
    assert set(disclosures) == inputs.plan_requests and counts["duplicates_in_audit"] == 0, f"audited plan requests differ: {report}"
    assert set(plan_ids) == inputs.plan_requests, f"plan requests on the topics differ from the expected ones: {report}"
    assert unsent == 0
    # no held item lost: every assessment without a consent is still held; every release was disclosed
    assert unreleased == inputs.held, f"held items differ: {report}"
    assert {h.request_id for h in released} <= set(disclosures)
    # the only dead letters allowed: newcomers the routing rules cannot decide, exactly as the oracle predicts (none since
    # the DVV validation stops a move dated before the birth, which routing used to reject as a Newcomer)
    assert {d["original_topic"] for d in dead_letters} <= {topics.NEWCOMERS}, f"good input was dead-lettered: {counts['dead_letter_details']}"
    distinct = {(d["original_topic"], d["original_partition"], d["original_offset"]): d["reason"] for d in dead_letters}  # a redelivery may repeat one
    assert Counter(distinct.values()) == inputs.unroutable, f"dead letters differ from the oracle's: {counts['dead_letter_details']}"
