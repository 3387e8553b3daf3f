"""Routing facts from their real publishers, end to end through the shipped commands.

A `hub worker` on PostgreSQL and the broker, with publisher identity; DVV change data through
`hub ingest dvv`; a residence permit signed as Migri and a jobseeker status signed as the employment
authority through `hub publish`. The recipients' topics are read with a plain consumer:

- the employment authority receives its assessment referral, due three years after the FIRST permit
  (not the move-in date); the registration ending withdraws it (`no_longer_applies`) in its sequence;
- a sign-language user and a person of unknown mother tongue get outreach saying so;
- a foreign national first seen on a move between municipalities, inside the integration period by
  DVV's date of moving to Finland, gets outreach from the new municipality;
- the jobseeker's move withdraws the old municipality's referral (`moved`);
- nothing but the hub's detection wrote hub.newcomers.v1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.domain import hetu

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HUB = [sys.executable, "-m", "hub.cli"]
APP_ID = "integration-hub"
HOME, NEW_HOME, MOVER_CAME_FROM = "091", "049", "837"  # Helsinki (employment area 08), Espoo, Tampere
EMPLOYMENT_AREA = "08"
EMPLOYMENT_AUTHORITY = f"employment_authority:{EMPLOYMENT_AREA}"

# test identity codes (serials 900-999); only in files and records, never in process arguments
JOBSEEKER = hetu.make(dt.date(1990, 4, 1), 931)
SIGNER = hetu.make(dt.date(1985, 7, 12), 941)  # mother tongue: sign language (DVV 98)
UNKNOWN_TONGUE = hetu.make(dt.date(1979, 3, 3), 952)  # mother tongue unknown (DVV 99)
MOVER = hetu.make(dt.date(1992, 9, 9), 963)  # first seen on a move, in Finland since 2025-03-01

ARRIVED = dt.date(2026, 11, 3)
FIRST_PERMIT = dt.date(2026, 9, 1)  # the start of the integration period: before the move-in date
REGISTERED, ENDED = dt.date(2026, 11, 20), dt.date(2026, 12, 1)

PUBLISHERS_FILE = f"""publishers:
  - id: {APP_ID}
    key_env: E2E_KEY_HUB
    sources: ["*"]
    authorities: ["*"]
  - id: {EMPLOYMENT_AUTHORITY}
    key_env: E2E_KEY_EMPLOYMENT_AUTHORITY
  - id: migri
    key_env: E2E_KEY_MIGRI
