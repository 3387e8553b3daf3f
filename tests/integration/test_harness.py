"""The harness gives real components: batch consumers of the hub's app on the real broker, a real PostgreSQL."""

import asyncio

import pytest
import sqlalchemy as sa

from hub.config import Settings
from hub.streams.pipeline import hub_app
from hub.schemas.envelope import envelope
from hub.streams.runner import running, wait_for

pytestmark = pytest.mark.integration


def test_a_batch_consumer_consumes_and_produces_on_the_real_broker(kafka_url):
    async def scenario():
        hub = hub_app(Settings(app_id="harness-test"), kafka_url)
        received = []

        async def upper(batch):
            sent = []
            for msg in batch:
                decoded = hub.codec.decode(msg.value)
                rec = dict(decoded.record, reason=(decoded.record["reason"] or "").upper())
                sent.append(await hub.publisher.publish("test.harness.out", "ReferralStatus", rec))
            await asyncio.gather(*sent)

        async def collect(batch):
            received.extend(hub.codec.decode(msg.value).record for msg in batch)

        hub.batch_consumer("upper", "test.harness.in", upper, 100)
        hub.batch_consumer("collect", "test.harness.out", collect, 100)

        async with running(hub):
            for i in range(3):
                rec = envelope("municipality:091")
                rec.update(referral_id=f"r{i}", authority="municipality:091", status="declined", reason=f"moved away {i}")
                await hub.publisher.publish("test.harness.in", "ReferralStatus", rec, key=f"r{i}")
            await wait_for(lambda: len(received) == 3, 60, "three records through the consumers")
        assert sorted(r["reason"] for r in received) == ["MOVED AWAY 0", "MOVED AWAY 1", "MOVED AWAY 2"]

    asyncio.run(scenario())


def test_real_postgresql_database(database_url):
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select current_database()")).scalar().startswith(("hub_test_", "test"))
        assert "PostgreSQL" in conn.execute(sa.text("select version()")).scalar()
    engine.dispose()
