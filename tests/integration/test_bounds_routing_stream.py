"""Records over their declared bounds (hub/schemas/bounds.py) on the routing stream, with the real
broker and PostgreSQL: each is dead-lettered with `out_of_bounds` before it reaches a database
column it would break (VARCHAR(200) of nationalities, VARCHAR(128) of person_key, a NUL, which
PostgreSQL refuses), and the good records after it are routed and applied."""

import asyncio
import uuid

import pytest

from hub.adapters import database
from hub.adapters.referral_ledger import ReferralLedger
from hub.config import Settings
from hub.schemas.codec import default_codec
from hub.streams.pipeline import hub_app
from hub.schemas.envelope import envelope
from hub.streams.routing_agents import register
from hub.streams.runner import running, wait_for
from hub.schemas.topics import DEAD_LETTERS, referral_topic
from tests.e2e.test_fuzz_cli_inputs import _dead_letters_at as dead_letters_at
from tests.integration.test_routing_flow import newcomer

pytestmark = pytest.mark.integration


def test_newcomers_and_statuses_over_bounds_are_dead_lettered_and_the_good_ones_after_them_flow(kafka_url, database_url):
    database.upgrade(database_url)
    uid = uuid.uuid4().hex[:8]
    names = {"newcomers": f"test.{uid}.newcomers", "status": f"test.{uid}.referral-status"}
    engine = database.create_engine(database_url)
    ledger = ReferralLedger(engine)
    codec = default_codec()

    async def scenario():
        hub = hub_app(Settings(app_id=f"bounds-test-{uid}"), kafka_url)
        seen = register(hub, ledger=ledger, newcomers_topic=names["newcomers"], status_topic=names["status"],
                        topic_for=lambda a: f"test.{uid}.{referral_topic(a)}")
        async with running(hub):
            over = [
                newcomer(f"pk-nat-{uid}", nationalities=["FI", "SE", "EE", "NO", "DK"] * 14),  # 70: joined, over VARCHAR(200)
                newcomer("k" * 129 + uid),  # over person_key VARCHAR(128)
                newcomer(f"pk-\x00-{uid}"),  # PostgreSQL refuses NUL in text
            ]
            for rec in over:
                await hub.publisher.publish(names["newcomers"], "Newcomer", rec, key=f"over-{uid}")
            good_key = f"pk-good-{uid}"
            await hub.publisher.publish(names["newcomers"], "Newcomer", newcomer(good_key), key=good_key)
            await wait_for(lambda: seen.consumed[(names["newcomers"], "routed")] == 1, 60, "the good newcomer after three over bounds routed")
            assert seen.consumed[(names["newcomers"], "dead_letter")] == 3 and seen.dead_letters["out_of_bounds"] == 3

            referral = next(r for r in ledger.open_referrals("municipality:092") if r.person_key == good_key)
            nul = envelope("municipality:092")
            nul.update(referral_id=referral.referral_id + "\x00", authority="municipality:092", status="accepted", reason=None)
            await hub.publisher.publish(names["status"], "ReferralStatus", nul, key=referral.referral_id)
            ok = envelope("municipality:092")
            ok.update(referral_id=referral.referral_id, authority="municipality:092", status="accepted", reason=None)
            await hub.publisher.publish(names["status"], "ReferralStatus", ok, key=referral.referral_id)
            await wait_for(lambda: seen.consumed[(names["status"], "applied")] == 1, 60, "the good status after one with a NUL applied")
            assert seen.dead_letters["out_of_bounds"] == 4
            assert ledger.state(referral.referral_id) == "accepted"

        letters = await dead_letters_at(kafka_url, None, DEAD_LETTERS)
        ours = {bytes(d["original_value"]): d for d in letters if d["original_topic"] in names.values()}
        expected = [codec.encode("Newcomer", rec) for rec in over] + [codec.encode("ReferralStatus", nul)]
        assert all(ours[value]["reason"] == "out_of_bounds" for value in expected)
        assert [ours[value]["message"].split(" has ")[0].split(" contains ")[0] for value in expected] == [
            "Newcomer.nationalities", "Newcomer.person_key", "Newcomer.person_key", "ReferralStatus.referral_id"]

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
