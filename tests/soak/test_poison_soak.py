"""The poison soak: two `hub worker` processes on several partitions, killed with SIGKILL at random
moments, the good path checked by an independent oracle, the bad records of issue 23 mixed in, and
canaries that must get through while the poison is in flight.

The run (one per module, `soak_run`), in phases, each published once the one before has shown its
outputs on the topics (or stopped making progress):
 1. the population (DVV-shaped changes, 3 % delivered twice) and the grants that come first;
 2. initial assessments (with a consent, without, consent later, consent to be revoked);
 3. the late grants (held items released) and the revocations (revocation notices);
 4. second assessments of the revoked persons (held: never a plan request);
 5. the poison (`scenario.POISON_KINDS`, each kind on every partition), a backlog of grants with
    revocations behind it and assessments of the same persons right after them, then the canaries
    (good persons: a change and an assessment) and accepted statuses for earlier referrals;
 6. drain: until everything expected is out, or nothing new has come for a while.
Kills (HUB_SOAK_KILLS, either worker) happen at random moments through the run, never while the
canaries' clock runs. Then the topics are read back whole, the database is looked at, and each
check below is a test of its own, so the report names what failed: loss, duplicates, notices, plan
requests after a revocation, late canaries, and one test per poison kind.

Expectations come from `tests/soak/scenario.py` (by construction, no hub routing, detection or
consent code); records are encoded and decoded with fastavro from the .avsc files
(`tests/soak/wire.py`). The counts are written to `<tmp>/poison-soak.json` and printed.

Size: HUB_SOAK_EVENTS (default 3,000: a few minutes), HUB_SOAK_KILLS (default 3); `make soak`
runs 100,000 / 20. HUB_SOAK_PARTITIONS (4), HUB_SOAK_WORKERS (2), HUB_SOAK_CANARY_SECONDS (60),
HUB_SOAK_STALL_SECONDS (no progress for this long ends a phase: 300), HUB_SOAK_KINDS (`all`,
`none`, or a comma-separated list of poison kinds).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cryptography.fernet import Fernet

from hub.adapters import database
from hub.adapters.kafka.admin import ensure_topics
from hub.schemas import topics
from tests.conftest import throwaway_database
from tests.kafka_helpers import bootstrap
from tests.soak import scenario as S
from tests.soak import wire
from tests.soak.worker import WorkerProcess

pytestmark = [pytest.mark.soak, pytest.mark.integration]

EVENTS = int(os.environ.get("HUB_SOAK_EVENTS", "3000"))
KILLS = int(os.environ.get("HUB_SOAK_KILLS", "3"))
PARTITIONS = int(os.environ.get("HUB_SOAK_PARTITIONS", "4"))
WORKERS = int(os.environ.get("HUB_SOAK_WORKERS", "2"))
CANARY_SECONDS = float(os.environ.get("HUB_SOAK_CANARY_SECONDS", "60"))
STALL_SECONDS = float(os.environ.get("HUB_SOAK_STALL_SECONDS", "300"))
DRAIN_QUIET_SECONDS = float(os.environ.get("HUB_SOAK_DRAIN_QUIET_SECONDS", "45"))
_kinds = os.environ.get("HUB_SOAK_KINDS", "all").strip()
KINDS = set(S.POISON_KINDS) if _kinds == "all" else set() if _kinds in ("", "none") else {k.strip() for k in _kinds.split(",")}
assert KINDS <= set(S.POISON_KINDS), f"HUB_SOAK_KINDS names unknown kinds: {sorted(KINDS - set(S.POISON_KINDS))}"

OUTPUTS = re.compile(r"^hub\.(referrals|plan-requests|notices)\..+|^hub\.(dead-letters|newcomers)\.v1$")
CONSENT_CONSUMER = "consent-registry"  # the consent registry's idempotency marks (processed_events.consumer)
MAX_REQUEST = 8 * 1024 * 1024  # the soak's producer takes the ~1 MB records


# -- reading the outputs while the run goes on ------------------------------------------------------
@dataclass
class Seen:
    """What has come out on the topics so far, indexed the way the oracle states it."""

    records: list = field(default_factory=list)  # (topic, partition, offset, schema name, record, monotonic time)
    referrals: dict = field(default_factory=dict)  # (person key, to, purpose) -> first time
    referral_ids: dict = field(default_factory=dict)  # (person key, to, purpose) -> referral id
    plans: dict = field(default_factory=dict)  # assessment id -> first time
    notices: dict = field(default_factory=dict)  # (type, to, person key, ref) -> first time
    dead_letters: list = field(default_factory=list)
    undecodable: list = field(default_factory=list)
    last_new: float = field(default_factory=time.monotonic)

    def add(self, msg) -> None:
        t = time.monotonic()
        self.last_new = t
        try:
            name, rec = wire.decode(msg.value)
        except Exception as exc:  # noqa: BLE001 - reported, never expected
            self.undecodable.append((msg.topic, msg.partition, msg.offset, type(exc).__name__))
            return
        self.records.append((msg.topic, msg.partition, msg.offset, name, rec, t))
        if name == "Referral":
            k = (rec["person_key"], rec["to"], rec["purpose"])
            self.referrals.setdefault(k, t)
            self.referral_ids.setdefault(k, rec["referral_id"])
        elif name == "PlanRequest":
            self.plans.setdefault(rec["assessment_id"], t)
        elif name == "Notice":
            ref = rec["assessment_id"] if rec["notice_type"] == "consent_required" else rec["consent_id"]
            self.notices.setdefault((rec["notice_type"], rec["to"], rec["person_key"], ref), t)
        elif name == "DeadLetter":
            self.dead_letters.append(rec)


async def tail(url: str, seen: Seen, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                metadata_max_age_ms=1000, max_partition_fetch_bytes=MAX_REQUEST, fetch_max_bytes=4 * MAX_REQUEST)
    await consumer.start()
    try:
        consumer.subscribe(pattern=OUTPUTS.pattern)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    seen.add(m)
    finally:
        await consumer.stop()


async def read_all(url: str) -> list:
    """Every record now on the output topics, read up to their end offsets (after the workers stopped)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=MAX_REQUEST, fetch_max_bytes=4 * MAX_REQUEST)
    await consumer.start()
    try:
        names = sorted(t for t in await consumer.topics() if OUTPUTS.match(t))
        parts = [TopicPartition(t, p) for t in names for p in (consumer.partitions_for_topic(t) or ())]
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out, deadline = [], time.monotonic() + 600
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            assert time.monotonic() < deadline, "timed out reading the output topics back"
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


