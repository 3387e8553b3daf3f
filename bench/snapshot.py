"""A synthetic snapshot of the whole population (5.6M persons) through newcomer detection.

Each person is one `resident` PopulationChange in the wire format (test identity codes only), as
`hub ingest dvv --snapshot` makes of DVV's base data for the go-live backfill; the
timed part does what the detection agent does, a batch of `--batch` records at a time: decode,
validate (`hub.domain.population_change`), read the batch's persons' states in one query, then
`hub.newcomers.detection.step` per record (detect, the new state), encode the Newcomer events found,
and write the batch's states in one transaction. In-process, without the broker: it measures the
detection stage's own cost, with the states where the worker keeps them (`--store`: the database,
by default a SQLite file in a temporary directory as in the embedded default; `memory` keeps them
in a dict, as the faust table did before). Use `--events` to scale down.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import peak_rss_mb, rss_mb, write_json  # noqa: E402

from hub.adapters.dvv.synthetic import MUNICIPALITIES, ORIGINS  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.domain import hetu, population_change  # noqa: E402
from hub.routing.reference import municipality_codes  # noqa: E402
from hub.adapters import database  # noqa: E402
from hub.adapters.person_states import MemoryPersonStates, SqlPersonStates  # noqa: E402
from hub.newcomers.detection import DEFAULT_WINDOW_DAYS, newcomer_record, person_keys, step  # noqa: E402
from hub.schemas.codec import default_codec  # noqa: E402

POPULATION = 5_600_000
DAY = dt.date(2026, 11, 16)
SIGNS_1900, SIGNS_2000 = "-YXWVU", "ABCDEF"  # the 2023 century letters multiply the test-code space
NAMESPACE = uuid.UUID("8f0c2e49-1d4b-4a53-9c3e-6a1b5e7d2f10")
ALPHA2 = {"804": "UA", "643": "RU", "368": "IQ", "760": "SY", "004": "AF", "706": "SO", "356": "IN", "608": "PH", "704": "VN", "156": "CN",
          "233": "EE", "752": "SE", "566": "NG", "076": "BR", "524": "NP", "050": "BD", "231": "ET", "792": "TR"}


def person_id(i: int) -> tuple[str, dt.date]:
    """The i-th synthetic person's test identity code (individual number 900-999) and birth date."""
    day, rest = i % 36_500, i // 36_500
    serial, variant = 900 + rest % 100, rest // 100
    born = DAY - dt.timedelta(days=day + 1)
    signs = SIGNS_1900 if born.year < 2000 else SIGNS_2000
    return hetu.make(born, serial, signs[variant % len(signs)]), born


def snapshot_records(start: int, count: int, seed: int = 5600) -> list[bytes]:
    """Persons start..start+count as wire-format move_in records: ~9 % foreign nationals, a few
    of them arrived within the act's three years (the newcomers a snapshot should find)."""
    codec = default_codec()
    rng = random.Random(seed + start)
    now = dt.datetime.now(dt.timezone.utc)
    municipalities = [code for code, _ in MUNICIPALITIES]
    weights = [w for _, w in MUNICIPALITIES]
    out = []
    for i in range(start, start + count):
        pid, born = person_id(i)
        foreign = rng.random() < 0.09
        if foreign:
            country, language, _ = ORIGINS[rng.randrange(len(ORIGINS))]
            nationalities, tongue = [ALPHA2[country]], language
            moved = DAY - dt.timedelta(days=rng.randint(1, 20 * 365) if rng.random() < 0.8 else rng.randint(1, 3 * 365))
        else:
            nationalities, tongue = ["FI"], "fi" if rng.random() < 0.9 else "sv"
            moved = DAY - dt.timedelta(days=rng.randint(1, 40 * 365))
        record = {
            "event_id": str(uuid.uuid5(NAMESPACE, pid)), "occurred_at": now, "recorded_at": now, "source": "dvv:snapshot", "schema_version": 1,
            "person_id": pid, "change_type": "resident", "municipality_code": rng.choices(municipalities, weights)[0],
            "previous_municipality_code": None, "previous_country": None, "nationalities": nationalities, "mother_tongue": tongue,
            "birth_date": born, "move_date": max(moved, born), "contact_language": None, "dvv_batch_ref": "snapshot",
            "previous_person_id": None, "guardian_in_finland": None, "turvakielto": False, "data_group": "KOTIKUNTA",
            "destination_country": None, "death_date": None, "arrived_in_finland": max(moved, born) if foreign else None,
        }
        out.append(codec.encode("PopulationChange", record))
    return out