"""
KEYS = {"E2E_KEY_HUB": "h" * 32, "E2E_KEY_EMPLOYMENT_AUTHORITY": "e" * 32, "E2E_KEY_MIGRI": "m" * 32}


# --- DVV change data -------------------------------------------------------------------------------
def _day(value: str | dt.date) -> dict:
    return {"arvo": str(value), "tarkkuus": "PAIVA"}


def _nationality(code: str, how: str = "LISATTY") -> dict:
    active = [{"kansalaisuuskoodi": code, "voimassaolo": "AKTIIVI"}]
    group = {"tietoryhma": "KANSALAISUUS", "muutosattribuutti": how, "henkilonKansalaisuudet": active}
    return {**group, "lisatytKansalaisuudet": active} if how == "LISATTY" else group


def _from_abroad(code: str, tongue: str, country: str) -> dict:
    """An adult foreign national moves to Helsinki from abroad (as hub/adapters/dvv/sample's arrivals)."""
    tongue_group = {"tietoryhma": "AIDINKIELI", "muutosattribuutti": "LISATTY", "kielikoodi": tongue, "alkupv": _day(ARRIVED)}
    if tongue == "98":
        tongue_group.update(kielikoodiISO6392="fse", nimi="suomalainen viittomakieli")
    return {"henkilotunnus": code, "muutospv": "2026-11-16T05:11:00.137Z", "tietoryhmat": [
        {"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": HOME, "kuntaanMuuttopv": _day(ARRIVED), "kuntaanMuuttoPv": _day(ARRIVED)},
        tongue_group,
        _nationality(country),
        {"tietoryhma": "SUOMEEN_MUUTTOPAIVA", "muutosattribuutti": "LISATTY", "suomeenMuuttopv": _day(ARRIVED)},
        {"tietoryhma": "VAKINAINEN_ULKOMAINEN_OSOITE", "muutosattribuutti": "MUUTETTU", "lahiosoite": "Test Street 1", "paikkakunta": "TEST CITY",
         "valtiokoodi": country, "loppupv": _day(ARRIVED - dt.timedelta(days=1))},
    ]}


def _move(code: str, to: str, came_from: str, on: dt.date, muutospv: str, in_finland_since: dt.date | None = None) -> dict:
    """A move between Finnish municipalities (KOTIKUNTA LISATTY + EDELLINEN_KOTIKUNTA MUUTETTU)."""
    groups = [
        {"tietoryhma": "KOTIKUNTA", "muutosattribuutti": "LISATTY", "kuntakoodi": to, "kuntaanMuuttopv": _day(on), "kuntaanMuuttoPv": _day(on)},
        {"tietoryhma": "EDELLINEN_KOTIKUNTA", "muutosattribuutti": "MUUTETTU", "kuntakoodi": came_from, "kunnastaPoisMuuttopv": _day(on - dt.timedelta(days=1))},
        _nationality("804", "LISATIETO"),
    ]
    if in_finland_since:
        groups.append({"tietoryhma": "SUOMEEN_MUUTTOPAIVA", "muutosattribuutti": "LISATIETO", "suomeenMuuttopv": _day(in_finland_since)})
    return {"henkilotunnus": code, "muutospv": muutospv, "tietoryhmat": groups}


def _page(key: int, *changes: dict) -> str:
    return json.dumps({"viimeisinKirjausavain": key, "muutokset": list(changes), "ajanTasalla": True}, ensure_ascii=False, indent=1)


# --- the processes ---------------------------------------------------------------------------------
def _environment(kafka_url: str, database_url: str, data_dir: Path) -> dict[str, str]:
    """The caller's environment without any HUB_* of its own but the production secrets (the e2e conftest's)."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") or k in ("HUB_PERSON_KEY_SECRET", "HUB_DATA_KEYS")}
    publishers = data_dir / "publishers.yaml"
    publishers.write_text(PUBLISHERS_FILE, encoding="utf-8")
    return {**kept, **KEYS, "HUB_KAFKA_URL": kafka_url, "HUB_DATABASE_URL": database_url, "HUB_APP_ID": APP_ID,
            "HUB_PUBLISHERS": str(publishers), "HUB_DATA_DIR": str(data_dir), "HUB_METRICS_PORT": "0", "HUB_LOG_LEVEL": "WARNING",
            "HUB_STARTUP_TIMEOUT": "30"}


class Worker:
    """`hub worker` in its own process group, its output in a log file; stopped (TERM, then KILL) by `stop()`."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([*HUB, "worker"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def _hub(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([*HUB, *args], env=env, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=90,
                         stdin=None if stdin is not None else subprocess.DEVNULL)
    for code in (JOBSEEKER, SIGNER, UNKNOWN_TONGUE, MOVER):
        assert code not in out.stdout + out.stderr, f"`hub {' '.join(args)}` printed an identity code"
    return out


# --- reading the topics ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    topic: str
    name: str
    record: dict
    headers: tuple
    value: bytes


