"""Helpers shared by the benchmarks: realistic PopulationChange records and memory readings."""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import time

from hub.adapters.dvv.ingest import process_page
from hub.adapters.dvv.page import parse_page
from hub.adapters.dvv.synthetic import generate_pages
from hub.schemas.codec import default_codec
from hub.schemas.envelope import cloudevent_headers


def population_changes(n: int, secret: str, seed: int = 2025, day: dt.date = dt.date(2026, 11, 16)) -> list[tuple[bytes, bytes, list]]:
    """`n` PopulationChange records as Kafka (key, value, headers), wire format, from the synthetic
    DVV day through the real DVV mapping (the mix of the demo: ~15 % arrivals from abroad)."""
    codec = default_codec()
    now = dt.datetime.now(dt.timezone.utc)
    out: list[tuple[bytes, bytes, list]] = []
    changes = n
    while len(out) < n:
        out.clear()
        for i, text in enumerate(generate_pages(changes, seed=seed, day=day)):
            outcome = process_page(parse_page(text, f"synthetic page {i + 1}"), secret=secret, now=now)
            for record, key in outcome.events:
                out.append((key.encode(), codec.encode("PopulationChange", record), cloudevent_headers("PopulationChange", record)))
        changes = int(changes * 1.1) + 10  # a few changes map to no event (bad on purpose) or to two
    return out[:n]


def write_json(path: str | None, result: dict) -> None:
    """The figures as one JSON object in the file `path` (the user's choice, `--json-out`; none: nothing
    is written). Its directory is made if missing."""
    if not path:
        return
    from pathlib import Path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def rss_mb() -> float:
    """The resident set size of this process now, in MB (Linux)."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name; threads of a
    pool lose their number ("person-states_0" -> "person-states"). Linux; elsewhere empty."""
    import threading

    hz = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            with open(f"/proc/self/task/{t.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        name = t.name.rsplit("_", 1)[0] if t.name.rsplit("_", 1)[-1].isdigit() else t.name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / hz
    return out


class RssSampler:
    """Samples the RSS while a phase runs (`sample()` from a loop); keeps the peak and a series."""

    def __init__(self) -> None:
        self.series: list[tuple[float, float, int]] = []  # (seconds, MB, events done)
        self._start = time.monotonic()

    def sample(self, done: int) -> None:
        self.series.append((time.monotonic() - self._start, rss_mb(), done))

    @property
    def peak(self) -> float:
        return max((mb for _, mb, _ in self.series), default=rss_mb())
