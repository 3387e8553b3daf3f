"""`DatabaseCalls`: a stream's SQLite calls run on the event loop, a server database's on a thread of its own."""

import asyncio
import threading

import pytest
import sqlalchemy as sa

from hub.adapters.database import DatabaseCalls, with_database_retry


def where(calls: DatabaseCalls) -> str:
    return asyncio.run(calls.run(lambda: threading.current_thread().name))


def test_sqlite_calls_run_on_the_event_loop_thread():
    calls = DatabaseCalls(sa.create_engine("sqlite://"), "ledger")
    assert calls.inline
    assert where(calls) == threading.current_thread().name


def test_a_store_without_a_database_runs_inline():
    assert DatabaseCalls(None, "states").inline


def test_postgresql_calls_run_on_one_named_thread_of_their_own():
    # the engine is never connected: only its dialect decides
    calls = DatabaseCalls(sa.create_engine("postgresql+psycopg://hub@127.0.0.1:1/none"), "referral-ledger")
    assert not calls.inline
    assert where(calls).startswith("referral-ledger")


@pytest.mark.parametrize("url", ["sqlite://", "postgresql+psycopg://hub@127.0.0.1:1/none"])
def test_results_and_arguments_pass_through_and_errors_reach_the_caller(url):
    calls = DatabaseCalls(sa.create_engine(url), "x")

    async def scenario():
        assert await calls.run(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(KeyError):
            await calls.run({}.__getitem__, "missing")

    asyncio.run(scenario())


def test_an_inline_call_that_finds_the_database_unreachable_is_retried_in_place():
    calls = DatabaseCalls(sa.create_engine("sqlite://"), "states")
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("database is locked"))
        return "read"

    async def scenario():
        return await with_database_retry(lambda: calls.run(flaky), "reading")

    assert asyncio.run(scenario()) == "read"
    assert len(attempts) == 2