async def committed_offsets(url: str, app_id: str) -> dict:
    """(topic, partition) -> the offset the worker's consumer groups committed (the faust app's
    `<app id>`, the batch consumers' `<app id>.newcomer-detection` and `<app id>.routing-newcomers`):
    how far each input partition got. Asked with a consumer per group (the embedded broker does not
    answer the admin client's group listing)."""
    out: dict = {}
    inputs = [topics.POPULATION_CHANGES, topics.NEWCOMERS, topics.ASSESSMENTS, topics.CONSENTS, topics.REFERRAL_STATUS]
    for group in (app_id, f"{app_id}.newcomer-detection", f"{app_id}.routing-newcomers"):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            for topic in inputs:
                for part in range(PARTITIONS):
                    offset = await consumer.committed(TopicPartition(topic, part))
                    if offset is not None and offset >= 0:
                        out[(topic, part)] = max(out.get((topic, part), -1), offset)
        finally:
            await consumer.stop()
    return out


async def publish(url: str, items: list) -> list:
    """Send (topic, key, value, headers, partition) items in order, acks=all; their RecordMetadata."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(url), acks="all", linger_ms=5, max_request_size=MAX_REQUEST)
    await producer.start()
    try:
        futures = []
        for i, (topic, key, value, headers, partition) in enumerate(items):
            futures.append(await producer.send(topic, value=value, key=key, headers=headers or None, partition=partition))
            if i % 1000 == 999:
                await asyncio.gather(*futures[-1000:])
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


# -- the run ------------------------------------------------------------------------------------------
@dataclass
class Result:
    scenario: S.Scenario
    counts: dict
    wire: list  # (topic, partition, offset, name, record) of every output record at the end
    referral_rows: list
    disclosures: list
    unsent_outbox: list  # (id, topic, value length)
    status_states: dict  # referral id -> ledger state, for the status canaries
    canary_latency: dict  # what -> seconds (None: never)
    status_canary_ids: list
    stalled: dict  # phase -> why
    workers: list
    cli: dict  # check -> problem (empty: fine)
    committed: dict  # (topic, partition) -> committed offset at the end
    report: str
    withdrawal_rows: list = field(default_factory=list)  # withdrawals and due-date updates of referrals: in the recipients' numbering


@pytest.fixture(scope="module")
def soak_run(pg_admin_url, tmp_path_factory):
    if os.environ.get("HUB_TEST_DATABASE_URL"):
        pytest.skip("the soak needs a database of its own (exact counts); HUB_TEST_DATABASE_URL is shared")
    tmp = tmp_path_factory.mktemp("poison-soak")
    with contextlib.ExitStack() as stack:
        if os.environ.get("HUB_TEST_KAFKA_URL"):
            url = os.environ["HUB_TEST_KAFKA_URL"]
            url = url if "://" in url else f"kafka://{url}"
        else:
            from hub.adapters.kafka.embedded_broker import EmbeddedBroker

            url = stack.enter_context(EmbeddedBroker()).url
        db_url = stack.enter_context(throwaway_database(pg_admin_url, "hub_soak"))
        yield _run(url, db_url, tmp)


def _run(url: str, db_url: str, tmp: Path) -> Result:
    started = time.monotonic()
    seed = 2300 + EVENTS
    rng = random.Random(seed)
    secret = f"soak-{uuid.uuid4().hex}"
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    sc, builder = S.build(EVENTS, seed, secret, now, PARTITIONS, KINDS)
    database.upgrade(db_url)
    ensure_topics(url, list(topics.FIXED_TOPICS), PARTITIONS)
    engine = database.create_engine(db_url)
    env = {"HUB_KAFKA_URL": url, "HUB_DATABASE_URL": db_url, "HUB_APP_ID": f"soak-{uuid.uuid4().hex[:8]}", "HUB_PERSON_KEY_SECRET": secret,
           "HUB_DATA_KEYS": Fernet.generate_key().decode(), "HUB_LOG_LEVEL": "WARNING", "HUB_CONSENT_LEGAL_BASES": "",
           "HUB_TOPIC_PARTITIONS": str(PARTITIONS)}
    workers = []
    for i in range(WORKERS):
        d = tmp / f"worker-{i}"
        d.mkdir()
        workers.append(WorkerProcess({**env, "HUB_DATA_DIR": str(d)}, d, name=f"worker-{i}"))
    seen = Seen()
    stalled: dict[str, str] = {}
    counts: dict = {"events_target": EVENTS, "partitions": PARTITIONS, "workers": WORKERS, "kinds": sorted(KINDS), "kills_planned": KILLS,
                    "population_changes": len([i for i in sc.phases["1"] if i[0] == topics.POPULATION_CHANGES]), "replays": sc.replayed,
                    "referrals_expected": len(sc.referrals), "plan_requests_expected": len(sc.plans), "notices_expected": len(sc.notices),
                    "assessments": sc.assessments_published, "poison_records": len(sc.poison), "canaries": len(sc.canaries)}
    canary: dict = {}
    status_canary_ids: list[str] = []
    window = {"open": False}
    cli: dict = {}

    def db(q: str, **params):
        with engine.connect() as conn:
            return conn.execute(sa.text(q), params).all()

    def consent_marks() -> int:
        return db("SELECT count(*) FROM processed_events WHERE consumer = :c", c=CONSENT_CONSUMER)[0][0]

    good_total = sum(len(o["referrals"]) + len(o["plans"]) + len(o["notices"]) for o in sc.phase_outputs.values())

    def progress() -> float:
        got = 0
        for o in sc.phase_outputs.values():
            got += sum(k in seen.referrals for k in o["referrals"]) + sum(a in seen.plans for a in o["plans"]) + sum(n in seen.notices for n in o["notices"])
        return got / max(1, good_total)

    async def until(condition, phase: str, timeout: float = STALL_SECONDS) -> bool:
        """Wait for `condition`; False (and the phase noted as stalled) after `timeout` s without a new output."""
        mark = (len(seen.records), consent_marks())
        last = time.monotonic()
        while not condition():
            await asyncio.sleep(0.5)
            now_mark = (len(seen.records), consent_marks())
            if now_mark != mark:
                mark, last = now_mark, time.monotonic()
            elif time.monotonic() - last > timeout:
                stalled[phase] = f"no new output for {timeout:.0f} s"
                return False
        return True

    def outputs_of(phase: str):
        o = sc.phase_outputs.get(phase, {"referrals": set(), "plans": set(), "notices": set()})
        return lambda: all(k in seen.referrals for k in o["referrals"]) and all(a in seen.plans for a in o["plans"]) and all(n in seen.notices for n in o["notices"])

    async def keep_alive(stop: asyncio.Event) -> None:
        """A worker that died without our kill is noted (an unplanned exit) and started again."""
        while not stop.is_set():
            for w in workers:
                if not w.alive() and not stop.is_set():
                    w.exits.append(w.returncode())
                    w.start()
            await asyncio.sleep(0.5)

    async def killer(stop: asyncio.Event) -> None:
        thresholds = sorted((i + rng.random()) / (KILLS + 1) for i in range(KILLS))
        for share in thresholds:
            await asyncio.sleep(rng.uniform(0.5, 4.0))
            while (progress() < share or window["open"]) and not stop.is_set():
                await asyncio.sleep(0.25)
            if stop.is_set():
                return
            await asyncio.sleep(rng.uniform(0, 2.0))  # a random moment inside the processing
            while window["open"] and not stop.is_set():
                await asyncio.sleep(0.25)
            if stop.is_set():
                return
            w = rng.choice(workers)
            w.kill()
            w.start()

    async def scenario() -> None:
        stop = asyncio.Event()
        for w in workers:
            w.start()
        background = [asyncio.ensure_future(tail(url, seen, stop)), asyncio.ensure_future(keep_alive(stop)), asyncio.ensure_future(killer(stop))]
        try:
            await publish(url, sc.phases["1"])
            await until(lambda: outputs_of("1")() and consent_marks() >= sc.grants_by_phase["1"], "1: population and first grants")
            await publish(url, sc.phases["2"])
            await until(outputs_of("2"), "2: first assessments")
            marks = consent_marks()
            await publish(url, sc.phases["3"])
            await until(lambda: outputs_of("3")() and consent_marks() >= marks + len(sc.phases["3"]), "3: late grants and revocations")
            await publish(url, sc.phases["4"])
            await until(outputs_of("4"), "4: assessments after a revocation")
            counts["seconds_good_path"] = round(time.monotonic() - started, 1)

            # 5: the race (first: the assessments must not queue behind other poison), the poison, the canaries
            if sc.race_fillers:
                await publish(url, sc.race_fillers + sc.race_revocations)
                await publish(url, sc.race_assessments)
            landed = await publish(url, [p.item for p in sc.poison])
            for p, md in zip(sc.poison, landed):
                p.landed = (md.topic, md.partition, md.offset)
            window["open"] = True
            t0 = time.monotonic()
            await publish(url, sc.canary_items)
            statuses = []
            for i, p in enumerate(sc.status_canary_persons):
                rid = seen.referral_ids.get((p.key, p.plan_authority, "outreach"))
                if rid is not None:
                    status_canary_ids.append(rid)
                    statuses.append(builder.status(rid, p.plan_authority, i % PARTITIONS))
            await publish(url, statuses)

            def canaries_done() -> bool:
                want_ref = [k for k in sc.referrals if k[0] in {c.key for c in sc.canaries}]
                want_plan = [a for a, (k, _, _) in sc.plans.items() if k in {c.key for c in sc.canaries}]
                return all(k in seen.referrals for k in want_ref) and all(a in seen.plans for a in want_plan) and statuses_applied()

            def statuses_applied() -> bool:
                if not status_canary_ids:
                    return True
                states = _states(engine, status_canary_ids)
                return all(states.get(r) == "accepted" for r in status_canary_ids)

            while time.monotonic() - t0 < CANARY_SECONDS and not canaries_done():
                await asyncio.sleep(0.5)
            window["open"] = False
            for c in sc.canaries:
                for k in sorted(k for k in sc.referrals if k[0] == c.key):
                    canary[f"referral {k[1]} {k[2]} of {c.key[:8]} (partition {S.partition_of(c.key, PARTITIONS)})"] = seen.referrals.get(k)
                for a, (k, to, _) in sc.plans.items():
                    if k == c.key:
                        canary[f"plan request {a} to {to} (partition {S.partition_of(c.key, PARTITIONS)})"] = seen.plans.get(a)
            canary_done_at = {k: (None if v is None else round(v - t0, 1)) for k, v in canary.items()}
            canary.clear()
            canary.update(canary_done_at)
            canary["statuses applied"] = round(time.monotonic() - t0, 1) if statuses_applied() else None

            # 6: drain, until everything expected is out or nothing new comes
            def drained() -> bool:
                poisoned = all(_isolated(p, seen.dead_letters) for p in sc.poison if p.kind in S.DEAD_LETTER_KINDS)
                return outputs_of("1")() and all(a in seen.plans for a in sc.plans) and all(n in seen.notices for n in sc.notices) and poisoned \
                    and all(k in seen.referrals for k in sc.referrals) and not _unsent(engine)
            await until(drained, "6: drain", timeout=DRAIN_QUIET_SECONDS)
            if "6: drain" in stalled:
                stalled.pop("6: drain")  # expected when something stays stuck: the checks say what
                counts["drain"] = f"ended after {DRAIN_QUIET_SECONDS:.0f} s without new output"
            await asyncio.sleep(3)  # relay ticks: nothing more should come
        finally:
            stop.set()
            for task in background:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 10)
            for w in workers:
                w.stop()

    try:
        asyncio.run(scenario())
    finally:
        for w in workers:
            w.stop()
    if "cli-deep-nested" in KINDS:
        cli = _cli_checks(tmp, env, now)

    # -- what the topics and the database hold in the end ----------------------------------------------
    try:
        committed = asyncio.run(committed_offsets(url, env["HUB_APP_ID"]))
    except Exception as exc:  # noqa: BLE001 - a diagnosis only
        committed, counts["committed_offsets"] = {}, f"not read: {type(exc).__name__}: {exc}"
    final = []
    for m in asyncio.run(read_all(url)):
        try:
            name, rec = wire.decode(m.value)
        except Exception:  # noqa: BLE001 - counted below
            name, rec = None, None
        final.append((m.topic, m.partition, m.offset, name, rec))
    referral_rows = db("SELECT referral_id, authority, purpose, person_key, sequence, state, published_at FROM referrals")
    withdrawal_rows = db("SELECT referral_id, authority, sequence, published_at FROM referral_withdrawals"
                         " UNION ALL SELECT referral_id, authority, sequence, published_at FROM referral_updates")
    disclosures = [r[0] for r in db("SELECT request_id FROM disclosures")]
    # a row the relay set aside on purpose (too big, or its consent ended: where the outbox has a `parked_at`) is not waiting
    parked = "parked_at" in {c["name"] for c in sa.inspect(engine).get_columns("outbox")}
    unsent = [tuple(r) for r in db("SELECT id, topic, length(value) FROM outbox WHERE sent_at IS NULL"
                                   + (" AND parked_at IS NULL" if parked else "") + " ORDER BY id")]
    big = [tuple(r) for r in db("SELECT id, topic, length(value), sent_at IS NOT NULL FROM outbox WHERE topic = :t ORDER BY id",
                                t=topics.plan_request_topic(f"municipality:{S.POISON_MUNICIPALITY}"))]
    counts["big_plan_request_rows"] = big  # (id, topic, bytes, sent): sent or not, it must not hold up the others
    status_states = _states(engine, status_canary_ids)
    marks = dict(db("SELECT consumer, count(*) FROM processed_events GROUP BY consumer"))
    engine.dispose()
    counts.update(
        kills=sum(w.kills for w in workers), worker_starts=sum(w.starts for w in workers), unplanned_exits=[e for w in workers for e in w.exits],
        marks=marks, output_records=len(final), undecodable_outputs=sum(1 for f in final if f[3] is None),
        dead_letters=sum(1 for f in final if f[3] == "DeadLetter"),
        dead_letter_reasons=dict(Counter(f[4]["reason"] for f in final if f[3] == "DeadLetter")),
        unsent_outbox=len(unsent), stalled=stalled, worker_log_tracebacks=sum(w.logs().count("Traceback") for w in workers), canary_seconds=canary, cli=cli, seconds=round(time.monotonic() - started, 1),
    )
    report = json.dumps(counts, indent=1, sort_keys=True, default=str)
    (tmp / "poison-soak.json").write_text(report)
    print(f"\npoison soak ({EVENTS} events, {KILLS} kills, {PARTITIONS} partitions, {WORKERS} workers): {tmp / 'poison-soak.json'}\n{report}")
    return Result(sc, counts, final, referral_rows, disclosures, unsent, status_states, canary, status_canary_ids, stalled, workers, cli, committed, report,
                  withdrawal_rows=withdrawal_rows)


def _states(engine, ids: list[str]) -> dict:
    if not ids:
        return {}
    with engine.connect() as conn:
        q = sa.text("SELECT referral_id, state FROM referrals WHERE referral_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
        return dict(conn.execute(q, {"ids": list(ids)}).all())


def _unsent(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")).scalar() or 0


def _isolated(p: S.Poison, dead_letters: list) -> bool:
    """A dead letter names the poison record's own place (topic, partition, offset), or, for a poison
    change, the Newcomer detection made of it."""
    if p.landed is None:
        return False
    topic, part, offset = p.landed
    for d in dead_letters:
        if (d["original_topic"], d["original_partition"], d["original_offset"]) == (topic, part, offset):
            return True
        if p.kind == "population-change-70-nationalities" and d["original_topic"] == topics.NEWCOMERS:
            with contextlib.suppress(Exception):
                _, rec = wire.decode(d["original_value"])
                if rec.get("person_key") == p.person_key or rec.get("detected_from") == p.event_id:
                    return True
    return False


def _cli_checks(tmp: Path, env: dict, now: dt.datetime) -> dict:
    """`hub route` and `hub ingest dvv --dry-run` given 1,000 nested brackets between good lines."""
    problems = {}
    nested = "[" * 1000 + "]" * 1000
    good = {"event_id": str(uuid.uuid4()), "occurred_at": now.isoformat(), "person_key": "k" * 32, "municipality_code": "837",
            "birth_date": "1990-01-01", "arrival_date": (now.date() - dt.timedelta(days=20)).isoformat(), "nationalities": ["SY"]}
    cmd_env = {**os.environ, **env, "HUB_LOG_LEVEL": "ERROR"}
    lines = [json.dumps(good), nested, json.dumps({**good, "event_id": str(uuid.uuid4())})]
    try:
        r = subprocess.run([sys.executable, "-m", "hub.cli", "route"], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120, env=cmd_env)
        answers = [ln for ln in r.stdout.splitlines() if ln.strip()]
        if "Traceback" in r.stderr:
            problems["hub route"] = f"a traceback on stderr (exit {r.returncode}): {r.stderr.strip().splitlines()[-1][:200]}"
        elif len(answers) != 3:
            problems["hub route"] = f"{len(answers)} answers to 3 lines (exit {r.returncode})"
    except subprocess.TimeoutExpired:
        problems["hub route"] = "no answer within 120 s"
    from hub.adapters.dvv.synthetic import generate_pages  # a valid DVV page to follow the bad line

    page = json.dumps(json.loads(next(iter(generate_pages(changes=3, seed=5, day=now.date() - dt.timedelta(days=2))))))
    f = tmp / "nested.jsonl"
    f.write_text(nested + "\n" + page + "\n")
    try:
        r = subprocess.run([sys.executable, "-m", "hub.cli", "ingest", "dvv", "--dry-run", str(f)], capture_output=True, text=True, timeout=120, env=cmd_env)
        if "Traceback" in r.stderr:
            problems["hub ingest dvv"] = f"a traceback on stderr (exit {r.returncode}): {r.stderr.strip().splitlines()[-1][:200]}"
        elif not [ln for ln in r.stdout.splitlines() if ln.strip()]:
            problems["hub ingest dvv"] = f"the page after the nested line was not answered (exit {r.returncode}): {r.stderr.strip()[-200:]}"
    except subprocess.TimeoutExpired:
        problems["hub ingest dvv"] = "no answer within 120 s"
    return problems


# -- the checks: each its own test, so the report names what failed ----------------------------------------------
def _fail_unless(ok: bool, message: str) -> None:
    """One line naming what failed (no traceback of the check: the message says it all)."""
    if not ok:
        pytest.fail(message, pytrace=False)


def _of(result: Result, name: str, keys: set | None = None) -> list[dict]:
    return [r for (_, _, _, n, r) in result.wire if n == name and (keys is None or r["person_key"] in keys)]


def _poison_assessments(sc: S.Scenario) -> set:
    return {p.assessment_id for p in sc.poison if p.assessment_id}


def test_every_phase_of_the_good_path_finished(soak_run):
    _fail_unless(not soak_run.stalled, f"the good path stalled: {soak_run.stalled}\n{soak_run.report}")
    _fail_unless(soak_run.counts["kills"] == KILLS, f"{soak_run.counts['kills']} of {KILLS} kills done (the run ended first)")


def test_workers_never_crashed(soak_run):
    exits = soak_run.counts["unplanned_exits"]
    _fail_unless(not exits, f"a worker exited without being killed (exit codes {exits}); see the worker logs under {soak_run.workers[0].log_dir.parent}")


def test_nothing_lost_and_nothing_unexpected(soak_run):
    """Phases 1-4 and the persons of the poison scenarios; the canaries have a test of their own."""
    sc = soak_run.scenario
    canaries = {c.key for c in sc.canaries}
    got_refs = {(r["person_key"], r["to"], r["purpose"]) for r in _of(soak_run, "Referral", sc.checked_keys - canaries)}
    want_refs = {k for k in sc.referrals if k[0] not in canaries}
    missing, extra = want_refs - got_refs, got_refs - want_refs
    _fail_unless(not missing and not extra, f"referrals: {len(missing)} expected ones missing (e.g. {sorted(missing)[:3]}), {len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    plans = {r["assessment_id"]: r for r in _of(soak_run, "PlanRequest") if r["assessment_id"] not in _poison_assessments(sc) | set(sc.forbidden_plans)}
    missing = {a for a, (k, _, _) in sc.plans.items() if k not in canaries} - set(plans)
    wrong = {a: (r["person_key"], r["to"], r["person_id"]) for a, r in plans.items() if a in sc.plans and (r["person_key"], r["to"], r["person_id"]) != sc.plans[a]}
    extra = {a for a, r in plans.items() if a not in sc.plans and r["person_key"] in sc.checked_keys}
    _fail_unless(not missing and not wrong and not extra, (f"plan requests: {len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(wrong)} to the wrong person or "
                                                           f"recipient, {len(extra)} unexpected (e.g. {sorted(extra)[:3]})"))


def test_no_duplicates(soak_run):
    sc = soak_run.scenario
    ledger = Counter((r.person_key, r.authority, r.purpose) for r in soak_run.referral_rows)
    dup = {k: n for k, n in ledger.items() if n > 1}
    _fail_unless(not dup, f"the referral ledger holds {len(dup)} referrals more than once (e.g. {sorted(dup)[:3]})")
    sequences = defaultdict(list)
    for r in [*soak_run.referral_rows, *soak_run.withdrawal_rows]:  # one numbering per recipient: referrals, withdrawals and updates
        sequences[r.authority].append(r.sequence)
    gaps = [a for a, seqs in sequences.items() if sorted(seqs) != list(range(1, len(seqs) + 1))]
    _fail_unless(not gaps, f"per-recipient sequence numbers have gaps or repeats: {gaps}")
    unpublished = [r.referral_id for r in soak_run.referral_rows if r.published_at is None and r.person_key in sc.checked_keys]
    _fail_unless(not unpublished, f"{len(unpublished)} referrals of good persons are not marked published")
    audit = Counter(soak_run.disclosures)
    _fail_unless(all(n == 1 for n in audit.values()), f"the audit holds {sum(n - 1 for n in audit.values())} disclosures twice")
    # on the wire a repeat is allowed only with the same id (at-least-once); two ids for one thing is a duplicate
    for name, key in (("Referral", lambda r: (r["person_key"], r["to"], r["purpose"])), ("PlanRequest", lambda r: r["assessment_id"]),
                      ("Notice", lambda r: (r["notice_type"], r["to"], r["person_key"], r["assessment_id"], r["consent_id"]))):
        ids = defaultdict(set)
        for r in _of(soak_run, name, sc.checked_keys):
            ids[key(r)].add(str(r["event_id"]))
        two = {k: v for k, v in ids.items() if len(v) > 1}
        _fail_unless(not two, f"{len(two)} {name} records went out under two event ids (e.g. {sorted(two)[:2]})")
    sent = {r["request_id"] for r in _of(soak_run, "PlanRequest")}
    _fail_unless(sent <= set(audit), f"{len(sent - set(audit))} plan requests went out without an audit row")


def test_notices(soak_run):
    sc = soak_run.scenario
    keys = sc.checked_keys - sc.unchecked_notice_keys
    got = set()
    for r in _of(soak_run, "Notice", keys):
        got.add((r["notice_type"], r["to"], r["person_key"], r["assessment_id"] if r["notice_type"] == "consent_required" else r["consent_id"]))
    want = {n for n in sc.notices if n[2] in keys}
    missing, extra = want - got, got - want
    _fail_unless(not missing and not extra, (f"notices: {len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} unexpected (e.g. {sorted(extra)[:3]})"
                                             f"; by type missing {dict(Counter(m[0] for m in missing))}, unexpected {dict(Counter(e[0] for e in extra))}"))


def test_no_plan_request_after_a_revocation_on_the_good_path(soak_run):
    sc = soak_run.scenario
    good = {a for a, why in sc.forbidden_plans.items() if "good path" in why}
    leaked = {r["assessment_id"] for r in _of(soak_run, "PlanRequest") if r["assessment_id"] in good}
    _fail_unless(not leaked, f"{len(leaked)} plan requests went out for assessments made after the consent's revocation was applied")


def test_canaries_arrive_within_the_bound_while_poison_is_in_flight(soak_run):
    late = {k: v for k, v in soak_run.canary_latency.items() if v is None or v > CANARY_SECONDS}
    poisoned = sorted({p.kind for p in soak_run.scenario.poison})
    _fail_unless(not late, (f"{len(late)} of {len(soak_run.canary_latency)} canary outputs late (> {CANARY_SECONDS:.0f} s) or never (None): "
                            f"{dict(sorted(late.items())[:8])}; poison in flight: {poisoned}"))


def test_good_records_are_never_dead_lettered(soak_run):
    sc = soak_run.scenario
    places = {p.landed for p in sc.poison}
    poison_keys = {p.person_key for p in sc.poison if p.person_key}
    good = []
    for (_, _, _, n, d) in soak_run.wire:
        if n != "DeadLetter" or (d["original_topic"], d["original_partition"], d["original_offset"]) in places:
            continue
        with contextlib.suppress(Exception):
            _, rec = wire.decode(d["original_value"])
            if rec.get("person_key") in poison_keys or rec.get("detected_from") in {p.event_id for p in sc.poison}:
                continue
        good.append(f"{d['reason']} {d['original_topic']}[{d['original_partition']}]@{d['original_offset']}: {d['message'][:120]}")
    _fail_unless(not good, f"{len(good)} good records were dead-lettered: {Counter(good).most_common(5)}")


def _diagnose(result: Result, poison: S.Poison, dead: list) -> str:
    """Where a record without a dead letter is: its partition stopped before it (committed offset at or
    before it: a stall, and which other poison without a dead letter sits earlier on it), or consumed
    past it (dropped, or for a change: where its Newcomer is)."""
    topic, part, offset = poison.landed
    committed = result.committed.get((topic, part))
    where = f"{topic}[{part}]@{offset}"
    if committed is not None and committed > offset:
        made = [(t, pt, o) for (t, pt, o, n, r) in result.wire if n == "Newcomer" and r.get("person_key") == poison.person_key]
        if made:
            t, pt, o = made[0]
            c = result.committed.get((t, pt))
            return f"{where} consumed; its Newcomer {t}[{pt}]@{o} " + ("consumed past without a dead letter" if c is not None and c > o
                                                                      else f"never got past: that partition is stuck at committed offset {c}")
        return f"{where} consumed past (committed {committed}) without a dead letter: dropped"
    earlier = sorted({f"{p.kind}@{p.landed[2]}" for p in result.scenario.poison if p.landed and p.landed[:2] == (topic, part)
                      and p.landed[2] < offset and p.kind in S.DEAD_LETTER_KINDS and not _isolated(p, dead)})
    return (f"{where} never got past: the partition is stuck at committed offset {committed}"
            + (f" (earlier on it, also without a dead letter: {', '.join(earlier[:3])})" if earlier else ""))


@pytest.mark.parametrize("kind", sorted(S.POISON_KINDS))
def test_poison_kind_is_isolated(soak_run, kind):
    if kind not in KINDS:
        pytest.skip(f"{kind} not in HUB_SOAK_KINDS")
    sc = soak_run.scenario
    expectation = S.POISON_KINDS[kind]
    dead = [d for (_, _, _, n, d) in soak_run.wire if n == "DeadLetter"]
    problems = []
    records = [p for p in sc.poison if p.kind == kind]
    if kind in S.DEAD_LETTER_KINDS:
        missing = [p for p in records if not _isolated(p, dead)]
        if missing:
            problems.append(f"{len(missing)} of {len(records)} records have no dead letter: " + "; ".join(_diagnose(soak_run, p, dead) for p in missing[:4]))
    plans = {r["assessment_id"] for r in _of(soak_run, "PlanRequest")}
    leaked = {a for a, why in sc.forbidden_plans.items() if kind in why and a in plans}
    leaked |= {p.assessment_id for p in records if p.assessment_id and p.assessment_id in plans and kind != "assessment-valid-1mb"}
    leaked = sorted(leaked)
    if leaked:
        problems.append(f"{len(leaked)} plan requests went out that never may: {leaked[:4]}")
    if kind == "status-nul-id":
        unapplied = [r for r in soak_run.status_canary_ids if soak_run.status_states.get(r) != "accepted"]
        if unapplied:
            problems.append(f"{len(unapplied)} of {len(soak_run.status_canary_ids)} good statuses published after it were not applied")
    if kind == "assessment-valid-1mb":
        big_topic = topics.plan_request_topic(f"municipality:{S.POISON_MUNICIPALITY}")
        blocked = [u for u in soak_run.unsent_outbox if u[1] != big_topic]
        if blocked:
            problems.append(f"the outbox relay is blocked: {len(blocked)} rows for other recipients waiting at the end "
                            f"({dict(Counter(u[1] for u in blocked).most_common(4))}; the ~1 MB row: {soak_run.counts.get('big_plan_request_rows')})")
    if kind == "cli-deep-nested":
        problems += [f"{cmd}: {why}" for cmd, why in soak_run.cli.items()]
    _fail_unless(not problems, f"poison kind {kind} not isolated ({expectation}): " + "; ".join(problems))
