"""Throughput and latency of the hub's pipeline against a bare aiokafka pipe, on the same broker.

One run: start the embedded broker, pre-load N PopulationChange records (Avro, wire format), then
(a) a bare aiokafka loop (consume -> decode -> route by dict lookup -> encode -> produce),
(b) the hub's real pipeline (ingest topic -> newcomer detection -> routing -> referral topics,
    metrics and idempotency on), then end-to-end latency at a steady offered load; the same load
    also goes first through two bare aiokafka stages (two hops like the hub's, each acknowledging
    and committing its batches): the latency floor of this broker and machine.
The hub runs with its defaults; HUB_KAFKA_* settings, HUB_GC_THRESHOLD and HUB_SWITCH_INTERVAL_MS of the
environment apply to it (e.g. HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS=10, or HUB_GC_THRESHOLD=0 for Python's own collector). Its
topics are provisioned first, as `hub topics --create` does before a deployment's workers start
(`--lazy-topics`: not). The hub's events/s count from the moment detection took its first batch.
`--database postgresql` runs the hub on a scratch PostgreSQL database (dropped after) instead of
SQLite; `--events 10000,100000` runs each size in turn (a broker, a database and a bare pipe of its
own each, so the bare pipe reads a log of the same size) and prints the growth side by side. Each run
also times one refresh of the referral gauges against a recount of the whole ledger.
Run with `make bench` or `.venv/bin/python bench/pipeline.py --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import RssSampler, peak_rss_mb, population_changes, rss_mb, thread_cpu_s, write_json  # noqa: E402

from hub.adapters.kafka.embedded_broker import EmbeddedBroker  # noqa: E402
from hub.adapters.kafka.security import bootstrap_servers  # noqa: E402
from hub.adapters.dvv.synthetic import MUNICIPALITIES  # noqa: E402
from hub.adapters.kafka.admin import ensure_topics  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.schemas.codec import CodecError, default_codec  # noqa: E402
from hub.schemas import topics  # noqa: E402

BASELINE_IN = "bench.baseline.in.v1"
BASELINE_DEAD = "bench.baseline.dead-letters.v1"
BASELINE_OTHER = "bench.baseline.out.other.v1"
BASELINE_LATENCY_IN, BASELINE_LATENCY_MID, BASELINE_LATENCY_OUT = "bench.baseline.latency-in.v1", "bench.baseline.latency-mid.v1", "bench.baseline.latency-out.v1"
GARBAGE = b"\x07 not a wire-format record"


def referral_topics(names) -> list[str]:
    return sorted(t for t in names if t.startswith("hub.referrals."))


def baseline_topic(code: str) -> str:
    return f"bench.baseline.out.{code}.v1"


def with_garbage(records: list, every: int) -> list:
    """Every `every`-th record replaced by undecodable bytes, so the dead-letter path runs too."""
    if every <= 0:
        return records
    return [(k, GARBAGE, []) if i % every == every - 1 else (k, v, h) for i, (k, v, h) in enumerate(records)]


async def preload(servers: list[str], topic: str, records: list) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k, headers=h) for k, v, h in records]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def bare_pipe(servers: list[str], n: int, partitions: int) -> tuple[float, float]:
    """(a) consume -> decode -> route by dict lookup -> encode -> produce; events/s from the first
    record, and the CPU seconds this process spent from then (every thread)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    codec = default_codec()
    route = {code: baseline_topic(code) for code, _ in MUNICIPALITIES}
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, auto_offset_reset="earliest", group_id=None)
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(BASELINE_IN, p) for p in range(partitions)])
        done, first, cpu_first, futures = 0, None, 0.0, []
        while done < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            if first is None and batches:
                first, cpu_first = time.monotonic(), time.process_time()
            for msgs in batches.values():
                for m in msgs:
                    try:
                        record = codec.decode(m.value, "PopulationChange").record
                    except CodecError:
                        futures.append(await producer.send(BASELINE_DEAD, value=m.value, key=m.key))
                        continue
                    topic = route.get(record.get("municipality_code"), BASELINE_OTHER)
                    futures.append(await producer.send(topic, value=codec.encode("PopulationChange", record), key=m.key, headers=list(m.headers)))
                done += len(msgs)
        await producer.flush()
        await asyncio.gather(*futures)
        return n / (time.monotonic() - first), time.process_time() - cpu_first
    finally:
        await producer.stop()
        await consumer.stop()


