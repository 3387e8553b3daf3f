"""The hub as `hub worker` processes (one worker per core, more partitions), for
`bench/pipeline.py --workers N`: start N workers on the broker and a throwaway PostgreSQL
database, follow their progress through their /metrics, stop them; and the scratch PostgreSQL
database of `bench/pipeline.py --database postgresql`. No figures of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from hub.adapters.sealing import new_key

ROOT = Path(__file__).resolve().parent.parent
# a PostgreSQL server where the bench may create a database (SQLAlchemy or libpq URL)
PG_ADMIN = os.environ.get("HUB_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def scratch_database(prefix: str = "hub_bench") -> Iterator[str]:
    """A new PostgreSQL database on PG_ADMIN's server for one run (its SQLAlchemy URL), dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_ADMIN).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(sql: str) -> None:
    engine = sa.create_engine(make_url(PG_ADMIN).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workers:
    """N `hub worker` processes sharing one consumer group, one PostgreSQL ledger database."""

    def __init__(self, n: int, kafka_url: str, partitions: int, workdir: Path, app_id: str, secret: str):
        self.n, self.partitions = n, partitions
        self.db = f"hub_bench_{uuid.uuid4().hex[:10]}"
        self._admin(f'CREATE DATABASE "{self.db}"')
        self.url = make_url(PG_ADMIN).set(drivername="postgresql+psycopg", database=self.db).render_as_string(hide_password=False)
        self.ports = [_free_port() for _ in range(n)]
        self.env = {**os.environ, "HUB_KAFKA_URL": kafka_url, "HUB_DATABASE_URL": self.url, "HUB_APP_ID": app_id,
                    "HUB_TOPIC_PARTITIONS": str(partitions), "HUB_PERSON_KEY_SECRET": secret, "HUB_LOG_LEVEL": "ERROR",
                    # `hub worker` refuses the demo data key: a fresh one per run (the bench reads no sealed column)
                    "HUB_DATA_KEYS": os.environ.get("HUB_DATA_KEYS") or new_key()}
        subprocess.run([sys.executable, "-m", "hub.cli", "db", "upgrade"], env=self.env, cwd=ROOT, check=True, capture_output=True)
        self.logs = [open(workdir / f"worker-{i}.log", "wb") for i in range(n)]
        self.procs: list[subprocess.Popen] = []
        self.workdir = workdir

    def start(self) -> None:
        for i, port in enumerate(self.ports):
            env = dict(self.env, HUB_METRICS_PORT=str(port), HUB_DATA_DIR=str(self.workdir / f"w{i}"))
            self.procs.append(subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], env=env, cwd=ROOT, stdout=self.logs[i],
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def counts(self) -> dict[tuple[str, str], float]:
        """hub_events_consumed_total by (topic, outcome), summed over the workers that answer."""
        out: dict[tuple[str, str], float] = {}
        for port in self.ports:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
            for family in text_string_to_metric_families(text):
                if family.name == "hub_events_consumed":
                    for sample in family.samples:
                        if sample.name == "hub_events_consumed_total":
                            key = (sample.labels["topic"], sample.labels["outcome"])
                            out[key] = out.get(key, 0.0) + sample.value
        return out

    def _status_mb(self, field: str) -> list[float]:
        """A /proc/<pid>/status memory field of each worker still running, MB."""
        out = []
        for p in self.procs:
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith(field + ":"):
                        out.append(int(line.split()[1]) / 1e3)
            except OSError:
                pass
        return out

    def rss_mb(self) -> float:
        """The workers' resident memory now (VmRSS, summed), MB."""
        return sum(self._status_mb("VmRSS"))

    def rss_peak_mb(self) -> float:
        """The largest peak RSS (VmHWM) of the workers, MB."""
        return max(self._status_mb("VmHWM"), default=0.0)

    def check_alive(self) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                self.logs[i].flush()
                tail = (self.workdir / f"worker-{i}.log").read_bytes()[-2000:].decode(errors="replace")
                raise RuntimeError(f"hub worker {i} exited with {p.returncode}:\n{tail}")

    @staticmethod
    def _admin(sql: str) -> None:
        _admin(sql)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self.logs:
            f.close()
        self._admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
