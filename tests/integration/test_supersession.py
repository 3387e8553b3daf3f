"""Supersession is announced, on the real broker and the real PostgreSQL, from the population
changes on: a newcomer of Helsinki (091) moves to Espoo (049), and Helsinki's referral topic gets
a ReferralWithdrawn with its next sequence number; a newcomer's identity code is corrected, and
the referrals made under the old code are withdrawn and re-issued under the new one. The
recipient's gap check over its topic finds no gap; `hub resend` sends the withdrawals again."""

import asyncio
import datetime as dt

import pytest

from hub import metrics
from hub.adapters import database
from hub.adapters.referral_ledger import ReferralLedger
from hub.adapters.resend import gaps, resend
from hub.config import Settings
from hub.domain import hetu
from hub.schemas import topics
from hub.schemas.codec import default_codec
from hub.schemas.envelope import envelope
from hub.streams import newcomer_agents, routing_agents
from hub.streams.app import HubApp
from hub.streams.runner import running, wait_for
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration
SECRET = "test-secret-supersession"
HELSINKI = "municipality:091"


def change(pid, change_type="immigration", muni="091", **kw):
    rec = envelope("dvv:test", dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc))
    rec.update(person_id=pid, change_type=change_type, municipality_code=muni, previous_country="SY" if change_type == "immigration" else None,
               nationalities=["SY"], mother_tongue="ar", move_date=dt.date(2025, 2, 20))
    rec.update(kw)
    return rec


def records(messages) -> list[tuple[str, dict, dict]]:
    codec = default_codec()
    return [(e.name, e.record, dict(m.headers)) for m in messages for e in [codec.decode(m.value)]]


def test_a_move_and_an_identity_code_correction_withdraw_referrals_on_the_old_recipients_topic(fresh_kafka_url, own_database_url):
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    ledger = ReferralLedger(engine)
    mover, corrected = hetu.make(dt.date(1990, 1, 1), 901), hetu.make(dt.date(1991, 2, 2), 902)
    new_code = hetu.make(dt.date(1991, 2, 2), 904)
    key = {pid: hetu.person_key(pid, SECRET) for pid in (mover, corrected, new_code)}
    helsinki_topic = topics.referral_topic(HELSINKI)

    moved_before = metrics.referrals_withdrawn.labels(HELSINKI, "moved")._value.get()

    async def scenario():
        hub = HubApp(Settings(app_id="supersession-it", person_key_secret=SECRET), fresh_kafka_url)
        newcomer_agents.register(hub, database_url=own_database_url)
        seen = routing_agents.register(hub, ledger=ledger)

        def routed():
            return seen.consumed[(topics.NEWCOMERS, "routed")]

        async def send(rec, key_of):
            await (await hub.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", rec, key=key[key_of]))

        async with running(hub):
            await send(change(mover), mover)
            await send(change(corrected), corrected)
            await wait_for(lambda: routed() == 2, 90, "both arrivals routed")
            before = records(await read_topic(fresh_kafka_url, helsinki_topic, 1))
            mover_refs = [r for name, r, _ in before if r["person_key"] == key[mover]]
            assert mover_refs and all(name == "Referral" for name, _, _ in before)

            await send(change(mover, "move_in", "049", previous_municipality_code="091"), mover)
            await wait_for(lambda: routed() == 3, 90, "the move routed")
            after_move = records(await read_topic(fresh_kafka_url, helsinki_topic, len(before) + len(mover_refs)))
            withdrawn = [(r, h) for name, r, h in after_move if name == "ReferralWithdrawn"]
            assert sorted(r["referral_id"] for r, _ in withdrawn) == sorted(r["referral_id"] for r in mover_refs)
            assert all(r["cause"] == "moved" and r["reason"] == "moved to municipality 049" and r["to"] == HELSINKI for r, _ in withdrawn)
            assert min(r["sequence"] for r, _ in withdrawn) == max(r["sequence"] for _, r, _ in before) + 1  # the recipient's next number
            assert all(h["ce_type"] == b"fi.integrationhub.ReferralWithdrawn.v1" and h["ce_id"] == str(r["event_id"]).encode() for r, h in withdrawn)
            assert all(ledger.state(r["referral_id"]) == "superseded" for r in mover_refs)
            assert metrics.referrals_withdrawn.labels(HELSINKI, "moved")._value.get() == moved_before + len(mover_refs)

            # the identity code is corrected (DVV keys the correction by the replaced code)
            await send(change(new_code, "identity_correction", None, previous_person_id=corrected, previous_country=None), corrected)
            await wait_for(lambda: routed() == 4, 90, "the correction routed")
            old_refs = [r for _, r, _ in before if r["person_key"] == key[corrected]]
            final = records(await read_topic(fresh_kafka_url, helsinki_topic, len(after_move) + 2 * len(old_refs)))
            again = [r for name, r, _ in final if name == "ReferralWithdrawn" and r["person_key"] == key[corrected]]
            reissued = {r["referral_id"]: r for name, r, _ in final if name == "Referral" and r["person_key"] == key[new_code]}
            assert old_refs and sorted(r["referral_id"] for r in again) == sorted(r["referral_id"] for r in old_refs)
            assert all(r["cause"] == "identity_corrected" and r["replaced_by"] in reissued for r in again)
            assert {r["person_id"] for r in reissued.values()} == {new_code}  # the recipient learns the corrected code
            sequences = [r["sequence"] for _, r, _ in final]
            assert len(sequences) == len(set(sequences)) and gaps(sequences) == []  # referrals and withdrawals: one numbering
            assert {r.person_key for r in ledger.open_referrals(HELSINKI)} <= {key[new_code]}

        # hub resend: a gap at a withdrawal is filled with the withdrawal itself
        first_withdrawal = min(r["sequence"] for r, _ in withdrawn)
        sent = await resend(ledger, fresh_kafka_url, HELSINKI, first_withdrawal, first_withdrawal)
        assert sent == [first_withdrawal]
        event_id = next(r["event_id"] for r, _ in withdrawn if r["sequence"] == first_withdrawal)
        everything = records(await read_topic(fresh_kafka_url, helsinki_topic, len(final) + 1))
        assert len(everything) == len(final) + 1  # the same event id twice: the recipient drops the repeat
        assert [(name, r["sequence"]) for name, r, _ in everything if r["event_id"] == event_id] == [("ReferralWithdrawn", first_withdrawal)] * 2

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