async def bare_latency(servers: list[str], records: list, rate: float, settings, partitions: int, subscriber_fetch_wait_ms: int) -> dict:
    """(a) latency: the floor of two hops on this broker and machine. Two bare aiokafka stages in this
    process, shaped like the hub's (in -> decode, encode -> mid -> decode, encode -> out), each
    sending a fetched batch, waiting for its acknowledgements and committing its offsets; with the
    hub pipeline's fetch wait while records flow and producer linger (HUB_KAFKA_PIPELINE_FETCH_MAX_WAIT_MS, HUB_KAFKA_PRODUCER_LINGER_MS). Same
    offered load and subscriber as (b)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    codec = default_codec()
    relayed: Counter = Counter()  # source topic -> records relayed
    ready = [asyncio.Event(), asyncio.Event()]

    async def stage(group: str, src: str, dst: str, positioned: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False, fetch_max_wait_ms=settings.pipeline_fetch_max_wait_ms)
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False, linger_ms=settings.producer_linger_ms)
        await consumer.start()
        await producer.start()
        try:
            tps = [TopicPartition(src, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
            positioned.set()
            while True:
                futures = []
                for msgs in (await consumer.getmany(timeout_ms=100, max_records=200)).values():
                    for m in msgs:
                        try:
                            record = codec.decode(m.value, "PopulationChange").record
                        except CodecError:
                            continue
                        futures.append(await producer.send(dst, value=codec.encode("PopulationChange", record), key=m.key))
                if futures:
                    await asyncio.gather(*futures)
                    await consumer.commit()
                    relayed[src] += len(futures)
        finally:
            await producer.stop()
            await consumer.stop()

    group = f"bench-bare-{uuid.uuid4().hex[:6]}"
    stages = [asyncio.create_task(stage(f"{group}-1", BASELINE_LATENCY_IN, BASELINE_LATENCY_MID, ready[0])),
              asyncio.create_task(stage(f"{group}-2", BASELINE_LATENCY_MID, BASELINE_LATENCY_OUT, ready[1]))]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 60)  # both stages at the end of their topics
        return await latency(servers, records, rate, BASELINE_LATENCY_IN, lambda names: [BASELINE_LATENCY_OUT],
                             lambda: until(lambda: relayed[BASELINE_LATENCY_MID] >= len(records), 60, "the bare stages to relay the latency load"),
                             subscriber_fetch_wait_ms)
    finally:
        for task in stages:
            task.cancel()
        await asyncio.gather(*stages, return_exceptions=True)


def provision(url: str, partitions: int) -> int:
    """Every topic of the hub, as `hub topics --create` makes them (deploy/compose runs it once before
    the workers): the per-recipient topics exist before their first record. Returns how many."""
    from hub.adapters.kafka.admin import create_topic_specs
    from hub.deploy.topics import hub_topics
    from hub.routing.reference import default_reference

    specs = hub_topics(default_reference(), partitions=partitions, replicas=1)
    create_topic_specs(url, specs)
    return len(specs)


async def hub_latency(args, servers: list[str], load: list, progress, expected_consumed: int) -> dict:
    """(b) latency: the load offered to the ingest topic, timed on the referral topics."""
    return await latency(servers, load, args.rate, topics.POPULATION_CHANGES, referral_topics,
                         lambda: until(lambda: progress.caught_up(expected_consumed), 120, "the hub to take the latency load"),
                         args.subscriber_fetch_wait_ms, routed_only=True)


class Progress:
    """Counters of the hub's agents, read while it runs."""

    def __init__(self, pipeline) -> None:
        self.p = pipeline

    @property
    def consumed(self) -> int:
        return self.p.newcomers.consumed

    @property
    def produced(self) -> int:  # newcomer events detection published
        return sum(self.p.newcomers.newcomers.values()) + self.p.newcomers.moved

    @property
    def routed(self) -> int:
        return sum(n for (topic, _), n in self.p.routing.consumed.items() if topic == topics.NEWCOMERS)

    def caught_up(self, n: int) -> bool:
        return self.consumed >= n and self.routed >= self.produced


