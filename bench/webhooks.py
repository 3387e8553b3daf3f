"""Webhook delivery under load: one subscription per recipient of the reference data (374), one
receiver down, the others' delivery latency from each referral's publication to its arrival.

    PYTHONPATH=. .venv/bin/python bench/webhooks.py [--rate 100] [--seconds 20] [--backlog 680] [--target-p99 SECONDS]

Runs `hub webhooks serve` as its own process (as deployed) on the embedded broker (or
HUB_KAFKA_URL) and a throwaway PostgreSQL database (HUB_BENCH_PG_ADMIN_URL, default the server at
127.0.0.1:5432); the receivers are one aiohttp server on 127.0.0.1 (a path per subscription). The
dead receiver takes connections and never answers (each attempt waits for the timeout) and has a
backlog of `--backlog` referrals queued before the measurement. A warm-up round (one referral per
live recipient) waits for every subscription's consumer; then referrals go out at `--rate` per
second for `--seconds`, spread over every recipient (the dead one included). Prints the figures
(JSON with `--json FILE` too); exit status 1 when the live receivers' p99 is above the target or a
referral did not arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import make_url

from hub.adapters import database, sealing
from hub.adapters.kafka.admin import ensure_topics
from hub.adapters.kafka.producer import EventProducer
from hub.adapters.webhooks import WebhookStore
from hub.routing.reference import known_authority_ids
from hub.schemas.envelope import envelope
from hub.schemas.topics import recipient_topics, referral_topic

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("HUB_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))] if ordered else float("nan")


def referral(recipient: str, sequence: int) -> dict:
    rec = envelope("hub:routing")
    rec.update(referral_id=f"r-{uuid.uuid4().hex[:10]}", to=recipient, purpose="outreach", person_key=f"pk-{uuid.uuid4().hex[:12]}",
               reasons=["arrived"], rule="outreach", rules_version="2025.1", sequence=sequence)
    return rec


class Receivers:
    """One aiohttp server: POST /hook/<n> is subscription n's receiver; arrival time per webhook-id."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        self.arrived.setdefault(request.headers["webhook-id"], time.time())
        return web.Response(status=204)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook/{n}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = _free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port, backlog=1024).start()
        return f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        await self.runner.cleanup()


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process so far (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def _health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _start_service(env: dict, port: int, workdir: Path) -> tuple:
    log = open(workdir / "webhooks.log", "wb")  # noqa: SIM115 - closed when the service has stopped
    service = subprocess.Popen([sys.executable, "-m", "hub.cli", "webhooks", "serve", "--port", str(port)], env=env, cwd=ROOT,
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return log, service


async def run(args, kafka_url: str, database_url: str, workdir: Path) -> dict:
    recipients = sorted(known_authority_ids())[: args.subscriptions]
    dead_recipient, live = recipients[0], recipients[1:]
    t = time.monotonic()
    ensure_topics(kafka_url, [topic for r in recipients for topic in recipient_topics(r)], 1)
    topics_s = time.monotonic() - t
    key = sealing.new_key()
    sealing.configure([key])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_KAFKA_URL=kafka_url, HUB_DATABASE_URL=database_url, HUB_DATA_KEYS=key, HUB_PERSON_KEY_SECRET=uuid.uuid4().hex,
               HUB_WEBHOOKS_ALLOW_LOOPBACK="on", HUB_DATA_DIR=str(workdir), HUB_LOG_LEVEL="WARNING", HUB_WEBHOOKS_TIMEOUT=str(args.timeout))
    await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "hub.cli", "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    engine = database.create_engine(database_url)
    store = WebhookStore(engine, allow_loopback=True)
    receivers = Receivers()
    base = await receivers.start()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(1024)  # takes connections, never answers
    store.add(dead_recipient, f"http://127.0.0.1:{dead.getsockname()[1]}/hook")
    for n, recipient in enumerate(live):
        store.add(recipient, f"{base}/{n}")
    published: dict[str, tuple[str, float]] = {}  # event id -> (recipient, time published)
    seq = {r: 0 for r in recipients}

    async def publish(producer, recipient):
        seq[recipient] += 1
        rec = referral(recipient, seq[recipient])
        published[str(rec["event_id"])] = (recipient, time.time())
        await producer.send_event(referral_topic(recipient), "Referral", rec, key=rec["person_key"])
        return str(rec["event_id"])

    port = _free_port()
    log, service = await asyncio.to_thread(_start_service, env, port, workdir)
    figures: dict = {"subscriptions": len(recipients), "dead_recipient": dead_recipient, "rate": args.rate, "seconds": args.seconds,
                     "backlog": args.backlog, "topics_s": round(topics_s, 1)}
    try:
        t = time.monotonic()
        while _health(port) != 200:
            if service.poll() is not None:
                raise SystemExit(f"hub webhooks serve exited ({service.returncode}); see {workdir / 'webhooks.log'}")
            await asyncio.sleep(0.5)
        figures["healthy_after_s"] = round(time.monotonic() - t, 1)
        async with EventProducer(kafka_url) as producer:
            # the dead receiver's backlog, then a warm-up round: every live subscription's consumer is in its group
            for _ in range(args.backlog):
                await publish(producer, dead_recipient)
            warm = [await publish(producer, r) for r in live]
            await producer.flush()
            while not all(e in receivers.arrived for e in warm):
                if time.monotonic() - t > args.startup_timeout:
                    missing = sum(e not in receivers.arrived for e in warm)
                    raise SystemExit(f"warm-up: {missing} of {len(warm)} subscriptions got nothing within {args.startup_timeout} s")
                await asyncio.sleep(0.2)
            figures["ready_after_s"] = round(time.monotonic() - t, 1)
            # the measurement: a steady flow over every recipient, the dead one included
            measured: list[str] = []
            total = int(args.rate * args.seconds)
            start, cpu0 = time.monotonic(), _cpu_s(service.pid)
            measured_from = dt.datetime.now(dt.timezone.utc)
            order = [r for r in recipients]
            for i in range(total):
                due = start + i / args.rate
                pause = due - time.monotonic()
                if pause > 0:
                    await producer.flush()
                    await asyncio.sleep(pause)
                recipient = order[i % len(order)]
                event_id = await publish(producer, recipient)
                if recipient != dead_recipient:
                    measured.append(event_id)
            await producer.flush()
            figures["published"] = total
            figures["publish_s"] = round(time.monotonic() - start, 2)
        end = time.monotonic() + args.drain
        while not all(e in receivers.arrived for e in measured) and time.monotonic() < end:
            await asyncio.sleep(0.2)
        figures["service_cpu_share"] = round((_cpu_s(service.pid) - cpu0) / (time.monotonic() - start), 2)  # cores used while measuring
        lags = [receivers.arrived[e] - published[e][1] for e in measured if e in receivers.arrived]
        figures.update(
            measured=len(measured), arrived=len(lags), missing=len(measured) - len(lags),
            p50_s=round(_percentile(lags, 50), 3), p90_s=round(_percentile(lags, 90), 3), p99_s=round(_percentile(lags, 99), 3),
            max_s=round(max(lags), 3) if lags else None, receiver_requests=receivers.requests,
        )
        text = _metrics(port)
        figures["service_metrics"] = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                                      if line.startswith(("hub_webhook_delivery_lag_seconds_count", "hub_webhook_delivery_lag_seconds_sum"))
                                      or (line.startswith("hub_webhook_deliveries_total") and dead_recipient in line)}
        # where the time goes: publication -> queued (the Kafka hop) and queued -> delivered (database, POST)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT EXTRACT(EPOCH FROM next_attempt_at - created_at), EXTRACT(EPOCH FROM delivered_at - next_attempt_at) "
                                        "FROM webhook_deliveries WHERE state = 'delivered' AND attempts = 1 AND subscription_id > 1 AND created_at >= :start"),
                                {"start": measured_from}).all()
        queued, sent = [float(a) for a, _ in rows], [float(b) for _, b in rows]
        figures.update(queued_p50_s=round(_percentile(queued, 50), 3), queued_p99_s=round(_percentile(queued, 99), 3),
                       sent_p50_s=round(_percentile(sent, 50), 3), sent_p99_s=round(_percentile(sent, 99), 3))
        dead_queue = store.counts_by_subscription()
        figures["dead_queue"] = {state: n for (sub, state), n in dead_queue.items() if sub == 1}
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
        figures["service_exit"] = service.returncode
        log.close()
        if args.keep_log:
            args.keep_log.write_bytes((workdir / "webhooks.log").read_bytes())
        await receivers.stop()
        dead.close()
        engine.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=len(known_authority_ids()), help="one per recipient of the reference data (default: all)")
    parser.add_argument("--rate", type=float, default=100.0, help="referrals published per second during the measurement")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the measurement publishes")
    parser.add_argument("--backlog", type=int, default=680, help="referrals queued for the dead receiver before the measurement")
    parser.add_argument("--timeout", type=float, default=10.0, help="HUB_WEBHOOKS_TIMEOUT of the service (the dead receiver's attempts wait this long)")
    parser.add_argument("--target-p99", type=float, default=2.0, help="seconds: the live receivers' p99 must not be above this")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last deliveries")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds for the service to start and every consumer to join")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep-log", type=Path, help="copy the service's log (webhooks.log) here")
    args = parser.parse_args(argv)

    from hub.adapters.kafka.embedded_broker import EmbeddedBroker

    db = f"hub_bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    database_url = make_url(PG_ADMIN).set(database=db).render_as_string(hide_password=False)
    try:
        with tempfile.TemporaryDirectory(prefix="hub-bench-webhooks-") as tmp:
            if os.environ.get("HUB_KAFKA_URL"):
                figures = asyncio.run(run(args, os.environ["HUB_KAFKA_URL"], database_url, Path(tmp)))
            else:
                with EmbeddedBroker() as broker:
                    figures = asyncio.run(run(args, broker.url, database_url, Path(tmp)))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
    ok = figures["missing"] == 0 and figures["p99_s"] <= args.target_p99
    figures["target_p99_s"], figures["ok"] = args.target_p99, ok
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not ok:
        print(f"MISSED: p99 {figures['p99_s']} s (target {args.target_p99} s), {figures['missing']} referral(s) not delivered", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