class Topics:
    """Every record of the hub's referral topics and hub.newcomers.v1, from the start, read by a plain
    aiokafka consumer (no group) subscribed by pattern: per-recipient topics appear as the hub makes them."""

    PATTERN = r"^hub\.(referrals\..+|newcomers\.v1|dead-letters\.v1)$"

    def __init__(self, kafka_url: str):
        self.url = kafka_url.split("://", 1)[-1]
        self.by_offset: dict[tuple[str, int, int], Seen] = {}
        self.last_new = time.monotonic()

    async def __aenter__(self) -> "Topics":
        from aiokafka import AIOKafkaConsumer

        from hub.schemas.codec import default_codec

        self.codec = default_codec()
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.url, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                         metadata_max_age_ms=500)
        self.consumer.subscribe(pattern=self.PATTERN)
        await self.consumer.start()
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for m in messages:
                    event = self.codec.decode(m.value, check_bounds=False)
                    # a new topic re-assigns the pattern's partitions, and a consumer without a group reads them again from the start
                    if (m.topic, m.partition, m.offset) not in self.by_offset:
                        self.last_new = time.monotonic()
                    self.by_offset[(m.topic, m.partition, m.offset)] = Seen(m.topic, event.name, event.record, tuple(m.headers or ()), m.value)

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        await self.consumer.stop()

    def quiet_for(self, seconds: float) -> bool:
        """No new record for `seconds`: anything the hub would add after what was awaited has had its chance."""
        return time.monotonic() - self.last_new >= seconds

    @property
    def seen(self) -> list[Seen]:
        return [self.by_offset[k] for k in sorted(self.by_offset)]

    def on(self, topic: str, name: str | None = None, **fields) -> list[dict]:
        return [s.record for s in self.seen if s.topic == topic and (name is None or s.name == name)
                and all(s.record.get(k) == v for k, v in fields.items())]

    def records_on(self, topic: str) -> list[Seen]:
        return [s for s in self.seen if s.topic == topic]

    def summary(self) -> str:
        return "; ".join(f"{s.topic} {s.name} {s.record.get('purpose') or s.record.get('change') or s.record.get('reason')}"
                         f" seq={s.record.get('sequence')} due={s.record.get('due')} cause={s.record.get('cause')} {str(s.record.get('person_key'))[:8]}" for s in self.seen)


def _one(records: list[dict], what: str, seen: "Topics") -> dict:
    assert len(records) == 1, f"expected one {what}, got {len(records)}\nrecords seen: {seen.summary()}"
    return records[0]


