"""One record that fails for its own reasons never stalls a stream (real broker, real PostgreSQL).

A routing batch with poison newcomers in the middle: values over the declared input bounds (70
nationalities for a VARCHAR(200), a NUL character, a 200-character person key) are dead-lettered
`out_of_bounds` as they are decoded; a newcomer whose ledger write the database refuses anyway
(DataError: defence in depth behind the bounds) makes the batch narrow down to it, and it is
dead-lettered `unprocessable`. Each with its bytes; the newcomers before and after are referred.
A ~1 MB invalid record: its dead letter is too large for the topic, so it is kept whole in the
database and the record on the topic points at it; later records flow. A referral status with a NUL
in its id (a faust agent) is dead-lettered and the next status applies. The dead-letter metric
equals the dead letters on the topic.
"""

import asyncio
import base64
import datetime as dt
import json
import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from hub import metrics
from hub.adapters import database
from hub.adapters.dead_letter_store import DeadLetterStore, row_id_of
from hub.adapters.referral_ledger import ReferralLedger
from hub.config import Settings
from hub.schemas import topics
from hub.streams.pipeline import hub_app
from hub.schemas.envelope import envelope
from hub.streams.routing_agents import register
from hub.streams.runner import running, wait_for
from tests.conftest import TEST_DATA_KEY
from tests.kafka_helpers import decoded, produce, read_topic
from tests.records import population_change

pytestmark = pytest.mark.integration

COUNTRIES = ("AF AL DZ AD AO AR AM AU AT AZ BS BH BD BB BY BE BZ BJ BT BO BA BW BR BN BG BF BI KH CM CA CV CF TD CL CN CO KM CG CR HR "
             "CU CY CZ DK DJ DM DO EC EG SV GQ ER EE SZ ET FJ FR GA GM GE DE GH GR GD GT GN GW GY HT HN HU IS IN ID IR IQ IE").split()


def newcomer(person_key: str, **fields) -> dict:
    rec = envelope("hub:newcomer-detection", occurred_at=dt.datetime(2025, 6, 15, 9, tzinfo=dt.timezone.utc))
    rec.update(person_key=person_key, municipality_code="092", nationalities=["SY"])
    rec.update(fields)
    return rec


async def send_all(url: str, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    """Publish in order, allowing records of a few MB (the hub's producers stay at their limits)."""
    await produce(url, topic, items, max_request_size=4 * 1024 * 1024)


def dead_letter_count(reason: str) -> float:
    return metrics.dead_letters.labels(reason)._value.get()


@pytest.fixture
def db_url(own_database_url):
    database.upgrade(own_database_url)
    return own_database_url


def test_poison_newcomers_in_a_routing_batch_are_dead_lettered_and_the_others_referred(fresh_kafka_url, db_url):
    uid = uuid.uuid4().hex[:8]
    goods = [f"pk-good{i}-{uid}" for i in range(4)]
    refused = f"pk-refused-{uid}"
    poisons = [
        newcomer(f"pk-nationalities-{uid}", nationalities=COUNTRIES[:70]),  # 209 characters for a VARCHAR(200)
        newcomer(f"pk-nul\x00-{uid}"),  # PostgreSQL text cannot hold a NUL
        newcomer("p" * 200),  # person_key is a VARCHAR(128)
        newcomer(refused),  # within the bounds; the database refuses its row all the same
    ]
    settings = Settings(app_id=f"poison-routing-{uid}", database_url=db_url)
    engine = database.create_engine(db_url)
    before = dead_letter_count("unprocessable") + dead_letter_count("out_of_bounds")

    class RefusingLedger(ReferralLedger):
        def record_many(self, items, now):
            if any(n.person_key == refused for n, _ in items):
                raise sa.exc.DataError("INSERT INTO referrals ...", {}, Exception("value refused"))
            return super().record_many(items, now)

    async def scenario():
        hub = hub_app(settings, fresh_kafka_url)
        seen = register(hub, ledger=RefusingLedger(engine), batch_size=100)
        consumer = hub.batch_consumers[-1]
        records = [newcomer(goods[0]), poisons[0], newcomer(goods[1]), poisons[1], newcomer(goods[2]), poisons[2], poisons[3], newcomer(goods[3])]
        values = [hub.codec.encode("Newcomer", r) for r in records]
        await send_all(fresh_kafka_url, topics.NEWCOMERS, [(r["person_key"].encode(), v) for r, v in zip(records, values)])
        async with running(hub):
            await wait_for(lambda: seen.consumed[(topics.NEWCOMERS, "routed")] == 4 and consumer.isolated == 1, 90,
                           "the four good newcomers routed, the refused one isolated")
            await consumer.committed()
        return values, seen, consumer

    values, seen, consumer = asyncio.run(scenario())
    try:
        referred = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.referral_topic("municipality:092"), min_count=4)))
        assert sorted(r["person_key"] for r in referred) == sorted(goods)  # before and after each poison record
        dead = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=4)))
        by_value = {d["original_value"]: d for d in dead}
        assert sorted(by_value) == sorted([values[1], values[3], values[5], values[6]])  # the original bytes, unchanged
        assert [by_value[values[i]]["reason"] for i in (1, 3, 5, 6)] == ["out_of_bounds"] * 3 + ["unprocessable"]
        assert "DataError" in by_value[values[6]]["message"]  # the error's type, never its text
        assert all("\x00" not in d["message"] for d in dead)
        assert consumer.retries == 0  # narrowed down, not read again
        assert seen.dead_letters["unprocessable"] == 1 and seen.dead_letters["out_of_bounds"] == 3
        assert dead_letter_count("unprocessable") + dead_letter_count("out_of_bounds") - before == len(dead)  # counts the dead letters that exist
    finally:
        engine.dispose()