class WorkerProgress:
    """The same counters for worker processes, refreshed in the background (`run()` as a task):
    what the workers consumed and routed from their /metrics (progress only: a record read again
    around a rebalance counts twice there), and, for when they are done, the offsets their two batch
    consumers' groups have committed against the end offsets of the population changes and the
    newcomers (nothing counts twice there)."""

    def __init__(self, workers, servers: list[str], app_id: str) -> None:
        self.w, self.servers, self.app_id = workers, servers, app_id
        self.consumed = self.produced = self.routed = self.dead_letters = 0
        self.committed = {"detection": 0, "routing": 0}  # offsets committed by each group, summed over the partitions
        self.ends = {"detection": 0, "routing": 0}  # end offsets of the topic each group reads
        self.series: list[tuple[float, float, int]] = []  # (monotonic, the workers' RSS in MB, events consumed), every ~0.5 s

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from hub.streams import newcomer_agents, routing_agents

        groups = {"detection": (f"{self.app_id}.{newcomer_agents.CONSUMER_NAME}", topics.POPULATION_CHANGES),
                  "routing": (f"{self.app_id}.{routing_agents.CONSUMER_NAME}", topics.NEWCOMERS)}
        # one consumer per group, never subscribed: it only asks for the group's committed offsets
        readers = {k: AIOKafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=False, group_id=group) for k, (group, _) in groups.items()}
        # and one per topic that reads its partitions' last records (end_offset)
        tails = {k: AIOKafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=10) for k in groups}
        for reader in (*readers.values(), *tails.values()):
            await reader.start()
        try:
            # every partition the workers create (HUB_TOPIC_PARTITIONS), whether or not the topic exists yet
            tps = {k: [TopicPartition(topic, p) for p in range(self.w.partitions)] for k, (_, topic) in groups.items()}
            loop = asyncio.get_running_loop()
            while True:
                counts = await loop.run_in_executor(None, self.w.counts)
                self.consumed = int(sum(v for (t, _), v in counts.items() if t == topics.POPULATION_CHANGES))
                self.routed = int(sum(v for (t, _), v in counts.items() if t == topics.NEWCOMERS))
                self.dead_letters = int(sum(v for (_, outcome), v in counts.items() if outcome == "dead_letter"))
                ends, committed = {}, {}
                for k, reader in readers.items():  # the detection's commits first: the newcomers they wait for are at the end read after
                    committed[k] = sum([await reader.committed(tp) or 0 for tp in tps[k]])
                    ends[k] = await end_offset(tails[k], tps[k])
                # all at once: caught_up() is called while this loop waits, and must never see one
                # group's new commits with the other's old end
                self.ends, self.committed, self.produced = ends, committed, ends["routing"]
                self.w.check_alive()
                now = time.monotonic()
                if not self.series or now - self.series[-1][0] >= 0.5:
                    self.series.append((now, self.w.rss_mb(), self.consumed))
                await asyncio.sleep(0.1)
        finally:
            await asyncio.gather(*(reader.stop() for reader in (*readers.values(), *tails.values())), return_exceptions=True)

    def caught_up(self, n: int) -> bool:
        """Every one of the `n` population changes and every newcomer handled and committed."""
        return self.committed["detection"] >= n and self.committed["routing"] >= self.ends["routing"]


async def end_offset(consumer, tps: list) -> int:
    """The end offsets of the partitions `tps`, summed, read from their last records. The embedded
    broker (Tansu) answers ListOffsets(latest) with the last record batch's base offset + 1, short by
    k - 1 after a batch of k records (a run's newcomers looked routed when the first of each batch
    was, and the latency phase found no referral topic); so each partition is read from there."""
    listed = await consumer.end_offsets(tps)
    wanted = {tp: end for tp, end in listed.items() if end > 0}
    if not wanted:
        return 0
    if set(consumer.assignment()) != set(tps):
        consumer.assign(list(tps))
    for tp, end in wanted.items():
        consumer.seek(tp, end - 1)
    ends: dict = {}
    deadline = time.monotonic() + 30
    while len(ends) < len(wanted):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no record at the listed end of {sorted(set(wanted) - set(ends))}")
        for tp, msgs in (await consumer.getmany(*(set(wanted) - set(ends)), timeout_ms=200)).items():
            if msgs:
                ends[tp] = msgs[-1].offset + 1
    return sum(ends.values())


async def until(condition, timeout: float, what: str, sampler: RssSampler | None = None, done=lambda: 0, poll: float = 0.02,
                report=None) -> float:
    """Wait for `condition()`, sampling the RSS now and then; returns the monotonic time it held."""
    start = last = told = time.monotonic()
    while not condition():
        now = time.monotonic()
        if now - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        if report is not None and now - told >= 10:
            report()
            told = now
        if sampler is not None and now - last >= 0.25:
            sampler.sample(done())
            last = now
        await asyncio.sleep(poll)
    return time.monotonic()


