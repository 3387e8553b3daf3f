"""Bad input against a real `hub worker` process: malformed records thrown at every input topic, with
good records between them.

Each malformed record has a key of its own (a marker), so its dead letter is found by
`original_key`; the dead letter must carry the record's bytes unchanged and a precise reason (the
set of reasons the kind of damage allows, never `internal_error` or `processing_error`). The good
records around them must still have their effects, and the worker must neither crash nor stall.

Hypothesis draws the records the damage is done to (any record of the topic's schema:
tests/avro_strategies.py) and the garbage; the damage itself (where to truncate, which schema id)
comes from a seeded random generator, so a run is reproducible.

`make test` throws a few hundred records per topic; `make soak` 10 000 per topic.
The command-line inputs (`hub ingest dvv`, `hub route`) are in tests/e2e/test_fuzz_cli_inputs.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import struct
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hypothesis import strategies as st

from hub.adapters import database
from hub.adapters.dvv.ingest import process_page
from hub.adapters.dvv.page import parse_page
from hub.adapters.dvv.synthetic import generate_pages
from hub.adapters.kafka.admin import ensure_topics
from hub.adapters.referral_ledger import ReferralRow
from hub.consent import records as consent_records
from hub.adapters.consent_store import Disclosure
from hub.newcomers.detection import DEFAULT_WINDOW_DAYS, Change, detect, newcomer_record
from hub.schemas.codec import default_codec
from hub.simulation import ALL_CATEGORIES
from hub.schemas import topics
from hub.schemas.envelope import cloudevent_headers, envelope
from tests.avro_strategies import draw_many, for_schema
from tests.kafka_helpers import bootstrap, publish_all
from tests.soak.worker import WorkerProcess

pytestmark = pytest.mark.integration

SCHEMA_OF = {
    topics.POPULATION_CHANGES: "PopulationChange",
    topics.NEWCOMERS: "Newcomer",
    topics.ASSESSMENTS: "AssessmentCompleted",
    topics.CONSENTS: "Consent",
    topics.REFERRAL_STATUS: "ReferralStatus",
}
INPUT_TOPICS = list(SCHEMA_OF)
CODEC_REASONS = {"undecodable", "wrong_magic", "unknown_schema_id", "unexpected_schema"}
NOT_PRECISE = {"internal_error", "processing_error"}
GOOD_EVERY = 25  # a good record after every 25 malformed ones, on each topic
SECRET = "fuzz-test-secret"

CODEC_KINDS = ("truncated", "unknown_schema_id", "other_schema", "wrong_magic", "garbage", "wrong_encoding")
SEMANTIC_KINDS = ("invalid_person_id", "unknown_municipality", "future_date", "huge_string", "over_bounds")
# what each kind of damage must be reported as, per topic (None: the kind does not apply to the schema)
SEMANTIC_REASONS = {
    (topics.POPULATION_CHANGES, "invalid_person_id"): {"invalid_person_id"},
    (topics.POPULATION_CHANGES, "unknown_municipality"): {"unknown_municipality"},
    (topics.POPULATION_CHANGES, "future_date"): {"future_date"},
    (topics.POPULATION_CHANGES, "huge_string"): {"invalid_person_id", "out_of_bounds"},
    (topics.POPULATION_CHANGES, "over_bounds"): {"out_of_bounds"},
    (topics.NEWCOMERS, "invalid_person_id"): {"invalid_person_id"},
    (topics.NEWCOMERS, "unknown_municipality"): {"unknown_municipality"},
    (topics.NEWCOMERS, "future_date"): {"future_date", "invalid_date"},
    (topics.NEWCOMERS, "huge_string"): {"unknown_municipality", "invalid_field", "out_of_bounds"},
    (topics.NEWCOMERS, "over_bounds"): {"out_of_bounds"},
    (topics.ASSESSMENTS, "invalid_person_id"): {"invalid_person_id"},
    (topics.ASSESSMENTS, "unknown_municipality"): {"unknown_authority", "unknown_municipality", "invalid_authority"},
    (topics.ASSESSMENTS, "future_date"): {"future_date"},
    (topics.ASSESSMENTS, "huge_string"): {"invalid_person_id", "out_of_bounds"},
    (topics.ASSESSMENTS, "over_bounds"): {"out_of_bounds"},
    (topics.CONSENTS, "invalid_person_id"): {"invalid_person_id"},
    (topics.CONSENTS, "unknown_municipality"): {"unknown_authority", "unknown_municipality", "invalid_authority"},
    (topics.CONSENTS, "future_date"): {"future_date"},
    (topics.CONSENTS, "huge_string"): {"invalid_person_id", "out_of_bounds"},
    (topics.CONSENTS, "over_bounds"): {"out_of_bounds"},
    (topics.REFERRAL_STATUS, "unknown_municipality"): {"forbidden", "unknown_referral", "unknown_authority", "unknown_municipality"},
    (topics.REFERRAL_STATUS, "future_date"): {"future_date"},
    (topics.REFERRAL_STATUS, "huge_string"): {"unknown_referral", "invalid_field", "out_of_bounds"},
    (topics.REFERRAL_STATUS, "over_bounds"): {"out_of_bounds"},
}
# what the fuzzing finds: damage the hub does not dead-letter (or not with the original bytes)
KNOWN_GAPS: dict = {}  # all nine gaps the fuzzing found are closed; a new one goes here as a strict xfail, with its reason
SIZES = [pytest.param(200, id="short-200-per-topic"), pytest.param(10_000, id="soak-10k-per-topic", marks=pytest.mark.soak)]




# -- good records ---------------------------------------------------------------------------------
class Good:
    """Valid records of fresh persons, from realistic DVV data, and what each must cause."""

    def __init__(self, n: int, now: dt.datetime):
        self.codec = default_codec()
        arrivals = []
        changes = 4 * n + 50
        while len(arrivals) < n:
            arrivals = []
            seen = set()
            for text in generate_pages(changes=changes, seed=4242, day=(now - dt.timedelta(days=2)).date()):
                for rec, key in process_page(parse_page(text), secret=SECRET, now=now).events:
                    if rec["change_type"] == "immigration" and key not in seen:
                        state, found = detect(None, Change.from_record(rec), DEFAULT_WINDOW_DAYS)
                        if found and found[0].change == "arrived" and found[0].state.municipality_code:
                            seen.add(key)
                            arrivals.append((rec, key, newcomer_record(found[0], key, now)))
            changes *= 2
        self.arrivals = arrivals
        self.now = now

    def population_change(self, i: int) -> tuple[bytes, bytes, list]:
        rec, key, _ = self.arrivals[i]
        return key.encode(), self.codec.encode("PopulationChange", rec), cloudevent_headers("PopulationChange", rec)

    def newcomer(self, i: int) -> tuple[bytes, bytes, list, dict]:
        _, key, rec = self.arrivals[i]
        return key.encode(), self.codec.encode("Newcomer", rec), cloudevent_headers("Newcomer", rec), rec

    def assessment_and_consent(self, i: int) -> tuple[tuple, tuple, str]:
        rec, key, newcomer = self.arrivals[i]
        authority = f"municipality:{newcomer['municipality_code']}"
        a = envelope(authority, self.now)
        a.update(assessment_id=f"F-{i}", person_key=key, person_id=rec["person_id"], assessor=authority, plan_authority=authority, referral_id=None,
                 education="secondary", work_history=None, language_skills=[], literacy=None, recommended_path=None, service_needs=[])
        c = envelope(authority, self.now)
        c.update(consent_id=f"FC-{i}", person_id=rec["person_id"], action="granted", purpose="integration_plan", data_categories=ALL_CATEGORIES,
                 recipients=[authority], valid_from=None, valid_until=None, evidence="signed form", recorded_by=authority)
        request = consent_records.derived_id("plan-request", str(a["event_id"]), authority)
        return ((key.encode(), self.codec.encode("AssessmentCompleted", a), cloudevent_headers("AssessmentCompleted", a)),
                (key.encode(), self.codec.encode("Consent", c), cloudevent_headers("Consent", c)), request)

    def status(self, referral_id: str, authority: str) -> tuple[bytes, bytes, list]:
        s = envelope(authority, self.now)
        s.update(referral_id=referral_id, authority=authority, status="accepted", reason=None)
        return authority.encode(), self.codec.encode("ReferralStatus", s), cloudevent_headers("ReferralStatus", s)


# -- malformed records ----------------------------------------------------------------------------
@dataclass
class Bad:
    topic: str
    kind: str
    key: bytes
    value: bytes
    allowed: set[str]


def _with_header(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


def _semantic(topic: str, kind: str, base: dict, now: dt.datetime) -> dict:
    rec = dict(base, event_id=str(uuid.uuid4()))
    future = now + dt.timedelta(days=365 * 30)
    if kind == "invalid_person_id":
        pid = rec["person_id"]
        rec["person_id"] = pid[:-1] + ("X" if pid[-1] != "X" else "Y")
    elif kind == "huge_string":
        if topic == topics.NEWCOMERS:
            rec["municipality_code"] = "9" * 200_000
        elif topic == topics.REFERRAL_STATUS:
            rec["referral_id"] = "r" * 200_000
        else:
            rec["person_id"] = "1" * 200_000
    elif kind == "over_bounds":  # hub/schemas/bounds.py: a list over its count, a NUL in an identifier
        if topic in (topics.POPULATION_CHANGES, topics.NEWCOMERS):
            rec["nationalities"] = ["FI", "SE", "EE", "NO", "DK"] * 14  # 70: more than newcomers.nationalities VARCHAR(200) holds
        else:
            field = {topics.ASSESSMENTS: "assessment_id", topics.CONSENTS: "consent_id", topics.REFERRAL_STATUS: "referral_id"}[topic]
            rec[field] = f"{rec[field]}\x00"
    elif kind == "unknown_municipality":
        if topic in (topics.POPULATION_CHANGES, topics.NEWCOMERS):
            rec["municipality_code"] = "999"
        elif topic == topics.ASSESSMENTS:
            rec.update(assessor="municipality:999", plan_authority="municipality:999")
        elif topic == topics.CONSENTS:
            rec.update(recipients=["municipality:999"], recorded_by="municipality:999")
        else:
            rec["authority"] = "municipality:999"
    elif kind == "future_date":
        rec["occurred_at"] = future
    return rec


def malformed(topic: str, n: int, good: Good, now: dt.datetime, seed: int) -> list[Bad]:
    codec = default_codec()
    name = SCHEMA_OF[topic]
    ids = {codec.schema_id(s) for s in SCHEMA_OF.values()} | {codec.schema_id("DeadLetter")}
    rng = random.Random(f"{seed}:{topic}")
    # hypothesis: any record of the schema (the damage is done to its encoding) and any bytes
    drawn = [r for r in draw_many(for_schema(codec.parsed_schema(name)), max(10, n // 10), seed) if r is not None]
    encoded = []
    for r in drawn:
        try:
            encoded.append(codec.encode(name, r))
        except Exception:  # noqa: BLE001 - a drawn value the schema refuses (e.g. a bad uuid text) is skipped
            pass
    garbage = [g for g in draw_many(st.binary(min_size=0, max_size=200), max(10, n // 10), seed + 1) if g is not None]
    # the semantic damage is done to a valid record of a person
    pop_rec = good.arrivals[0][0]
    base = {
        topics.POPULATION_CHANGES: pop_rec,
        topics.NEWCOMERS: good.arrivals[0][2],
        topics.ASSESSMENTS: codec.decode(good.assessment_and_consent(0)[0][1]).record,
        topics.CONSENTS: codec.decode(good.assessment_and_consent(0)[1][1]).record,
        topics.REFERRAL_STATUS: codec.decode(good.status(str(uuid.uuid4()), "municipality:091")[1]).record,
    }[topic]
    kinds = list(CODEC_KINDS) + [k for k in SEMANTIC_KINDS if (topic, k) in SEMANTIC_REASONS]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        value = rng.choice(encoded) if encoded else codec.encode(name, base)
        allowed = {"undecodable"}
        if kind == "truncated":
            value = value[: rng.randrange(len(value))]
        elif kind == "unknown_schema_id":
            known = {v.schema_id for n in codec.names for v in codec.versions(n)}  # every version's id, not only the input schemas'
            value = _with_header(rng.choice([x for x in (0, 999, 2**31 - 1, rng.randrange(100, 2**31)) if x not in known]), value[5:])
            allowed = {"unknown_schema_id"}
        elif kind == "other_schema":
            value = _with_header(rng.choice(sorted(ids - {codec.schema_id(name)})), value[5:])
            allowed = {"unexpected_schema"}
        elif kind == "wrong_magic":
            value = bytes([rng.randrange(1, 256)]) + value[1:]
            allowed = {"wrong_magic"}
        elif kind == "garbage":
            value = rng.choice(garbage)
            if value[:1] == b"\x00":  # garbage that happens to start like the wire format is just as bad
                value = b"\x07" + value[1:]
            allowed = CODEC_REASONS
        elif kind == "wrong_encoding":  # a text field in Latin-1 instead of UTF-8 (same length, so the Avro framing holds)
            marker = "ÄÖÅäöå" * 2
            rec = dict(base, event_id=str(uuid.uuid4()), source=marker)
            good_bytes = codec.encode(name, rec)
            value = good_bytes.replace(marker.encode("utf-8"), (marker * 2).encode("latin-1"), 1)
            assert value != good_bytes and len(value) == len(good_bytes)
        else:
            value = codec.encode(name, _semantic(topic, kind, base, now))
            allowed = SEMANTIC_REASONS[(topic, kind)]
        out.append(Bad(topic, kind, f"fuzz-{uuid.uuid4().hex}".encode(), value, allowed))
    return out


# -- the run --------------------------------------------------------------------------------------
async def _read(url: str, topic: str) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                                fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out = []
        while True:
            behind = False
            for tp in parts:
                if await consumer.position(tp) < ends[tp]:
                    behind = True
            if not behind:
                return out
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                out.extend(msgs)
    finally:
        await consumer.stop()


@dataclass
class FuzzRun:
    bad: list[Bad]
    letters: dict[bytes, list[dict]]  # marker key -> dead letters
    good_missing: dict[str, int]
    worker_alive: bool
    worker_starts: int
    worker_log: str
    counts: dict

    def __repr__(self) -> str:  # pytest shows test arguments in failure reports: never the 50 000 records
        return f"FuzzRun({len(self.bad)} malformed records, good_missing={self.good_missing}, worker_alive={self.worker_alive})"


@pytest.fixture(scope="module", params=SIZES)
def fuzz_run(request, kafka_url, database_url, tmp_path_factory) -> FuzzRun:
    per_topic = request.param
    started = time.monotonic()
    tmp = tmp_path_factory.mktemp("fuzz")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    n_good = per_topic // GOOD_EVERY + 2
    good = Good(3 * n_good + 2, now)
    seed = 8_681 + per_topic
    bad = {t: malformed(t, per_topic, good, now, seed) for t in INPUT_TOPICS}
    database.upgrade(database_url)
    ensure_topics(kafka_url, list(topics.FIXED_TOPICS), 1)
    engine = database.create_engine(database_url)

    # the good records: persons 0..n_good-1 through the population changes, n_good.. as newcomers, 2*n_good.. assessed
    plan = []
    expect_newcomers, expect_referral_events, expect_requests = set(), set(), set()
    for t in INPUT_TOPICS:
        for i, b in enumerate(bad[t]):
            plan.append((t, b.key, b.value, []))
            if i % GOOD_EVERY == GOOD_EVERY - 1:
                j = i // GOOD_EVERY
                if t == topics.POPULATION_CHANGES:
                    plan.append((t, *good.population_change(j)))
                    expect_newcomers.add(good.arrivals[j][1])
                elif t == topics.NEWCOMERS:
                    k, v, h, rec = good.newcomer(n_good + j)
                    plan.append((t, k, v, h))
                    expect_referral_events.add(str(rec["event_id"]))
                elif t == topics.ASSESSMENTS:
                    a, c, rid = good.assessment_and_consent(2 * n_good + j)
                    plan.append((topics.CONSENTS, *c))
                    plan.append((topics.ASSESSMENTS, *a))
                    expect_requests.add(rid)
    rng = random.Random(seed)
    rng.shuffle(plan)  # the topics interleaved; within a topic the order does not matter to what is checked

    def referral_events_done() -> set:
        return _present(engine, ReferralRow.newcomer_event_id, expect_referral_events)

    def requests_done() -> set:
        return _present(engine, Disclosure.request_id, expect_requests)

    worker = WorkerProcess({"HUB_KAFKA_URL": kafka_url, "HUB_DATABASE_URL": database_url, "HUB_APP_ID": f"fuzz-{uuid.uuid4().hex[:8]}",
                            "HUB_PERSON_KEY_SECRET": SECRET, "HUB_DATA_DIR": str(tmp), "HUB_LOG_LEVEL": "WARNING", "HUB_CONSENT_LEGAL_BASES": ""}, tmp)
    markers = {b.key for t in INPUT_TOPICS for b in bad[t]}

    async def scenario():
        await publish_all(kafka_url, plan, batch=500, max_request_size=4 * 1024 * 1024)
        deadline = time.monotonic() + max(240.0, per_topic * len(INPUT_TOPICS) / 20)
        letters: dict[bytes, list[dict]] = defaultdict(list)
        while time.monotonic() < deadline and worker.alive():
            done = len(referral_events_done()) == len(expect_referral_events) and len(requests_done()) == len(expect_requests)
            if done:
                break
            await asyncio.sleep(1)
        # a referral status for one of the good referrals, from its recipient: the status agent still works
        with engine.connect() as conn:
            row = conn.execute(sa.select(ReferralRow.referral_id, ReferralRow.authority).where(ReferralRow.newcomer_event_id.in_(expect_referral_events)).limit(1)).first()
        status_ok = None
        if row is not None:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap(kafka_url))
            await producer.start()
            try:
                k, v, h = good.status(row.referral_id, row.authority)
                await producer.send_and_wait(topics.REFERRAL_STATUS, value=v, key=k, headers=h)
            finally:
                await producer.stop()
            while time.monotonic() < deadline and worker.alive():
                with engine.connect() as conn:
                    status_ok = conn.execute(sa.select(ReferralRow.state).where(ReferralRow.referral_id == row.referral_id)).scalar() == "accepted"
                if status_ok:
                    break
                await asyncio.sleep(1)
        # every malformed record's dead letter (the codec-level ones at least; the others get a little longer)
        codec = default_codec()
        while True:
            letters.clear()
            for m in await _read(kafka_url, topics.DEAD_LETTERS):
                if m.key in markers:
                    letters[m.key].append(codec.decode(m.value).record)
            codec_level = [b for t in INPUT_TOPICS for b in bad[t] if b.kind in CODEC_KINDS]
            if all(b.key in letters for b in codec_level) or time.monotonic() > deadline or not worker.alive():
                break
            await asyncio.sleep(2)
        await asyncio.sleep(3)
        letters.clear()
        for m in await _read(kafka_url, topics.DEAD_LETTERS):
            if m.key in markers:
                letters[m.key].append(codec.decode(m.value).record)
        newcomer_keys = {m.key.decode() for m in await _read(kafka_url, topics.NEWCOMERS) if m.key}
        return letters, status_ok, newcomer_keys

    worker.start()
    try:
        letters, status_ok, newcomer_keys = asyncio.run(scenario())
        alive = worker.alive()
    finally:
        worker.stop()
    all_bad = [b for t in INPUT_TOPICS for b in bad[t]]
    good_missing = {
        "newcomers": len(expect_newcomers - newcomer_keys),
        "referrals": len(expect_referral_events) - len(referral_events_done()),
        "plan_requests": len(expect_requests) - len(requests_done()),
        "status_applied": 0 if status_ok else 1,
    }
    engine.dispose()
    outcome = Counter()
    for b in all_bad:
        got = letters.get(b.key, [])
        outcome[(b.topic, b.kind, "dead-lettered" if got else "not dead-lettered", got[0]["reason"] if got else "-")] += 1
    counts = {"per_topic": per_topic, "malformed": len(all_bad), "good": len(expect_newcomers) + len(expect_referral_events) + len(expect_requests) + 1,
              "seconds": round(time.monotonic() - started, 1), "good_missing": good_missing, "worker_alive_at_end": alive,
              "outcomes": sorted(f"{n:6d}  {t} {k}: {d} ({r})" for (t, k, d, r), n in outcome.items())}
    report = json.dumps(counts, indent=1)
    (tmp / "fuzz-counts.json").write_text(report)
    print(f"\nfuzz run: {tmp / 'fuzz-counts.json'}\n{report}")
    return FuzzRun(all_bad, dict(letters), good_missing, alive, worker.starts, worker.logs(), counts)


def _present(engine, column, ids: set) -> set:
    """Which of `ids` the column holds (the referral ledger's newcomer event ids, the audited request ids)."""
    with engine.connect() as conn:
        return set(conn.execute(sa.select(column).where(column.in_(ids))).scalars())


def _check(run: FuzzRun, topic: str, kinds) -> None:
    problems = Counter()
    for b in run.bad:
        if b.topic != topic or b.kind not in kinds:
            continue
        got = run.letters.get(b.key, [])
        if not got:
            problems[f"{b.kind}: not dead-lettered"] += 1
            continue
        if len(got) != 1:
            problems[f"{b.kind}: {len(got)} dead letters"] += 1
        d = got[0]
        if d["original_value"] != b.value:
            problems[f"{b.kind}: original bytes changed"] += 1
        if d["original_topic"] != topic:
            problems[f"{b.kind}: original_topic {d['original_topic']}"] += 1
        if d["reason"] not in b.allowed or d["reason"] in NOT_PRECISE:
            problems[f"{b.kind}: reason {d['reason']} (expected one of {sorted(b.allowed)})"] += 1
        if not d["message"]:
            problems[f"{b.kind}: empty message"] += 1
    assert not problems, f"{topic}: {dict(problems)}"


def test_the_worker_neither_crashes_nor_stalls_and_good_records_flow_on(fuzz_run):
    assert fuzz_run.worker_alive and fuzz_run.worker_starts == 1, "the worker died during the fuzz run"
    assert "Traceback" not in fuzz_run.worker_log and "crashed" not in fuzz_run.worker_log.lower(), "the worker log shows a crash (an agent stopped)"
    assert fuzz_run.good_missing == {"newcomers": 0, "referrals": 0, "plan_requests": 0, "status_applied": 0}, f"good records did not flow on: {fuzz_run.good_missing}"


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_every_undecodable_record_is_dead_lettered_with_its_bytes_and_the_codec_reason(fuzz_run, topic):
    _check(fuzz_run, topic, CODEC_KINDS)


@pytest.mark.parametrize("topic,kind", [
    pytest.param(t, k, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[(t, k)])] if (t, k) in KNOWN_GAPS else [], id=f"{t}-{k}")
    for (t, k) in SEMANTIC_REASONS
])
def test_every_invalid_record_is_dead_lettered_with_its_bytes_and_a_precise_reason(fuzz_run, topic, kind):
    _check(fuzz_run, topic, {kind})


def test_a_newcomer_dated_at_the_end_of_the_calendar_is_an_input_error():
    from hub.routing.model import InputError, RoutingInput

    with pytest.raises(InputError):
        RoutingInput.from_record({"event_id": "e-1", "occurred_at": "9999-12-31T23:00:00Z", "municipality_code": "091", "person_key": "k"})