def test_a_megabyte_invalid_record_is_kept_in_the_database_and_later_records_flow(fresh_kafka_url, db_url):
    uid = uuid.uuid4().hex[:8]
    settings = Settings(app_id=f"poison-large-{uid}", database_url=db_url)
    engine = database.create_engine(db_url)
    big = b"\x07" + bytes(range(256)) * 4096  # ~1 MB, not Avro: dead letter `wrong_magic`
    before = dead_letter_count("wrong_magic")

    async def scenario():
        hub = hub_app(settings, fresh_kafka_url)
        seen = register(hub, ledger=ReferralLedger(engine), batch_size=100)
        after = newcomer(f"pk-after-{uid}")
        await send_all(fresh_kafka_url, topics.NEWCOMERS, [(b"big-key", big), (after["person_key"].encode(), hub.codec.encode("Newcomer", after))])
        async with running(hub):
            await wait_for(lambda: seen.consumed[(topics.NEWCOMERS, "routed")] == 1, 90, "the newcomer after the large record routed")
        return seen

    seen = asyncio.run(scenario())
    try:
        assert seen.dead_letters["wrong_magic"] == 1
        (dead,) = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=1)))
        assert dead["reason"] == "wrong_magic" and dead["original_value"] == b"" and dead["original_offset"] == 0
        row_id = row_id_of(dead["location"])
        assert row_id is not None and f"hub dead-letters show {row_id}" in dead["message"]
        kept = DeadLetterStore(engine).get(row_id)
        assert kept["original_value"] == big and kept["original_key"] == b"big-key" and kept["reason"] == "wrong_magic"
        assert kept["original_topic"] == topics.NEWCOMERS and kept["original_offset"] == 0 and str(dead["event_id"]) == kept["event_id"]
        with engine.connect() as conn:  # sealed at rest
            raw = conn.execute(sa.text("SELECT original_value FROM dead_letters WHERE id = :id"), {"id": row_id}).scalar_one()
        assert bytes(range(256)) * 4 not in bytes(raw)
        shown = subprocess.run([sys.executable, "-m", "hub.cli", "dead-letters", "show", str(row_id)], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "HUB_DATABASE_URL": db_url, "HUB_DATA_KEYS": TEST_DATA_KEY}, stdin=subprocess.DEVNULL)
        assert shown.returncode == 0, shown.stderr
        printed = json.loads(shown.stdout)
        assert base64.b64decode(printed["original_value_base64"]) == big and printed["reason"] == "wrong_magic" and printed["id"] == row_id
        missing = subprocess.run([sys.executable, "-m", "hub.cli", "dead-letters", "show", str(row_id + 1000)], capture_output=True, text=True,
                                 timeout=120, env={**os.environ, "HUB_DATABASE_URL": db_url, "HUB_DATA_KEYS": TEST_DATA_KEY}, stdin=subprocess.DEVNULL)
        assert missing.returncode == 1 and missing.stderr.startswith("Error: no dead letter") and "Traceback" not in missing.stderr
        assert dead_letter_count("wrong_magic") - before == 1
    finally:
        engine.dispose()