async def latency(servers: list[str], records: list, rate: float, in_topic: str, out_topics, settled, subscriber_fetch_wait_ms: int = 100,
                  routed_only: bool = False) -> dict:
    """Offer `records` at `rate`/s to `in_topic`; time each record a subscriber sees on `out_topics`
    (a callable: the topics that exist, sorted) until `settled()` returns; `routed_only`: only their
    partitions that have records already."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    subscriber = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=subscriber_fetch_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False, linger_ms=0)
    await subscriber.start()
    await producer.start()
    sent: dict[bytes, float] = {}
    samples: list[float] = []
    try:
        watched = out_topics(await subscriber.topics())
        tps = [TopicPartition(t, p) for t in watched for p in sorted(subscriber.partitions_for_topic(t) or [0])]
        # only the partitions that have records: with the hub's topics provisioned, the referral topics
        # of every recipient exist, and a subscriber in this process fetching from all of them (~1,000
        # partitions) took the hub's CPU and raised its latency. Those are the topics the throughput run
        # routed to, as the topics that existed were when the hub made them before their first record
        if routed_only and tps:
            tps = [tp for tp, end in (await subscriber.end_offsets(tps)).items() if end > 0]
        if not tps:
            raise RuntimeError(f"none of the topics the latency is timed on exists or has a record ({in_topic} was never routed on): nothing to time")
        subscriber.assign(tps)
        await subscriber.seek_to_end(*tps)
        for tp in tps:
            await subscriber.position(tp)
        await producer.partitions_for(in_topic)

        async def subscribe() -> None:
            while True:
                for msgs in (await subscriber.getmany(timeout_ms=50)).values():
                    now = time.time()
                    for m in msgs:
                        if m.key in sent:
                            samples.append(now - sent[m.key])

        reader = asyncio.create_task(subscribe())
        start = time.monotonic()
        futures = []
        for i, (key, value, headers) in enumerate(records):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[key] = time.time()
            futures.append(await producer.send(in_topic, value=value, key=key, headers=headers))
        offered = len(records) / (time.monotonic() - start)
        await asyncio.gather(*futures)
        await settled()
        await asyncio.sleep(1.0)  # the last records reach the subscriber
        reader.cancel()
    finally:
        await producer.stop()
        await subscriber.stop()
    q = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) >= 2 else [float("nan")] * 99
    return {"offered_events_per_s": round(offered, 1), "events": len(records), "seen": len(samples),
            "p50_ms": round(q[49] * 1e3, 1), "p95_ms": round(q[94] * 1e3, 1), "p99_ms": round(q[98] * 1e3, 1),
            "max_ms": round(max(samples, default=float("nan")) * 1e3, 1)}


async def run(args) -> dict:
    """One run at `args.events` events; on a scratch PostgreSQL database with `--database postgresql`."""
    if args.database == "postgresql" and not args.workers:
        from workers import scratch_database

        with scratch_database() as url:
            return await _run(args, url)
    return await _run(args, None)


def gauge_costs(engine, today: dt.date) -> dict:
    """Milliseconds of one refresh of the referral gauges (every authority, from the counts table) and
    of one recount of the whole ledger (what a refresh did before the counts table), median of five,
    with the open referrals there are."""
    import sqlalchemy as sa

    from hub.adapters.referral_ledger import CLOSED, ReferralLedger, ReferralRow, refresh_gauges

    ledger = ReferralLedger(engine)
    is_open = ReferralRow.state.not_in(CLOSED)
    recount = sa.select(ReferralRow.authority, sa.func.sum(sa.case((is_open, 1), else_=0)),
                        sa.func.sum(sa.case((sa.and_(is_open, ReferralRow.due < today), 1), else_=0))).group_by(ReferralRow.authority)

    def full_recount() -> None:
        with engine.connect() as conn:
            conn.execute(recount).all()

    def median_ms(f) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return round(statistics.median(times) * 1e3, 2)

    with engine.connect() as conn:
        open_now = conn.execute(sa.select(sa.func.count()).select_from(ReferralRow).where(is_open)).scalar()
    return {"open_referrals": int(open_now), "refresh_ms": median_ms(lambda: refresh_gauges(ledger, today)), "full_recount_ms": median_ms(full_recount)}


async def _run(args, database_url: str | None) -> dict:
    from hub.streams.pipeline import build
    from hub.streams.routing_agents import today as finland_today

    out: dict = {"events": args.events, "partitions": args.partitions, "workers": args.workers, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "database": "postgresql" if args.workers or database_url else "sqlite", "rate": args.rate,
                 "scratch_database": database_url.rsplit("/", 1)[-1] if database_url else None,
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    # the hub's defaults, with any HUB_KAFKA_* setting of the environment (e.g. HUB_KAFKA_FETCH_MAX_WAIT_MS), HUB_GC_THRESHOLD
    # and HUB_SWITCH_INTERVAL_MS
    tuned = {k: v for k, v in os.environ.items() if k.startswith("HUB_KAFKA_") or k in ("HUB_GC_THRESHOLD", "HUB_SWITCH_INTERVAL_MS")}
    # a person-key secret of the run's own: `hub worker` (--workers) refuses the demo one
    settings = dataclasses.replace(Settings.from_env(tuned), data_dir=workdir, metrics_port=0, topic_partitions=args.partitions,
                                   app_id=f"bench-{uuid.uuid4().hex[:8]}", person_key_secret=f"bench-{uuid.uuid4().hex}", database_url=database_url)
    out["gc_threshold"] = settings.gc_threshold
    t = time.monotonic()
    records = with_garbage(population_changes(args.events, settings.person_key_secret), args.garbage_every)
    load = population_changes(int(args.rate * args.latency_seconds), settings.person_key_secret, seed=7, day=dt.date(2026, 11, 17))
    out["record_bytes_mean"] = round(statistics.fmean(len(v) for _, v, _ in records))
    log(args, f"generated {len(records)} + {len(load)} records ({out['record_bytes_mean']} bytes on average) in {time.monotonic() - t:.1f} s")

    with EmbeddedBroker() as broker:
        servers = bootstrap_servers(broker.url)
        names = [BASELINE_IN, BASELINE_DEAD, BASELINE_OTHER, BASELINE_LATENCY_IN, BASELINE_LATENCY_MID, BASELINE_LATENCY_OUT,
                 *(baseline_topic(c) for c, _ in MUNICIPALITIES), *topics.FIXED_TOPICS]
        await asyncio.get_running_loop().run_in_executor(None, lambda: ensure_topics(broker.url, names, args.partitions))
        await preload(servers, BASELINE_IN, records)
        await preload(servers, topics.POPULATION_CHANGES, records)
        log(args, f"pre-loaded {len(records)} records twice on {broker.url}")
        # only their number from here on: the hub in this process must not carry the bench's records
        # (a million of them: gigabytes, and every full collection of the hub's garbage collector
        # walked them, a latency the hub in a worker process does not have); what is left of the
        # bench's own objects is frozen out of the collector's walks
        n = len(records)
        del records
        gc.collect()
        gc.freeze()

        rate, bare_cpu = await bare_pipe(servers, n, args.partitions)
        out["baseline_events_per_s"] = round(rate, 1)
        log(args, f"(a) bare aiokafka pipe: {out['baseline_events_per_s']:.0f} events/s")
        out["baseline_latency"] = await bare_latency(servers, load, args.rate, settings, args.partitions, args.subscriber_fetch_wait_ms)
        bl = out["baseline_latency"]
        log(args, f"(a) bare two-hop latency at {bl['offered_events_per_s']:.0f} events/s offered: p50 {bl['p50_ms']} ms, p95 {bl['p95_ms']} ms, p99 {bl['p99_ms']} ms")

        if not args.lazy_topics:
            t = time.monotonic()
            out["provisioned_topics"] = await asyncio.get_running_loop().run_in_executor(None, provision, broker.url, args.partitions)
            log(args, f"provisioned {out['provisioned_topics']} topics as `hub topics --create` does before a deployment's workers start, "
                      f"in {time.monotonic() - t:.1f} s")
        if args.workers:
            await _run_workers(args, out, broker, servers, settings, n, load)
            return out
        rss_before = rss_mb()
        started = time.monotonic()
        pipeline = build(settings, broker.url)
        progress = Progress(pipeline)
        sampler = RssSampler()
        python_switch_interval = sys.getswitchinterval()  # the hub sets its own when it starts; the next size's bare pipe runs with Python's
        try:
            await _run_in_process(args, out, pipeline, progress, sampler, servers, n, load, started, bare_cpu, finland_today)
        finally:
            sys.setswitchinterval(python_switch_interval)
    out["rss_mb"] = {"before_hub": round(rss_before, 1), "hub_peak": round(sampler.peak, 1), "hub_end": round(sampler.series[-1][1], 1),
                     "process_peak": round(peak_rss_mb(), 1)}
    out["rss_mb"]["growth_per_100k_events"] = round(_growth_per_100k(sampler.series), 1)
    return out


async def _run_in_process(args, out: dict, pipeline, progress, sampler, servers: list[str], n: int, load: list, started: float, bare_cpu: float,
                          finland_today) -> None:
    """(b), the gauges and the latency with the hub in this process."""
    from hub.streams.runner import running

    async with running(pipeline.hub):
        out["switch_interval_ms"] = round(sys.getswitchinterval() * 1000, 3)
        await until(lambda: progress.consumed >= 1, 60, "the first event at the worker", sampler, lambda: progress.consumed, poll=0.005)
        # when detection took its first batch: the app's start may return after that (its extra
        # services start last), and what was processed before must count in the time
        first = pipeline.newcomers.first_at
        cpu_first, threads_first = time.process_time(), thread_cpu_s()  # a few ms after `first`: what detection did in them is not counted
        out["start_to_first_event_s"] = round(first - started, 2)
        done = await until(lambda: progress.caught_up(n), args.timeout, "the hub to route every event", sampler, lambda: progress.consumed,
                           report=lambda: print(f"  ... {progress.consumed} consumed, {progress.produced} newcomer events, {progress.routed} routed",
                                                file=sys.stderr, flush=True))
        hub_cpu, threads_done = time.process_time() - cpu_first, thread_cpu_s()
        out["hub_events_per_s"] = round(n / (done - first), 1)
        out["ratio"] = round(out["hub_events_per_s"] / out["baseline_events_per_s"], 3)
        # CPU time of this process per event (every thread): steadier than events/s on a shared
        # machine, and the bound of a GIL-bound worker; the bare pipe's over the hub's
        out["cpu_us_per_event"] = {"bare": round(bare_cpu / n * 1e6, 1), "hub": round(hub_cpu / n * 1e6, 1),
                                   "ratio": round(bare_cpu / hub_cpu, 3)}
        # by thread (the event loop is MainThread, with the SQLite calls; PostgreSQL and the gauges have threads of their own)
        out["hub_cpu_us_per_event_by_thread"] = {name: round((threads_done[name] - threads_first.get(name, 0.0)) / n * 1e6, 1)
                                                 for name in sorted(threads_done)}  # in clock ticks (10 ms): 0 on a tiny run
        out["newcomer_events"] = progress.produced
        out["referrals"] = pipeline.routing.published
        out["dead_letters"] = pipeline.newcomers.dead_letters + sum(pipeline.routing.dead_letters.values())
        log(args, f"(b) hub pipeline: {out['hub_events_per_s']:.0f} events/s (ratio {out['ratio']:.2f}); "
                  f"{out['newcomer_events']} newcomer events, {out['referrals']} referrals, {out['dead_letters']} dead letters")
        sampler.sample(progress.consumed)
        out["gauges"] = await asyncio.get_running_loop().run_in_executor(None, gauge_costs, pipeline.engine, finland_today(dt.datetime.now(dt.timezone.utc)))
        log(args, f"referral gauges with {out['gauges']['open_referrals']} open referrals: a refresh {out['gauges']['refresh_ms']} ms, "
                  f"a recount of the ledger {out['gauges']['full_recount_ms']} ms")
        out["latency"] = await hub_latency(args, servers, load, progress, n + len(load))
        sampler.sample(progress.consumed)
        lat = out["latency"]
        log(args, f"latency at {lat['offered_events_per_s']:.0f} events/s offered: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
                  f"p99 {lat['p99_ms']} ms ({lat['seen']} referrals)")


async def _run_workers(args, out: dict, broker, servers: list[str], settings, n: int, load: list) -> None:
    """(b) and the latency with `args.workers` `hub worker` processes (PostgreSQL ledger)."""
    from workers import Workers

    workers = Workers(args.workers, broker.url, args.partitions, settings.data_dir, settings.app_id, settings.person_key_secret)
    try:
        started = time.monotonic()
        workers.start()
        progress = WorkerProgress(workers, servers, settings.app_id)
        follower = asyncio.create_task(progress.run())
        try:
            first = await until(lambda: progress.consumed >= 1 or follower.done(), 120, "the first event at a worker", poll=0.01)
            if follower.done():
                follower.result()  # a worker died: raise its log
            out["start_to_first_event_s"] = round(first - started, 2)
            done = await until(lambda: progress.caught_up(n) or follower.done(), args.timeout, "the workers to route every event",
                               report=lambda: print(f"  ... {progress.consumed} consumed, {progress.produced} newcomer events, {progress.routed} routed",
                                                    file=sys.stderr, flush=True))
            if follower.done():
                follower.result()
            out["hub_events_per_s"] = round(n / (done - first), 1)
            out["ratio"] = round(out["hub_events_per_s"] / out["baseline_events_per_s"], 3)
            out["newcomer_events"], out["dead_letters"] = progress.produced, progress.dead_letters
            log(args, f"(b) hub pipeline, {args.workers} worker process(es): {out['hub_events_per_s']:.0f} events/s (ratio {out['ratio']:.2f}); "
                      f"{out['newcomer_events']} newcomer events, {progress.routed} routed, {out['dead_letters']} dead letters")
            out["latency"] = await hub_latency(args, servers, load, progress, n + len(load))
            lat = out["latency"]
            log(args, f"latency at {lat['offered_events_per_s']:.0f} events/s offered: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
                      f"p99 {lat['p99_ms']} ms ({lat['seen']} referrals)")
            hub_phase = [p for p in progress.series if p[2] <= n]  # the throughput run, before the latency run's events
            out["rss_mb"] = {"worker_peak": round(workers.rss_peak_mb(), 1),
                             "worker_at_end_of_throughput_run": round(hub_phase[-1][1], 1) if hub_phase else None,
                             "growth_per_100k_events": round(_growth_per_100k(hub_phase), 1)}
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)  # its consumers closed
    finally:
        workers.stop()


def _growth_per_100k(series) -> float:
    """MB of RSS per 100k events over the second half of the hub's run (least squares); `series`:
    (time, MB, events done) samples."""
    points = [(done, mb) for _, mb, done in series]
    points = points[len(points) // 2:]
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return 0.0
    mx, my = statistics.fmean(x for x, _ in points), statistics.fmean(y for _, y in points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return (sum((x - mx) * (y - my) for x, y in points) / var * 100_000) if var else 0.0


def log(args, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def render(r: dict) -> str:
    lat, rss, bl, cpu = r["latency"], r["rss_mb"], r["baseline_latency"], r.get("cpu_us_per_event")
    floor = (f"  (a) bare two hops at {bl['offered_events_per_s']:.0f}/s: p50 {bl['p50_ms']} ms  p95 {bl['p95_ms']} ms  p99 {bl['p99_ms']} ms  "
             f"(the broker's floor for (b)'s latency)")
    if r.get("workers"):
        return "\n".join([
            f"Integration hub pipeline benchmark ({r['events']} events, {r['record_bytes_mean']} bytes each, {r['partitions']} partition(s), "
            f"{r['workers']} hub worker process(es), PostgreSQL ledger; {r['machine']})",
            f"  (a) bare aiokafka pipe:   {r['baseline_events_per_s']:>9.0f} events/s",
            f"  (b) hub pipeline:         {r['hub_events_per_s']:>9.0f} events/s   ratio (b)/(a) {r['ratio']:.2f}  (target >= 0.5)",
            floor,
            f"  latency at {lat['offered_events_per_s']:.0f}/s:      p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  p99 {lat['p99_ms']} ms  (target p99 <= 50 ms; "
            f"{lat['seen']} referrals)",
            f"  RSS:                      worker peak {rss['worker_peak']} MB, {rss['growth_per_100k_events']:+.1f} MB per 100k events (target <= 300 MB over 1M)",
            f"  start to first event:     {r['start_to_first_event_s']} s (process start, incl. imports; target <= 5 s)",
        ])
    gauges = r.get("gauges") or {}
    return "\n".join([
        f"Integration hub pipeline benchmark ({r['events']} events, {r['record_bytes_mean']} bytes each, {r['partitions']} partition(s), "
        f"{'PostgreSQL' if r.get('database') == 'postgresql' else 'SQLite'}, in process; {r['machine']})",
        f"  (a) bare aiokafka pipe:   {r['baseline_events_per_s']:>9.0f} events/s",
        f"  (b) hub pipeline:         {r['hub_events_per_s']:>9.0f} events/s   ratio (b)/(a) {r['ratio']:.2f}  (target >= 0.5)",
        f"  CPU per event:            (a) {cpu['bare']} µs, (b) {cpu['hub']} µs   ratio (a)/(b) {cpu['ratio']:.2f}  (this process, every thread)",
        "  (b) by thread:            " + ", ".join(f"{name} {us} µs" for name, us in r.get("hub_cpu_us_per_event_by_thread", {}).items()),
        floor,
        f"  latency at {lat['offered_events_per_s']:.0f}/s:      p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  p99 {lat['p99_ms']} ms  (target p99 <= 50 ms; "
        f"{lat['seen']} referrals)",
        f"  RSS:                      hub peak {rss['hub_peak']} MB, {rss['growth_per_100k_events']:+.1f} MB per 100k events (target <= 300 MB over 1M); "
        f"process peak {rss['process_peak']} MB",
        f"  start to first event:     {r['start_to_first_event_s']} s  (target <= 5 s)",
        f"  referral gauges:          a refresh {gauges.get('refresh_ms')} ms, a recount of the ledger {gauges.get('full_recount_ms')} ms "
        f"({gauges.get('open_referrals')} open referrals)",
    ])


def growth(runs: list[dict]) -> list[dict]:
    """The figures of each run side by side, CPU per event also against the first (smallest) run."""
    first = runs[0].get("cpu_us_per_event") or {}
    rows = []
    for r in runs:
        cpu, lat, bl = r.get("cpu_us_per_event") or {}, r["latency"], r["baseline_latency"]
        rows.append({"events": r["events"], "bare_events_per_s": r["baseline_events_per_s"], "hub_events_per_s": r["hub_events_per_s"], "ratio": r["ratio"],
                     "hub_cpu_us_per_event": cpu.get("hub"), "bare_cpu_us_per_event": cpu.get("bare"),
                     "hub_cpu_vs_first": round(cpu["hub"] / first["hub"] - 1, 3) if cpu.get("hub") and first.get("hub") else None,
                     "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"], "floor_p99_ms": bl["p99_ms"],
                     "rss_peak_mb": r["rss_mb"].get("hub_peak", r["rss_mb"].get("worker_peak")),
                     "gauge_refresh_ms": (r.get("gauges") or {}).get("refresh_ms"), "full_recount_ms": (r.get("gauges") or {}).get("full_recount_ms"),
                     "open_referrals": (r.get("gauges") or {}).get("open_referrals")})
    return rows


def render_growth(runs: list[dict]) -> str:
    rows = growth(runs)
    where = "PostgreSQL" if runs[0].get("database") == "postgresql" else "SQLite"
    lines = [f"Growth, one run per size ({where}; each size with a broker and a bare pipe of its own; {runs[0]['machine']})",
             f"| events | bare ev/s | hub ev/s | hub/bare | CPU µs/event hub (vs first) / bare | p50 / p99 ms at {runs[0]['rate']:,.0f} ev/s | floor p99 ms | hub RSS peak MB "
             "| gauge refresh / recount ms (open referrals) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in rows:
        vs = f" ({g['hub_cpu_vs_first']:+.0%})" if g["hub_cpu_vs_first"] is not None else ""
        lines.append(f"| {g['events']:,} | {g['bare_events_per_s']:,.0f} | {g['hub_events_per_s']:,.0f} | {g['ratio']:.2f} | {g['hub_cpu_us_per_event']}{vs} / "
                     f"{g['bare_cpu_us_per_event']} | {g['p50_ms']} / {g['p99_ms']} | {g['floor_p99_ms']} | {g['rss_peak_mb']} | "
                     f"{g['gauge_refresh_ms']} / {g['full_recount_ms']} ({g['open_referrals']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", default="10000",
                        help="records pre-loaded for the throughput run; several sizes, comma-separated (10000,100000), run one after "
                             "the other and print their growth side by side (default: %(default)s)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the hub's database in process: SQLite in a temporary directory, or a scratch database on the PostgreSQL "
                             "server of HUB_BENCH_PG_ADMIN_URL (default the local one), dropped after (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered load of the latency run, events/s (default: %(default)s)")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="length of the latency run, seconds (default: %(default)s)")
    parser.add_argument("--partitions", type=int, default=1, help="partitions of every topic (default: %(default)s)")
    parser.add_argument("--garbage-every", type=int, default=500, help="every Nth record is undecodable, to exercise dead letters; 0: none (default: %(default)s)")
    parser.add_argument("--subscriber-fetch-wait-ms", type=int, default=10,
                        help="fetch wait of the latency run's subscriber (a recipient's consumer): how long the broker may hold its "
                             "fetch when nothing is new; the embedded broker holds it that long even when a record arrives (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up when the hub has not routed everything after this many seconds")
    parser.add_argument("--lazy-topics", action="store_true",
                        help="do not provision the hub's topics before (b): each per-recipient topic is then made by the hub before its first record, "
                             "as on a deployment without `hub topics --create` (the embedded demo)")
    parser.add_argument("--workers", type=int, default=0,
                        help="run (b) as this many `hub worker` processes with a PostgreSQL ledger (HUB_BENCH_PG_ADMIN_URL, default the local "
                             "server) instead of in this process; use with --partitions >= workers (default: in-process)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout (progress goes to stderr)")
    parser.add_argument("--json-out", metavar="PATH", help="also write the figures as JSON to the file PATH (default: no file is written)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("hub.streams.app").setLevel(logging.ERROR)  # the deliberate dead letters
    sizes = [int(n.replace("_", "")) for n in str(args.events).split(",") if n.strip()]
    runs = []
    for n in sizes:
        runs.append(asyncio.run(run(_with(args, events=n))))
        if len(sizes) > 1 and not args.json:
            print(render(runs[-1]), flush=True)
    result = runs[0] if len(runs) == 1 else {"runs": runs, "growth": growth(runs)}
    write_json(args.json_out, result)
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        print(render(runs[0]) if len(runs) == 1 else render_growth(runs), flush=True)
    return 0


def _with(args: argparse.Namespace, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


if __name__ == "__main__":
    sys.exit(main())
