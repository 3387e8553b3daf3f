"""The agents wait for an unreachable database instead of dead-lettering or crashing."""

import asyncio

import sqlalchemy as sa

from hub.adapters import database


def test_database_outage_is_retried_in_place(monkeypatch):
    calls = []

    def apply():
        calls.append(1)
        if len(calls) < 3:
            raise sa.exc.OperationalError("SELECT 1", {}, ConnectionError("down"))
        return "applied"

    async def no_wait(_):
        return None

    monkeypatch.setattr(database.asyncio, "sleep", no_wait)
    assert asyncio.run(database.with_database_retry(apply, "consent: applying a Consent")) == "applied" and len(calls) == 3


def test_an_awaitable_result_is_awaited_and_retried(monkeypatch):
    """Detection runs its state reads and writes on a worker thread: the retry awaits them."""
    calls = []

    async def apply():
        calls.append(1)
        if len(calls) < 2:
            raise sa.exc.InterfaceError("SELECT 1", {}, ConnectionError("down"))
        return {"k": "state"}

    async def no_wait(_):
        return None

    monkeypatch.setattr(database.asyncio, "sleep", no_wait)
    assert asyncio.run(database.with_database_retry(apply, "newcomer detection: reading states")) == {"k": "state"} and len(calls) == 2