def test_a_status_with_a_nul_and_a_megabyte_status_are_dead_lettered_and_the_next_status_applies(fresh_kafka_url, db_url):
    """The referral-status stream is a faust agent: a status with a NUL in its id (out of bounds), one
    whose write the database refuses and an invalid ~1 MB record are dead-lettered (the large one kept
    in the database), the agent goes on."""
    uid = uuid.uuid4().hex[:8]
    settings = Settings(app_id=f"poison-status-{uid}", database_url=db_url)
    engine = database.create_engine(db_url)

    class RefusingLedger(ReferralLedger):  # a status within the bounds whose write the database refuses all the same
        def apply_status(self, record, now):
            if record["referral_id"].endswith("-refused"):
                raise sa.exc.DataError("UPDATE referrals ...", {}, Exception("value refused"))
            return super().apply_status(record, now)

    ledger = RefusingLedger(engine)
    big = b"\x07" + b"x" * (1024 * 1024)
    reasons = ("out_of_bounds", "unprocessable", "wrong_magic")
    before = sum(dead_letter_count(r) for r in reasons)

    def status(referral_id: str, state: str) -> dict:
        rec = envelope("municipality:092")
        rec.update(referral_id=referral_id, authority="municipality:092", status=state, reason=None)
        return rec

    async def scenario():
        hub = hub_app(settings, fresh_kafka_url)
        seen = register(hub, ledger=ledger, batch_size=100)
        pk = f"pk-status-{uid}"
        async with running(hub):
            await hub.publisher.publish(topics.NEWCOMERS, "Newcomer", newcomer(pk), key=pk)
            (referral,) = decoded(await read_topic(fresh_kafka_url, topics.referral_topic("municipality:092"), min_count=1))
            rid = referral["referral_id"]
            items = [(b"nul", hub.codec.encode("ReferralStatus", status(rid + "\x00", "accepted"))),
                     (b"refused", hub.codec.encode("ReferralStatus", status(rid + "-refused", "accepted"))), (b"big", big),
                     (rid.encode(), hub.codec.encode("ReferralStatus", status(rid, "accepted")))]
            await send_all(fresh_kafka_url, topics.REFERRAL_STATUS, items)
            await wait_for(lambda: seen.consumed[(topics.REFERRAL_STATUS, "applied")] == 1, 90, "the status after the poison ones applied")
        return rid, items

    rid, items = asyncio.run(scenario())
    try:
        assert ledger.state(rid) == "accepted"
        dead = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=3)))
        assert [(d["reason"], d["original_offset"]) for d in dead] == [("out_of_bounds", 0), ("unprocessable", 1), ("wrong_magic", 2)]
        assert dead[0]["original_value"] == items[0][1] and "\x00" not in dead[0]["message"]
        assert dead[1]["original_value"] == items[1][1] and "DataError" in dead[1]["message"]
        assert dead[2]["original_value"] == b"" and DeadLetterStore(engine).get(row_id_of(dead[2]["location"]))["original_value"] == big
        assert sum(dead_letter_count(r) for r in reasons) - before == len(dead)
    finally:
        engine.dispose()


def test_detection_dead_letters_a_change_whose_state_the_database_refuses_and_the_batch_goes_on(fresh_kafka_url, db_url):
    """Detection's batch: the states' write fails for one person (here the real store, made to refuse
    that person's row as PostgreSQL refuses a value it cannot hold), and a ~1 MB invalid change sits
    in the same batch. The batch is narrowed down: that change is dead-lettered (`unprocessable`),
    the large one kept in the database, every other person's newcomer is published and state written."""
    from hub.adapters.person_states import SqlPersonStates
    from hub.domain import hetu
    from hub.streams import newcomer_agents

    secret = "test-secret"
    uid = uuid.uuid4().hex[:8]
    persons = [hetu.make(dt.date(1981 + i, 3, 4), 910 + i) for i in range(4)]
    refused_key = hetu.person_key(persons[2], secret)
    engine = database.create_engine(db_url)

    class RefusingStates(SqlPersonStates):
        def write(self, changes):
            if refused_key in changes:
                raise sa.exc.DataError("INSERT INTO person_states ...", {}, Exception("value refused"))
            return super().write(changes)

    big = b"\x07" + b"y" * (1024 * 1024)

    async def scenario():
        hub = hub_app(Settings(app_id=f"poison-detection-{uid}", person_key_secret=secret, database_url=db_url), fresh_kafka_url)
        seen = newcomer_agents.register(hub, states=RefusingStates(engine), batch_size=100)
        consumer = hub.batch_consumers[-1]
        records = [population_change(p) for p in persons]
        values = [hub.codec.encode("PopulationChange", r) for r in records]
        items = [(hetu.person_key(p, secret).encode(), v) for p, v in zip(persons, values)]
        await send_all(fresh_kafka_url, topics.POPULATION_CHANGES, items[:2] + [(b"big", big)] + items[2:])
        async with running(hub):
            await wait_for(lambda: sum(seen.newcomers.values()) == 3 and consumer.isolated == 1, 90, "three newcomers, one change isolated")
            await consumer.committed()
        return values, consumer

    values, consumer = asyncio.run(scenario())
    try:
        out = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.NEWCOMERS, min_count=3)))
        assert {r["person_id"] for r in out} >= {persons[0], persons[1], persons[3]}  # a failed try's newcomer may repeat (same event id)
        states = SqlPersonStates(engine).get_many([hetu.person_key(p, secret) for p in persons])
        assert set(states) == {hetu.person_key(p, secret) for p in (persons[0], persons[1], persons[3])}
        dead = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=2)))
        assert sorted(d["reason"] for d in dead) == ["unprocessable", "wrong_magic"]  # each once, though its batch was handled several times
        refused = next(d for d in dead if d["reason"] == "unprocessable")
        assert refused["original_value"] == values[2] and "DataError" in refused["message"]
        large = next(d for d in dead if d["reason"] == "wrong_magic")
        assert large["original_value"] == b"" and DeadLetterStore(engine).get(row_id_of(large["location"]))["original_value"] == big
        assert consumer.retries == 0
    finally:
        engine.dispose()


