"""Bad input to the command-line inputs, `hub route` and `hub ingest dvv`, as a user runs them.

Hypothesis draws the junk (any text, any JSON, Newcomer objects with any field values); targeted
damage covers invalid identity codes, unknown municipalities, dates in the future and at the end of
the calendar, huge strings and wrong encodings. Good inputs are mixed in and must come out right.
`make test` runs a few hundred lines or changes; `make soak` 10 000.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import strategies as st

from hub.adapters.dvv.ingest import process_page
from hub.adapters.dvv.page import parse_page
from hub.adapters.dvv.synthetic import generate_pages
from hub.domain.population_change import REASONS as DVV_REASONS
from hub.domain import hetu
from hub.schemas.codec import CodecError, default_codec
from hub.schemas import topics
from tests.avro_strategies import draw_many

ROOT = Path(__file__).resolve().parents[2]
HUB = [sys.executable, "-m", "hub.cli"]
ROUTE_CODES = {"invalid_json", "invalid_input", "invalid_field", "invalid_date", "invalid_person_id", "missing_municipality", "unknown_municipality",
               "out_of_bounds"}
SIZES = [pytest.param(400, id="short-400"), pytest.param(10_000, id="soak-10k", marks=pytest.mark.soak)]
SECRET = "fuzz-cli-secret"
NUMERIC_COUNTRIES = [line.split(",")[0] for line in (ROOT / "hub/domain/data/countries_iso3166.csv").read_text(encoding="utf-8").splitlines()[2:]
                     if line[:3].isdigit() and ",XX," not in line]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4), max_leaves=12)
FIELDS = ["event_id", "occurred_at", "person_id", "municipality_code", "birth_date", "arrival_date", "residence_basis", "labour_force_status",
          "guardian_in_finland", "service_needs", "mother_tongue", "contact_language", "nationalities", "turvakielto", "person_key"]
ODD_VALUES = st.one_of(JSON, st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00", "2226-01-01T00:00:00Z", "2126-02-30", "999",
                                              "1" * 100_000, "Ã¤Ã¶", "\udcff", "-1", "091 ", "NaN"]))


def _good_newcomers(now: dt.datetime) -> list[dict]:
    from hub.newcomers.detection import DEFAULT_WINDOW_DAYS, Change, detect, newcomer_record

    codec = default_codec()
    out = []
    for text in generate_pages(changes=400, seed=77, day=(now - dt.timedelta(days=2)).date()):
        for rec, key in process_page(parse_page(text), secret=SECRET, now=now).events:
            _, found = detect(None, Change.from_record(rec), DEFAULT_WINDOW_DAYS)
            for ev in found:
                if ev.change == "arrived" and ev.state.municipality_code and (ev.state.birth_date is None or ev.state.arrival_date is None
                                                                               or ev.state.birth_date <= ev.state.arrival_date):
                    out.append(codec.to_jsonable("Newcomer", newcomer_record(ev, key, now)))
    return out


@pytest.mark.parametrize("n", SIZES)
def test_hub_route_answers_every_line_in_order_and_never_stops(n, tmp_path):
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rng = random.Random(n)
    good = _good_newcomers(now)
    texts = [t for t in draw_many(st.text(max_size=80), n // 4, 1) if t.strip() and "\n" not in t and "\r" not in t]
    values = draw_many(JSON, n // 4, 2)
    damaged = draw_many(st.tuples(st.sampled_from(FIELDS), ODD_VALUES), n // 2, 3)
    lines: list[bytes] = []
    expect: list[tuple[str, str | None]] = []  # ("good", event_id) or ("bad", None)
    for i in range(n):
        r = i % 6
        if r == 0:
            g = good[i % len(good)]
            rec = dict(g, event_id=f"good-{i}")
            lines.append(json.dumps(rec).encode())
            expect.append(("good", rec["event_id"]))
            continue
        if r == 5 and i % 12 == 5:  # nested deeper than any parser recursion goes (hub/schemas/bounds.py)
            lines.append((i % 5 + 1) * 1000 * b"[" + (i % 5 + 1) * 1000 * b"]")
            expect.append(("deep", None))
            continue
        if r == 1 and texts:
            lines.append(rng.choice(texts).encode("utf-8", "surrogatepass"))
        elif r == 2 and values:
            lines.append(json.dumps(rng.choice(values)).encode())
        elif r == 3:  # wrong encoding: a good line in Latin-1 with a non-ASCII text, or raw invalid bytes
            g = dict(good[i % len(good)], event_id=f"latin-{i}", mother_tongue="fiä")
            lines.append(json.dumps(g, ensure_ascii=False).encode("latin-1", "replace") if i % 2 else b"\xff\xfe{\"event_id\": 1}")
        else:
            field, value = rng.choice(damaged)
            g = dict(good[i % len(good)], event_id=f"damaged-{i}")
            g[field] = value
            lines.append(json.dumps(g, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        expect.append(("any", None))
    stdin = b"\n".join(lines) + b"\n"
    out = subprocess.run([*HUB, "route"], input=stdin, capture_output=True, timeout=600, cwd=ROOT, env={**os.environ})
    assert out.returncode == 0, f"hub route stopped with exit {out.returncode}: {out.stderr.decode(errors='replace')[-600:]}"
    answers = [json.loads(line) for line in out.stdout.decode().splitlines()]
    nonblank = [ln for ln in lines if ln.decode("utf-8", "surrogateescape").strip()]
    assert len(answers) == len(nonblank), "one output line per non-blank input line"
    codes = Counter()
    exp = [e for ln, e in zip(lines, expect) if ln.decode("utf-8", "surrogateescape").strip()]
    for (kind, event_id), answer in zip(exp, answers):
        assert set(answer) in ({"event_id", "decisions"}, {"event_id", "error"})
        if "error" in answer:
            codes[answer["error"]["code"]] += 1
            assert answer["error"]["code"] in ROUTE_CODES, f"an imprecise error code: {answer['error']['code']}"
            assert answer["error"]["message"]
        if kind == "good":
            assert answer.get("event_id") == event_id and answer.get("decisions"), "a good newcomer among bad lines was not routed"
        if kind == "deep":
            assert answer["error"]["code"] == "out_of_bounds", answer
    stdout = out.stdout.decode()
    for g in good:
        if g.get("person_id"):
            assert g["person_id"] not in stdout, "an identity code was printed"
    print(f"\nhub route: {len(lines)} lines, {sum(k == 'good' for k, _ in exp)} good routed, errors by code: {dict(codes)}")


# -- hub ingest dvv ---------------------------------------------------------------------------------
def _bad_changes(n: int, now: dt.datetime, rng: random.Random) -> list[tuple[object, set[str]]]:
    """(muutos, reasons allowed) pairs: targeted damage to good arrivals, and hypothesis's junk."""
    base = [c for text in generate_pages(changes=300, seed=99, day=(now - dt.timedelta(days=2)).date()) for c in json.loads(text)["muutokset"]]
    arrivals = [c for c in base if any(g.get("tietoryhma") == "AIDINKIELI" for g in c["tietoryhmat"])]
    junk = draw_many(JSON, max(10, n // 5), 11)
    out = []
    structural = {"malformed_record"} | set(DVV_REASONS)
    for i in range(n):
        c = json.loads(json.dumps(rng.choice(arrivals)))
        kind = i % 8
        if kind == 0:
            pid = c["henkilotunnus"]
            c["henkilotunnus"] = pid[:-1] + ("X" if pid[-1] != "X" else "Y")
            allowed = {"invalid_person_id"}
        elif kind == 1:
            c["tietoryhmat"][0]["kuntakoodi"] = "999"
            allowed = {"unknown_municipality"}
        elif kind == 2:
            c["tietoryhmat"][0]["kuntaanMuuttopv"] = {"arvo": "2100-01-01", "tarkkuus": "PAIVA"}
            allowed = {"future_date"}
        elif kind == 3:
            c["muutospv"] = "2100-01-01T00:00:00.000Z"
            allowed = {"future_date"}
        elif kind == 4:
            c["henkilotunnus"] = "1" * 100_000
            allowed = {"invalid_person_id", "malformed_record", "out_of_bounds"}
        elif kind == 5:
            c["tietoryhmat"][0]["kuntakoodi"] = "0" * 100_000
            allowed = {"unknown_municipality", "malformed_record", "out_of_bounds"}
        elif kind == 6:
            field, value = rng.choice(["muutospv", "tietoryhmat", "henkilotunnus"]), rng.choice(junk)
            # a change without data groups carries nothing to publish and is skipped by design, like one with only unknown groups
            c[field] = value if (field, value) != ("tietoryhmat", []) else "x"
            allowed = structural
        elif i % 16 == 7:  # more nationalities than the hub's bounds allow (hub/schemas/bounds.py)
            c["tietoryhmat"].append({"tietoryhma": "KANSALAISUUS", "muutosattribuutti": "LISATTY",
                                     "henkilonKansalaisuudet": [{"kansalaisuuskoodi": n, "voimassaolo": "AKTIIVI"} for n in NUMERIC_COUNTRIES[:70]]})
            allowed = {"out_of_bounds"}
        else:
            c = rng.choice(junk)
            allowed = structural
        out.append((c, allowed))
    return out


async def _dead_letters_at(url: str, location_prefix: str, topic: str = topics.DEAD_LETTERS) -> list[dict]:
    """Dead letters whose location starts with the prefix (or, with location_prefix=None, every record of `topic`)."""
    codec = default_codec()
    consumer = AIOKafkaConsumer(bootstrap_servers=url.split("://", 1)[-1], enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                                fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out = []
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for m in msgs:
                    try:
                        rec = codec.decode(m.value).record
                    except CodecError:  # other tests' malformed records on the shared broker
                        continue
                    if location_prefix is None or (rec.get("location") or "").startswith(location_prefix):
                        out.append(rec)
        return out
    finally:
        await consumer.stop()


@pytest.mark.parametrize("n", SIZES)
def test_hub_ingest_dvv_dead_letters_every_bad_change_with_its_bytes_and_publishes_the_good(n, kafka_url, tmp_path):
    import asyncio

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rng = random.Random(n)
    bad = _bad_changes(n, now, rng)
    good = [c for text in generate_pages(changes=max(20, n // 10), seed=5, day=(now - dt.timedelta(days=2)).date()) for c in json.loads(text)["muutokset"]]
    good_ok = [c for c in good if process_page(parse_page(json.dumps({"muutokset": [c], "viimeisinKirjausavain": 1, "ajanTasalla": True})),
                                                           secret=SECRET, now=now).events]
    changes = [(c, allowed) for c, allowed in bad] + [(c, None) for c in good_ok]
    rng.shuffle(changes)
    path = tmp_path / f"fuzz-{uuid.uuid4().hex[:6]}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for lo in range(0, len(changes), 200):
            chunk = [c for c, _ in changes[lo:lo + 200]]
            f.write(json.dumps({"viimeisinKirjausavain": 1000 + lo, "muutokset": chunk, "ajanTasalla": lo + 200 >= len(changes)}, ensure_ascii=False) + "\n")
    env = {**os.environ, "HUB_KAFKA_URL": kafka_url, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_PERSON_KEY_SECRET": SECRET}
    out = subprocess.run([*HUB, "ingest", "dvv", "--quiet", str(path)], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 3, f"expected exit 3 (some records dead-lettered), got {out.returncode}: {hetu.scrub(out.stderr[-600:])}"
    letters = asyncio.run(_dead_letters_at(kafka_url, str(path)))
    by_bytes = {}
    for d in letters:
        by_bytes.setdefault(bytes(d["original_value"]), []).append(d)
    problems = Counter()
    reasons = Counter()
    missing: list[str] = []
    for c, allowed in changes:
        original = json.dumps(c, ensure_ascii=False).encode("utf-8")
        got = by_bytes.get(original, [])
        if allowed is None:
            if got:
                problems["a good change was dead-lettered"] += 1
            continue
        if not got:
            problems["a bad change is not in the dead letters with its original bytes"] += 1
            missing.append(hetu.scrub(original.decode()[:300]))
            continue
        reasons[got[0]["reason"]] += 1
        if got[0]["reason"] not in allowed:
            problems[f"reason {got[0]['reason']} where {sorted(allowed)} was expected"] += 1
    assert not problems, f"{dict(problems)}; e.g. {missing[:3]}"
    assert len(letters) <= len(bad), "more dead letters than bad changes"
    # the good changes among them were published, every event of each
    expected = {str(rec["event_id"]) for c in good_ok for rec, _ in process_page(parse_page(json.dumps(
        {"muutokset": [c], "viimeisinKirjausavain": 1, "ajanTasalla": True})), secret=SECRET, now=now).events}
    published = {str(r["event_id"]) for r in asyncio.run(_dead_letters_at(kafka_url, None, topics.POPULATION_CHANGES))}
    assert expected and expected <= published, f"{len(expected - published)} events of good changes were not published"
    print(f"\nhub ingest dvv: {len(bad)} bad changes dead-lettered by reason {dict(reasons)}; {len(good_ok)} good changes published")


def test_hub_ingest_dvv_a_page_in_the_wrong_encoding_stops_the_run_and_keeps_the_bytes(kafka_url, tmp_path):
    import asyncio

    now = dt.datetime.now(dt.timezone.utc)
    page = generate_pages(changes=5, seed=3, day=(now - dt.timedelta(days=2)).date())[0]
    data = json.loads(page)
    data["muutokset"][0]["tietoryhmat"].append({"tietoryhma": "HENKILON_NIMI", "muutosattribuutti": "MUUTETTU", "etunimi": "Äänis", "sukunimi": "Öljy"})
    raw = json.dumps(data, ensure_ascii=False).encode("latin-1")
    path = tmp_path / "latin1.json"
    path.write_bytes(raw)
    env = {**os.environ, "HUB_KAFKA_URL": kafka_url, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_PERSON_KEY_SECRET": SECRET}
    out = subprocess.run([*HUB, "ingest", "dvv", "--quiet", str(path)], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode in (1, 3), f"exit {out.returncode}: {hetu.scrub(out.stderr[-600:])}"
    assert "Traceback" not in out.stderr
    letters = asyncio.run(_dead_letters_at(kafka_url, str(path)))
    assert letters and all(d["reason"] in ("malformed_page", "malformed_record") for d in letters), [d["reason"] for d in letters]
    assert any(bytes(d["original_value"]) in raw for d in letters), "the dead letter does not keep the bytes as they were"