def detect_all(values: list[bytes], states, secret: str, window: int, batch: int = 200) -> int:
    """What the detection agent does, minus Kafka (the same validation, `step` and state reads and
    writes per batch). Returns the newcomers found."""
    codec = default_codec()
    now = dt.datetime.now(dt.timezone.utc)
    found_total = 0
    for i in range(0, len(values), batch):
        records = []
        for value in values[i:i + batch]:
            record = codec.decode(value, "PopulationChange").record
            if population_change.validate(record, now=now, municipalities=municipality_codes()):
                raise ValueError(f"the synthetic snapshot made an invalid record: {population_change.validate(record, now=now, municipalities=municipality_codes())[0].reason}")
            records.append((record, person_keys(record, secret)))
        stored = states.get_many({k for _, keys in records for k in keys if k})
        written: dict = {}
        for record, keys in records:
            done = step(record, lambda k, written=written, stored=stored: written[k] if k in written else stored.get(k), secret, window, keys=keys)
            for ev in done.found:
                codec.encode("Newcomer", newcomer_record(ev, done.key, record["recorded_at"]))
            found_total += len(done.found)
            if done.old_key and done.old_key != done.key:
                written[done.old_key] = None
            written[done.key] = done.state
        states.write(written)
    return found_total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=POPULATION, help="persons in the snapshot (default: the whole population, %(default)s)")
    parser.add_argument("--chunk", type=int, default=50_000, help="records generated and detected at a time (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=200, help="records per state read and write, as the agent's batches (default: %(default)s)")
    parser.add_argument("--store", default=None,
                        help="where the states go: a database URL, or `memory` for a dict in this process "
                             "(default: a SQLite file in a temporary directory, the embedded default)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--json-out", metavar="PATH", help="also write the figures as JSON to the file PATH (default: no file is written)")
    args = parser.parse_args(argv)
    settings = Settings.from_env({})
    tmp = tempfile.TemporaryDirectory(prefix="hub-snapshot-")
    store = args.store or f"sqlite:///{Path(tmp.name) / 'hub.sqlite3'}"
    if store == "memory":
        people = MemoryPersonStates()
    else:
        database.upgrade(store)
        people = SqlPersonStates(database.create_engine(store))
    newcomers, elapsed, generating = 0, 0.0, 0.0
    rss_start = rss_mb()
    for start in range(0, args.events, args.chunk):
        t = time.monotonic()
        values = snapshot_records(start, min(args.chunk, args.events - start))
        t2 = time.monotonic()
        newcomers += detect_all(values, people, settings.person_key_secret, settings.newcomer_window_days or DEFAULT_WINDOW_DAYS, args.batch)
        generating, elapsed = generating + t2 - t, elapsed + time.monotonic() - t2
        if not args.json and (start // args.chunk) % 10 == 9:
            print(f"  {start + len(values):>9} persons, {newcomers} newcomers, {elapsed:.0f} s detecting, RSS {rss_mb():.0f} MB", flush=True)
    rate = args.events / elapsed
    state_mb = rss_mb() - rss_start
    if people.count() != args.events:
        raise SystemExit(f"expected {args.events} stored states, found {people.count()}")
    result = {
        "events": args.events, "store": "memory" if store == "memory" else store.split(":", 1)[0], "newcomers": newcomers, "events_per_s": round(rate, 1), "elapsed_s": round(elapsed, 1),
        "generation_s": round(generating, 1), "peak_rss_mb": round(peak_rss_mb(), 1), "state_mb_per_million": round(state_mb / args.events * 1e6, 1),
        "extrapolated_full_s": round(POPULATION / rate, 1), "extrapolated_full_state_mb": round(state_mb / args.events * POPULATION),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(args.json_out, result)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Snapshot through newcomer detection: {args.events} persons, {newcomers} newcomers, states in {result['store']} ({result['machine']})\n"
              f"  {rate:.0f} events/s, {elapsed:.1f} s detecting (+{generating:.1f} s generating), peak RSS {result['peak_rss_mb']} MB\n"
              f"  memory growth: {result['state_mb_per_million']} MB per million persons\n"
              f"  whole population ({POPULATION}): about {result['extrapolated_full_s'] / 60:.1f} min, memory growth about "
              f"{result['extrapolated_full_state_mb']} MB (target <= 10 min)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