def test_a_database_outage_is_waited_out_and_nothing_is_dead_lettered(fresh_kafka_url, db_url, pg_admin_url):
    """The ledger's database refuses connections (an outage, not the records' fault) while newcomers
    arrive: nothing is dead-lettered, the batch is read again with growing pauses, and once the
    database is back every newcomer is referred."""
    uid = uuid.uuid4().hex[:8]
    name = sa.engine.make_url(db_url).database
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    engine = database.create_engine(db_url)
    pks = [f"pk-outage{i}-{uid}" for i in range(3)]

    def connections(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})

    async def scenario():
        hub = hub_app(Settings(app_id=f"poison-outage-{uid}", database_url=db_url), fresh_kafka_url)
        seen = register(hub, ledger=ReferralLedger(engine), batch_size=100)
        consumer = hub.batch_consumers[-1]
        async with running(hub):
            connections(False)
            try:
                for pk in pks:
                    await hub.publisher.publish(topics.NEWCOMERS, "Newcomer", newcomer(pk), key=pk)
                await wait_for(lambda: consumer.retries >= 2, 60, "the batch read again during the outage")
                assert seen.consumed[(topics.NEWCOMERS, "routed")] == 0 and consumer.isolated == 0
            finally:
                connections(True)
            await wait_for(lambda: seen.consumed[(topics.NEWCOMERS, "routed")] == 3, 90, "every newcomer after the outage")
        return consumer

    try:
        consumer = asyncio.run(scenario())
        assert consumer.isolated == 0
        assert asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, timeout=2)) == []
        referred = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.referral_topic("municipality:092"), min_count=3)))
        assert sorted({r["person_key"] for r in referred}) == sorted(pks)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_a_megabyte_invalid_consent_record_is_kept_in_the_database_and_the_next_consent_applies(fresh_kafka_url, db_url):
    """The consents are read by a batch consumer: an invalid ~1 MB record on hub.consents.v1 (its dead
    letter too large for the topic) is kept in the database, and the consent after it is applied."""
    from hub.domain import hetu
    from hub.streams import consent_agents

    uid = uuid.uuid4().hex[:8]
    settings = Settings(app_id=f"poison-consent-{uid}", database_url=db_url, person_key_secret="test-secret")
    engine = database.create_engine(db_url)
    big = b"\x07" + b"z" * (1024 * 1024)
    granted = metrics.events_consumed.labels(topic=topics.CONSENTS, outcome="granted")
    before = granted._value.get()
    grant = envelope("municipality:091")
    grant.update(consent_id=f"c-{uid}", person_id=hetu.make(dt.date(1985, 5, 6), 931), action="granted", purpose="integration_plan",
                 data_categories=["education"], recipients=["employment_authority:08"], valid_from=None, valid_until=None,
                 evidence="form 2026-17", recorded_by="municipality:091")

    async def scenario():
        hub = hub_app(settings, fresh_kafka_url)
        consent_agents.register(hub, database.session_factory(engine), relay=False)
        await send_all(fresh_kafka_url, topics.CONSENTS, [(b"big", big), (b"c", hub.codec.encode("Consent", grant))])
        async with running(hub):
            await wait_for(lambda: granted._value.get() == before + 1, 90, "the consent after the large record applied")

    try:
        asyncio.run(scenario())
        (dead,) = decoded(asyncio.run(read_topic(fresh_kafka_url, topics.DEAD_LETTERS, min_count=1)))
        assert dead["reason"] == "wrong_magic" and dead["original_value"] == b"" and dead["original_topic"] == topics.CONSENTS
        assert DeadLetterStore(engine).get(row_id_of(dead["location"]))["original_value"] == big
    finally:
        engine.dispose()