# --- the test --------------------------------------------------------------------------------------
def test_facts_from_their_publishers_route_supersede_and_reach_every_newcomer(fresh_kafka_url, own_database_url, tmp_path):
    from hub.adapters.publisher_keys import load
    from hub.domain.publishers import authenticate
    from hub.schemas import topics
    from hub.schemas.codec import default_codec
    from hub.schemas.envelope import envelope

    secret = os.environ["HUB_PERSON_KEY_SECRET"]
    key = {code: hetu.person_key(code, secret) for code in (JOBSEEKER, SIGNER, UNKNOWN_TONGUE, MOVER)}
    env = _environment(fresh_kafka_url, own_database_url, tmp_path)
    codec = default_codec()
    home_topic, new_home_topic = topics.referral_topic(f"municipality:{HOME}"), topics.referral_topic(f"municipality:{NEW_HOME}")
    ea_topic = topics.referral_topic(EMPLOYMENT_AUTHORITY)

    arrivals = tmp_path / "dvv-arrivals.json"
    arrivals.write_text(_page(7100000100, _from_abroad(JOBSEEKER, "uk", "804"), _from_abroad(SIGNER, "98", "804"),
                              _from_abroad(UNKNOWN_TONGUE, "99", "180"),
                              _move(MOVER, HOME, MOVER_CAME_FROM, dt.date(2026, 11, 10), "2026-11-16T05:12:00.000Z", in_finland_since=dt.date(2025, 3, 1))))
    moved = tmp_path / "dvv-jobseeker-moves.json"
    moved.write_text(_page(7100000200, _move(JOBSEEKER, NEW_HOME, HOME, dt.date(2026, 12, 2), "2026-12-02T06:00:00.000Z")))

    def fact(name: str, source: str, on: dt.date, **fields) -> Path:
        record = {**envelope(source, occurred_at=dt.datetime.combine(on, dt.time(9), dt.timezone.utc)), "person_id": JOBSEEKER, **fields}
        path = tmp_path / f"{name}-{fields.get('status', 'permit')}.json"
        path.write_text(codec.to_json(name, record), encoding="utf-8")
        return path

    permit = fact("ResidencePermit", "migri", FIRST_PERMIT, basis="work", first_permit_date=FIRST_PERMIT)
    registered = fact("JobseekerStatus", EMPLOYMENT_AUTHORITY, REGISTERED, status="registered", status_date=REGISTERED, employment_area=EMPLOYMENT_AREA)
    ended = fact("JobseekerStatus", EMPLOYMENT_AUTHORITY, ENDED, status="ended", status_date=ENDED, employment_area=EMPLOYMENT_AREA)

    import sqlalchemy as sa

    database = sa.create_engine(own_database_url)

    def circumstances_of(person_key: str) -> dict | None:
        """Routing's stored circumstances of a person (facts as hub.routing.circumstances.encode writes them)."""
        try:
            with database.connect() as conn:
                row = conn.execute(sa.text("SELECT facts, newcomer FROM person_circumstances WHERE person_key = :k"), {"k": person_key}).first()
        except sa.exc.ProgrammingError:  # not migrated yet: the worker upgrades the database as it starts
            return None
        return None if row is None else {"facts": json.loads(row[0]), "newcomer": row[1]}

    worker = Worker(env, tmp_path / "worker.log")

    async def scenario(seen: Topics) -> None:
        from hub.streams.runner import wait_for

        async def until(condition, what: str, timeout: float = 60) -> None:
            def check() -> bool:
                if not worker.alive():
                    raise AssertionError(f"`hub worker` exited ({worker.proc.returncode}) while waiting for {what}:\n{worker.tail()}")
                return bool(condition())
            try:
                await wait_for(check, timeout, what, poll=0.2)
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\nrecords seen: {seen.summary()}\nworker log:\n{worker.tail()}") from None

        async def hub(*args: str) -> subprocess.CompletedProcess:
            out = await asyncio.to_thread(_hub, env, *args)
            assert out.returncode == 0, f"`hub {' '.join(args)}` exited {out.returncode}: {out.stderr[-2000:]}"
            return out

        # DVV change data through `hub ingest dvv` (signed as the hub)
        out = await hub("ingest", "dvv", str(arrivals))
        assert "0 dead letters" in out.stderr, out.stderr
        await until(lambda: len(seen.on(topics.NEWCOMERS)) >= 4, "the four newcomers of the DVV page")
        await until(lambda: all(seen.on(home_topic, "Referral", person_key=key[c], purpose="outreach") for c in (JOBSEEKER, SIGNER, UNKNOWN_TONGUE, MOVER)),
                    f"the outreach referrals on {home_topic}")

        # the residence permit (signed as Migri), routed before the jobseeker status: a due date is fixed when the referral is made
        await hub("publish", "--topic", topics.RESIDENCE_PERMITS, "--as", "migri", "--key", "migri-client-4711", str(permit))

        def permit_routed() -> bool:
            row = circumstances_of(key[JOBSEEKER])
            return bool(row and row["newcomer"] and (row["facts"].get("res") or {}).get("first") == FIRST_PERMIT.isoformat())
        await until(permit_routed, "routing to take the residence permit with the jobseeker's newcomer")

        await hub("publish", "--topic", topics.JOBSEEKER_STATUS, "--as", EMPLOYMENT_AUTHORITY, "--key", "ea-client-4711", str(registered))
        await until(lambda: seen.on(ea_topic, "Referral", person_key=key[JOBSEEKER]), f"the assessment referral on {ea_topic}")

        # the registration ends: the employment authority's referral no longer applies
        await hub("publish", "--topic", topics.JOBSEEKER_STATUS, "--as", EMPLOYMENT_AUTHORITY, "--key", "ea-client-4711", str(ended))
        await until(lambda: seen.on(ea_topic, "ReferralWithdrawn", person_key=key[JOBSEEKER]), f"the withdrawal on {ea_topic}")

        # the jobseeker moves to Espoo: Helsinki's referral is withdrawn, Espoo reaches them
        await hub("ingest", "dvv", str(moved))
        await until(lambda: seen.on(home_topic, "ReferralWithdrawn", person_key=key[JOBSEEKER]), f"the withdrawal on {home_topic}")
        await until(lambda: seen.on(new_home_topic, "Referral", person_key=key[JOBSEEKER], purpose="outreach"), f"the outreach on {new_home_topic}")
        await until(lambda: seen.quiet_for(1.5), "the topics to go quiet (nothing more after the last awaited record)")

    async def run() -> Topics:
        async with Topics(fresh_kafka_url) as seen:
            try:
                await scenario(seen)
            finally:
                await asyncio.to_thread(worker.stop)
        return seen

    try:
        seen = asyncio.run(run())
    finally:
        worker.stop()
        database.dispose()
    log = worker.tail(20000)
    for code in (JOBSEEKER, SIGNER, UNKNOWN_TONGUE, MOVER):
        assert code not in log, "the worker logged an identity code"

    # the employment authority's assessment referral: due three years after the FIRST permit
    referral = _one(seen.on(ea_topic, "Referral", person_key=key[JOBSEEKER]), "assessment referral", seen)
    assert referral["purpose"] == "initial_assessment" and referral["to"] == EMPLOYMENT_AUTHORITY
    assert referral["due"] == FIRST_PERMIT.replace(year=FIRST_PERMIT.year + 3), (referral["due"], referral["reasons"])
    assert referral["rule"] == "assess-job-seeker" and any("osaamisen ja kotoutumisen palvelutarpeen arviointi" in r for r in referral["reasons"])
    # "registration ended" re-routes: the referral is withdrawn in the recipient's own sequence
    withdrawn = _one(seen.on(ea_topic, "ReferralWithdrawn", person_key=key[JOBSEEKER]), "withdrawal of the assessment", seen)
    assert withdrawn["cause"] == "no_longer_applies" and withdrawn["referral_id"] == referral["referral_id"], withdrawn
    assert withdrawn["purpose"] == "initial_assessment" and withdrawn["to"] == EMPLOYMENT_AUTHORITY
    assert withdrawn["sequence"] == referral["sequence"] + 1, (referral["sequence"], withdrawn["sequence"])
    assert [s.record["sequence"] for s in seen.records_on(ea_topic)] == [referral["sequence"], withdrawn["sequence"]]

    # sign language and unknown mother tongue: outreach that says so
    signer = _one(seen.on(home_topic, "Referral", person_key=key[SIGNER], purpose="outreach"), "outreach of the sign-language user", seen)
    assert any("sign language interpreter" in r for r in signer["reasons"]), signer["reasons"]
    unknown = _one(seen.on(home_topic, "Referral", person_key=key[UNKNOWN_TONGUE], purpose="outreach"), "outreach of the unknown tongue", seen)
    assert any("mother tongue unknown" in r and "interpreter" in r for r in unknown["reasons"]), unknown["reasons"]

    # the first-seen mover is a newcomer of the NEW municipality (in Finland since 2025-03-01)
    mover = _one([n for n in seen.on(topics.NEWCOMERS) if n["person_key"] == key[MOVER]], "newcomer of the first-seen mover", seen)
    assert (mover["change"], mover["municipality_code"], mover["previous_municipality_code"], mover["arrival_date"]) == (
        "arrived", HOME, MOVER_CAME_FROM, dt.date(2025, 3, 1)), {k: mover[k] for k in ("change", "municipality_code", "arrival_date", "reasons")}
    assert seen.on(home_topic, "Referral", person_key=key[MOVER], purpose="outreach")
    assert not seen.on(topics.referral_topic(f"municipality:{MOVER_CAME_FROM}"), person_key=key[MOVER])

    # the move: the old municipality's referral is withdrawn (moved), the new one reaches the person
    old_outreach = _one(seen.on(home_topic, "Referral", person_key=key[JOBSEEKER], purpose="outreach"), "Helsinki outreach of the jobseeker", seen)
    gone = _one(seen.on(home_topic, "ReferralWithdrawn", person_key=key[JOBSEEKER]), "withdrawal of the Helsinki outreach", seen)
    assert gone["cause"] == "moved" and gone["referral_id"] == old_outreach["referral_id"] and NEW_HOME in gone["reason"], gone
    home_sequences = [s.record["sequence"] for s in seen.records_on(home_topic)]
    assert home_sequences == list(range(home_sequences[0], home_sequences[0] + len(home_sequences))), home_sequences  # no gap
    assert seen.on(new_home_topic, "Referral", person_key=key[JOBSEEKER], purpose="outreach")

    # nothing but the hub's detection wrote hub.newcomers.v1: each record signed by the hub, one per detection
    publishers = load(tmp_path / "publishers.yaml", KEYS)
    newcomers = [s for s in seen.seen if s.topic == topics.NEWCOMERS]
    assert sorted((s.record["person_key"], s.record["change"]) for s in newcomers) == sorted(
        [(key[c], "arrived") for c in (JOBSEEKER, SIGNER, UNKNOWN_TONGUE, MOVER)] + [(key[JOBSEEKER], "moved")]), seen.summary()
    for s in newcomers:
        assert authenticate(s.headers, s.value, publishers).publisher == APP_ID and s.record["source"] == "hub:newcomer-detection", s.record
    assert not [s for s in seen.seen if s.topic == topics.DEAD_LETTERS], seen.summary()
