"""Newcomer detection's per-person states in the database (hub.adapters.person_states, migration
0009), on SQLite (the embedded default) and the real PostgreSQL; the in-memory twin behaves alike."""

import pytest

from hub.adapters import database
from hub.adapters.database import IN_LIST_CHUNK as CHUNK
from hub.adapters.person_states import MemoryPersonStates, SqlPersonStates

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def states(request, tmp_path):
    if request.param == "memory":
        yield MemoryPersonStates()
        return
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("own_database_url")
    database.upgrade(url)
    engine = database.create_engine(url)
    yield SqlPersonStates(engine)
    engine.dispose()


def test_write_then_read_back_update_and_remove(states):
    assert states.get_many([]) == {} and states.get_many(["a"]) == {}
    states.write({"a": '{"x":1}', "b": '{"x":2}', "gone": None})  # removing a key that has no row is fine
    assert states.get_many(["a", "b", "c", "a"]) == {"a": '{"x":1}', "b": '{"x":2}'}
    states.write({"a": '{"x":3}', "b": None, "c": '{"ä":"ö"}'})
    assert states.get_many(["a", "b", "c"]) == {"a": '{"x":3}', "c": '{"ä":"ö"}'}
    assert states.count() == 2


def test_more_keys_than_one_query_takes(states):
    many = {f"k{i:05d}": f'{{"i":{i}}}' for i in range(2 * CHUNK + 7)}
    states.write(many)
    assert states.get_many(list(many) + ["missing"]) == many
    states.write({k: None for k in many})
    assert states.count() == 0


def test_the_model_matches_its_migration(tmp_path):
    from tests.integration.test_consent_migration import migration_diff

    assert migration_diff(f"sqlite:///{tmp_path / 'hub.sqlite3'}", {"person_states"}) == []


def test_on_postgresql_a_batch_is_one_statement_each_way_whatever_its_size(own_database_url):
    """The keys go as arrays: one SELECT for the reads, one INSERT ... ON CONFLICT for the states
    and one DELETE for the removed, not a statement per person (an executemany, marked *) or per
    IN-list chunk."""
    import sqlalchemy as sa

    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cursor, statement, params, context, executemany: statements.append(statement.split()[0] + "*" * executemany))
    try:
        states = SqlPersonStates(engine)
        many = {f"k{i:05d}": f'{{"i":{i}}}' for i in range(2 * CHUNK + 7)}
        states.write(many)
        assert statements == ["INSERT"]
        assert states.get_many(list(many) + ["missing"]) == many and statements[1:] == ["SELECT"]
        states.write({**{k: None for k in list(many)[:CHUNK + 1]}, "new": "{}"})
        assert statements[2:] == ["INSERT", "DELETE"]
        assert states.count() == len(many) - CHUNK - 1 + 1
    finally:
        engine.dispose()
