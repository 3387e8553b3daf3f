"""The agents wait for an unreachable database instead of dead-lettering or crashing."""

import asyncio

import sqlalchemy as sa

from hub.streams import consent_agents


def test_database_outage_is_retried_in_place(monkeypatch):
    calls = []

    def apply():
        calls.append(1)
        if len(calls) < 3:
            raise sa.exc.OperationalError("SELECT 1", {}, ConnectionError("down"))
        return "applied"

    async def no_wait(_):
        return None

    monkeypatch.setattr(consent_agents.asyncio, "sleep", no_wait)
    assert asyncio.run(consent_agents._with_database_retry(apply, "Consent")) == "applied" and len(calls) == 3
