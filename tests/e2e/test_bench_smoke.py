"""`bench/pipeline.py` runs end to end on a tiny load and reports every figure (never judged on speed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_pipeline_benchmark_reports_every_figure():
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline.py"), "--events", "300", "--rate", "100", "--latency-seconds", "2", "--json"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    for name in ("baseline_events_per_s", "hub_events_per_s", "ratio", "start_to_first_event_s", "record_bytes_mean"):
        assert figures[name] > 0, name
    assert {"p50_ms", "p95_ms", "p99_ms"} <= set(figures["latency"])
    assert figures["latency"]["seen"] > 0
    assert figures["baseline_latency"]["seen"] == 200 and figures["baseline_latency"]["p99_ms"] > 0  # every record through the bare hops
    assert figures["provisioned_topics"] > 100  # as `hub topics --create`: three per recipient authority
    assert figures["gc_threshold"] == 10_000 and figures["switch_interval_ms"] == 1.0
    assert {"hub_peak", "process_peak", "growth_per_100k_events"} <= set(figures["rss_mb"])
    cpu = figures["cpu_us_per_event"]
    assert cpu["bare"] > 0 and cpu["hub"] > 0 and cpu["ratio"] == pytest.approx(cpu["bare"] / cpu["hub"], rel=0.05)
    if sys.platform == "linux":  # by thread, from /proc: the event loop, which runs the SQLite calls too (no database threads)
        by_thread = figures["hub_cpu_us_per_event_by_thread"]
        assert by_thread["MainThread"] > 0 and not {"person-states", "referral-ledger"} & set(by_thread)


@pytest.mark.integration
def test_snapshot_benchmark_reports_every_figure():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "snapshot.py"), "--events", "2000", "--json"],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    for name in ("events", "events_per_s", "elapsed_s", "peak_rss_mb", "extrapolated_full_s"):
        assert figures[name] > 0, name


@pytest.mark.integration
def test_pipeline_benchmark_with_worker_processes_reports_every_figure(pg_admin_url):
    """`--workers 2 --partitions 2`: the hub as two `hub worker` processes on PostgreSQL; both stopped after."""
    import os

    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline.py"), "--events", "300", "--rate", "100", "--latency-seconds", "2", "--workers", "2",
         "--partitions", "2", "--json"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, cwd=ROOT,
        env={**os.environ, "HUB_BENCH_PG_ADMIN_URL": pg_admin_url},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    assert figures["workers"] == 2 and figures["hub_events_per_s"] > 0 and figures["latency"]["seen"] > 0
    # the newcomers counted from the topic's real end (the embedded broker lists a batch's base offset + 1)
    assert figures["newcomer_events"] > 0 and figures["dead_letters"] == 0
    assert figures["rss_mb"]["worker_peak"] > 0


@pytest.mark.integration
def test_pipeline_benchmark_on_postgresql_shows_the_growth_of_two_sizes(pg_admin_url):
    """`--database postgresql --events 300,400`: two runs on scratch databases (both dropped), the
    growth side by side, the gauge refresh timed against a recount; the JSON file only where asked."""
    import os

    import sqlalchemy as sa

    out = ROOT / "build" / "test-bench" / f"growth-{os.getpid()}.json"
    try:
        r = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "pipeline.py"), "--events", "300,400", "--rate", "100", "--latency-seconds", "2",
             "--database", "postgresql", "--json-out", str(out)],
            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "HUB_BENCH_PG_ADMIN_URL": pg_admin_url},
        )
        assert r.returncode == 0, r.stderr[-2000:]
        assert "| 300 |" in r.stdout and "| 400 |" in r.stdout  # the growth table, printed
        figures = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    assert [g["events"] for g in figures["growth"]] == [300, 400]
    for run in figures["runs"]:
        assert run["database"] == "postgresql" and run["hub_events_per_s"] > 0 and run["latency"]["seen"] > 0
        assert run["gauges"]["open_referrals"] > 0 and run["gauges"]["refresh_ms"] > 0 and run["gauges"]["full_recount_ms"] > 0
    assert figures["growth"][0]["hub_cpu_vs_first"] == 0
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            names = [run["scratch_database"] for run in figures["runs"]]
            assert conn.execute(sa.text("SELECT count(*) FROM pg_database WHERE datname = ANY(:names)"), {"names": names}).scalar() == 0  # dropped
    finally:
        admin.dispose()
