"""`hub demo` on the embedded defaults starts from an empty database, as the bundled broker starts
empty: the persons' states are in the database now, and a second run would otherwise find every
person of the sample day known already and detect no newcomer."""

from pathlib import Path

from hub.config import Settings
from hub.demo import DEMO_DATABASE, demo_settings


def test_the_embedded_demo_database_is_emptied_before_each_run(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first = demo_settings(settings)
    path = tmp_path / "data" / DEMO_DATABASE
    assert first.database_url == f"sqlite:///{path.resolve()}"
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.write_bytes(b"an earlier run")
    assert demo_settings(settings).database_url == first.database_url
    assert not any(p.exists() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")))


def test_configured_services_are_used_as_they_are(tmp_path):
    db = tmp_path / "mine.sqlite3"
    db.write_bytes(b"keep")
    for settings in (Settings(data_dir=tmp_path, database_url=f"sqlite:///{db}"), Settings(data_dir=tmp_path, kafka_url="kafka://127.0.0.1:9092")):
        assert demo_settings(settings) is settings
    assert db.read_bytes() == b"keep"


def test_the_summary_counts_only_disclosed_plan_requests_as_disclosed_and_withdrawals_per_cause():
    import datetime as dt
    from collections import Counter

    import sqlalchemy as sa

    from hub.adapters import database
    from hub.adapters.consent_store import Disclosure
    from hub.demo import DemoSummary, plan_request_counts

    engine = database.create_engine("sqlite://")
    database.Base.metadata.create_all(engine)
    now = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
    rows = [{"request_id": f"r{i}", "person_key": f"pk-{i}", "recipient": "municipality:091", "assessor": who, "assessment_id": f"a{i}",
             "data_categories": "[]", "disclosed_at": now, "outbox_id": i + 1, "disclosed": who != "municipality:091"}
            for i, who in enumerate(["employment_authority:08", "employment_authority:08", "municipality:091"])]
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # the rows' outbox messages do not matter here
        conn.execute(sa.insert(Disclosure.__table__), rows)
        conn.commit()
    assert plan_request_counts(engine) == (2, 1)  # the assessor's own plan request is no disclosure
    engine.dispose()
    text = DemoSummary(plan_requests=2, own_plan_requests=1, withdrawals=Counter(moved=3, no_longer_applies=1), due_updates=2).render()
    assert "plan requests disclosed:     2  (and 1 to the assessor itself" in text
    assert "referrals withdrawn:         4  (moved: 3, no_longer_applies: 1)" in text and "due dates updated:           2" in text
